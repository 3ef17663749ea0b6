"""How easy a share key is to guess: a simple, honest estimate, and the warning to show.

The share key is all that keeps strangers out, and people make keys up (`--secret
KEY`). An attacker guesses in order of likelihood: common passwords first, then
common words and keyboard patterns, then short random strings. This module estimates
the guesses such an attacker needs, in bits, the way the simple estimators do
(NIST SP 800-63 v1, the spirit of zxcvbn, much smaller):

* each character costs log2 of the pool of its classes present (lower case 26,
  upper case 26, digits 10, other ASCII 33, anything else 100);
* a character that repeats the one before, or continues a run (`abc`, `321`, a
  keyboard row such as `qwert`), costs 1 bit;
* a common word of the list below (also in l33t spelling) costs `WORD_BITS` as a
  whole (plus 1 bit if capitalized), whatever its length, and a separator after it
  (space, `-`, `_`, `.`) 2 bits;
* a key that is itself one of the most common passwords is weak outright.

Below `STRONG_BITS` (50) a key is weak. The estimate is optimistic about what it
cannot see (a word not in its short list counts as random letters), so a key it calls
weak is weak for sure. The generated format (`new_share_key`: 4 groups of 5 random
characters of 32, 100 bits, plus a check character each) is strong by construction.
Pure: no I/O, no Qt.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

STRONG_BITS = 50.0
WORD_BITS = 11.0  # one word of a list of ~2,000 common ones
# what p2psync generates: 4 groups of 6 (5 random + a check character), or, before
# check characters, of 5 (app/net/sharekey.py)
GENERATED = re.compile(r"^(?:[A-HJ-NP-Z2-9]{5}(?:-[A-HJ-NP-Z2-9]{5}){3}|"
                       r"[A-HJ-NP-Z2-9]{6}(?:-[A-HJ-NP-Z2-9]{6}){3})$")


def _words(text: str) -> list[str]:
    return text.split()


COMMON_PASSWORDS = frozenset(_words("""
123456 password 12345678 qwerty 123456789 12345 1234 111111 1234567 dragon 123123
baseball abc123 football monkey letmein 696969 shadow master 666666 qwertyuiop 123321
mustang 1234567890 michael 654321 superman 1qaz2wsx 7777777 121212 000000 qazwsx
123qwe killer trustno1 jordan jennifer zxcvbnm asdfgh hunter buster soccer harley
batman andrew tigger sunshine iloveyou 2000 charlie robert thomas hockey ranger daniel
starwars 112233 george computer michelle jessica pepper 1111 zxcvbn 555555 11111111
131313 freedom 777777 pass maggie 159753 aaaaaa ginger princess joshua cheese amanda
summer love ashley nicole chelsea biteme matthew access yankees 987654321 dallas
austin thunder taylor matrix admin welcome secret changeme passw0rd p@ssw0rd default
guest root test share sync p2psync mysecret sharekey secretkey password1 qwerty123
hunter2 letmein1 welcome1 abcdef abcd1234 asdfghjkl 0000 00000000 hello helloworld
"""))

COMMON_WORDS = sorted(set(_words("""
password passwd pass secret key share shared sync test admin welcome letmein love hello
home family office work files file folder backup photos music docs documents qwerty
dragon monkey master shadow sunshine princess football baseball soccer summer winter
spring autumn house money computer internet laptop desktop phone p2psync default change
guest user login access secure private trust freedom flower chocolate cookie pepper
ginger cheese orange apple banana purple yellow green black white blue red silver
golden tiger lion bear eagle horse dog cat fish star moon sun magic power super batman
superman pokemon minecraft killer hunter ranger angel baby girl boy king queen god
jesus mother father sister brother friend demo example sample correct battery staple
network wifi router server client device team company project data abc xyz iloveyou
""")), key=len, reverse=True)

SEPARATORS = " -_.,+/"
_LEET = str.maketrans("0134578@$!", "oieastbasi")
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm", "1234567890", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class Strength:
    bits: float  # estimated log2 of the guesses an attacker needs
    weak: bool
    why: str  # for a weak key: a short reason a person understands; "" otherwise


def _pool(key: str) -> int:
    pool = 0
    if any(c.islower() and c.isascii() for c in key):
        pool += 26
    if any(c.isupper() and c.isascii() for c in key):
        pool += 26
    if any(c.isdigit() and c.isascii() for c in key):
        pool += 10
    if any(c.isascii() and not c.isalnum() for c in key):
        pool += 33
    if any(not c.isascii() for c in key):
        pool += 100
    return pool


def _continues(prev: str, c: str) -> bool:
    """c repeats prev, or is next to it in an alphabet/digit/keyboard row (either way)."""
    a, b = prev.lower(), c.lower()
    if a == b:
        return True
    return any(a in row and b in row and abs(row.index(a) - row.index(b)) == 1
               for row in _ROWS)


def judge(key: str) -> Strength:
    """How hard `key` is to guess, and why it is weak when it is."""
    if GENERATED.match(key):
        return Strength(100.0, False, "")
    n = len(key)
    if n == 0:
        return Strength(0.0, True, "it is empty")
    lower = key.lower()
    plain = lower.translate(_LEET)
    spellings = {lower, plain, re.sub(r"[^a-z0-9]", "", lower), re.sub(r"[^a-z0-9]", "", plain)}
    if spellings & COMMON_PASSWORDS:
        return Strength(WORD_BITS / 2, True, "it is one of the most common passwords")
    per_char = math.log2(_pool(key))
    bits = 0.0
    word_chars = pattern_chars = 0
    after_word = False
    i = 0
    while i < n:
        word = next((w for w in COMMON_WORDS if plain.startswith(w, i)), "")
        if word:
            part = key[i : i + len(word)]
            bits += WORD_BITS + (1.0 if any(c.isupper() for c in part) else 0.0)
            word_chars += len(word)
            i += len(word)
            after_word = True
            continue
        if after_word and key[i] in SEPARATORS:
            bits += 2.0
            word_chars += 1
        elif i > 0 and _continues(key[i - 1], key[i]):
            bits += 1.0
            pattern_chars += 1
        else:
            bits += per_char
        after_word = False
        i += 1
    if bits >= STRONG_BITS:
        return Strength(bits, False, "")
    if key.isdigit():
        why = f"it is only {n} digits"
    elif word_chars >= n / 2:
        why = "it is made of common words"
    elif pattern_chars >= n / 3:
        why = "it is mostly repeated or consecutive characters"
    elif n < 12:
        why = f"it is only {n} character{'s' if n > 1 else ''} long"
    else:
        why = f"it holds only about {bits:.0f} bits of randomness"
    return Strength(bits, True, why)


def cli_warning(key: str, example: str) -> str | None:
    """One stderr line for a weak key given on the command line, else None.

    `example` is a freshly generated key to suggest (the caller makes it).
    """
    s = judge(key)
    if not s.weak:
        return None
    return (f"p2psync: warning: this share key is easy to guess ({s.why}): anyone on the "
            "network could find it by trying keys. Use a generated key instead, e.g. "
            f"--secret {example} (new and random; give the same to every device), or pair "
            "devices with `p2psync invite`.")


def app_warning(key: str) -> str | None:
    """The text shown under a key field in the app for a weak key, else None."""
    s = judge(key)
    if not s.weak:
        return None
    return (f"This key is easy to guess ({s.why}): anyone on the network could find it "
            "by trying keys. Prefer the key p2psync generates: start a new share on the "
            "first device and paste its key here, or pair the devices with "
            "\u201cp2psync invite\u201d.")
