"""Pairing codes: a number and two words (`7-apple-river`), and the words both screens show.

As magic-wormhole does, the number is a public label (a "nameplate"): it only picks which
invitation on the LAN is meant, travels in the clear in the invitation's beacon, and
guards nothing. The two words are the secret: 2 of 256, 16 bits, which is plenty for a
code that allows exactly one try (a wrong one ends the invitation on both sides) and
lives 10 minutes; the PAKE (app/net/pairing.py) makes sure that a capture of a pairing
gives no way to test guesses offline. The whole code, number included, is the PAKE
password.

The word list is ours: common, concrete English words of 3 to 7 letters, none the start
of another, so a word can be recognised from its first letters and typos are easy to
point at (`aple` -> "did you mean apple?"). Pure: no I/O.
"""

from __future__ import annotations

import difflib
import hashlib
import hmac
import re
import secrets

_LIST = """
acorn album alley amber angle ankle apple apron arena armor arrow atlas attic bacon
badge baker bamboo banjo barn basket beach beard beaver bench berry bison blade blossom
board boot bottle brick bridge broom brush bucket buffalo bunny butter cabin cactus
camel candle canoe canyon carpet carrot castle cattle cedar chalk cherry chess chicken
circle clam cliff clock cloud clover coffee comet compass copper coral cotton crab crane
crayon crown cup daisy dancer desert diamond dolphin donkey dragon drum eagle echo elbow
elm engine falcon feather fence fern ferry fiddle finch flag flame flute forest fossil
fox frog garden garlic giant ginger giraffe glacier glove goat guitar hammer harbor harp
hawk hazel helmet heron hill honey horse island ivory jacket jelly jungle kayak kettle
kitten kiwi koala ladder lagoon lake lantern lemon leopard lily lime lizard llama lotus
magnet mango maple marble meadow melon mirror mitten monkey moose motor muffin needle
nest noodle oak oasis ocean olive onion orange orbit otter owl oyster paddle palace
panda paper parrot peach peanut pebble pencil pepper piano pickle pigeon pillow pilot
pine planet plum pocket pony poppy potato pumpkin puzzle quail rabbit radio raisin raven
reef ribbon river robin rocket rose ruby saddle salmon sandal scarf seal shadow shark
sheep shell silver skate sled snail spider spoon squid statue steam stone storm sugar
summit sunset swan table teapot temple tiger timber toast tomato torch tractor trumpet
tulip tunnel turkey turtle unicorn valley velvet violin volcano waffle wagon walnut
walrus water whale wheat whistle willow window wizard wolf yogurt zebra
"""
WORDS = tuple(_LIST.split())
NAMEPLATES = 99  # 1..99: short to type; two invitations at once on one LAN are rare
CONFIRM_WORDS = 3  # 24 bits, shown on both screens once the PAKE succeeded
_INDEX = {w: i for i, w in enumerate(WORDS)}
EXAMPLE = "7-apple-river"


class CodeError(ValueError):
    """Not a pairing code: str() says why, in a sentence to show as it is."""


def new_code() -> str:
    """A fresh code: a random number of 1..99 and two random words."""
    number = secrets.randbelow(NAMEPLATES) + 1
    return f"{number}-{secrets.choice(WORDS)}-{secrets.choice(WORDS)}"


def parse_code(text: str) -> tuple[int, str]:
    """(number, the code as the inviting device wrote it) for what a person typed.

    Spaces, upper case and extra dashes are forgiven; a word not in the list is named,
    with the word it was probably meant to be.
    """
    parts = [p for p in re.split(r"[\s\-_.,]+", text.strip().lower()) if p]
    if not parts:
        raise CodeError(f"type the code the inviting device shows: a number and two words, "
                        f"like {EXAMPLE}")
    if not parts[0].isdigit():
        raise CodeError(f"a pairing code starts with a number, like {EXAMPLE}")
    number = int(parts[0])
    if not 1 <= number <= NAMEPLATES:
        raise CodeError(f"the number of a pairing code is 1 to {NAMEPLATES}, not {number}")
    words = parts[1:]
    for word in words:
        if word not in _INDEX:
            raise CodeError(_unknown(word))
    if len(words) != 2:
        raise CodeError(f"a pairing code has two words after its number, like {EXAMPLE}; "
                        f"this one has {len(words)}")
    return number, "-".join([str(number), *words])


def typing_problem(text: str) -> str | None:
    """What is already wrong with a code being typed (None: nothing yet, maybe unfinished).

    Only finished words are judged: a word followed by a separator, or any word that
    no word of the list starts with.
    """
    parts = re.split(r"[\s\-_.,]+", text.strip().lower())
    if not parts or parts == [""]:
        return None
    if parts[0] and not parts[0].isdigit():
        return f"a pairing code starts with a number, like {EXAMPLE}"
    if parts[0] and not 1 <= int(parts[0]) <= NAMEPLATES:
        return f"the number of a pairing code is 1 to {NAMEPLATES}, not {int(parts[0])}"
    if len([p for p in parts[1:] if p]) > 2:
        return f"a pairing code has only two words after its number, like {EXAMPLE}"
    finished = len(parts) - 1 if not re.search(r"[\s\-_.,]$", text) else len(parts)
    for i, word in enumerate(parts[1:], start=1):
        if not word:
            continue
        done = i < finished or not any(w.startswith(word) for w in WORDS)
        if done and word not in _INDEX:
            return _unknown(word)
    return None


def _unknown(word: str) -> str:
    close = difflib.get_close_matches(word, WORDS, n=3, cutoff=0.6)
    close.sort(key=lambda w: w[0] != word[0])  # a typo seldom hits the first letter
    hint = f" (did you mean \u201c{close[0]}\u201d?)" if close else ""
    return f"\u201c{word[:20]}\u201d is not a word of pairing codes{hint}"


def confirmation_words(key: bytes) -> str:
    """Words both devices derive from the PAKE key: equal on both screens only when both
    ran the PAKE with each other (no one in the middle)."""
    digest = hmac.new(key, b"p2psync pairing: confirmation words", hashlib.sha256).digest()
    return " ".join(WORDS[b] for b in digest[:CONFIRM_WORDS])


__all__ = ["CONFIRM_WORDS", "CodeError", "WORDS", "confirmation_words", "new_code",
           "parse_code", "typing_problem"]
