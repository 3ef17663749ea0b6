"""Generated share keys, and the check that catches a typo in one as it is typed.

A generated key is 4 groups of 6 characters of a 32-letter alphabet (no 0/O, no 1/I):
5 random characters and a check character, e.g. `K7RMP3-QX2ZHB-...`: 100 random bits.
The check is Luhn mod 32 over the group's position and its 5 characters (as Syncthing
device IDs carry Luhn characters), so a wrong character, two neighbours swapped or two
groups swapped are caught, and the message can say which group to look at.

Keys made before the check existed are 4 groups of *5* characters: that shape is never
checked (it holds no check character) and keeps working as it always did. Any other key a
person made up is taken as typed. Only a key that looks like a generated one (4 groups,
upper-case letters and digits, one of them 6 long) is held to the check: a near miss of
that shape (a group one character short, an `O` for a `0`) is a typo, not a passphrase.
Typed in lower case, a generated key that passes its check is taken in upper case.
No I/O (`given_key` reads the environment).
"""

from __future__ import annotations

import os
import re
import secrets

from app.errors import UsageError

ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
GROUPS = 4
RANDOM_PER_GROUP = 5
GROUP_LEN = RANDOM_PER_GROUP + 1
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
# before check characters: 4 groups of 5, taken as they are
OLD_SHAPE = re.compile(rf"^[{ALPHABET}]{{5}}(?:-[{ALPHABET}]{{5}}){{3}}$")
_GROUPED = re.compile(r"^[A-Za-z0-9]+(?:-[A-Za-z0-9]+){3}$")
_ORDINALS = ("1st", "2nd", "3rd", "4th")


class KeyTypo(ValueError):
    """A key that looks generated but is not: str() says which group and why."""


def new_key() -> str:
    """A key people can read aloud and paste; every group ends in its check character."""
    groups = []
    for position in range(GROUPS):
        body = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_PER_GROUP))
        groups.append(body + check_char(position, body))
    return "-".join(groups)


def check_char(position: int, body: str) -> str:
    """Luhn mod 32 of the group's position and characters: catches any one wrong
    character, most swaps of neighbours, and a group typed in another group's place."""
    factor, total = 2, 0
    for c in reversed(ALPHABET[position] + body):
        addend = factor * _INDEX[c]
        factor = 1 if factor == 2 else 2
        total += addend // len(ALPHABET) + addend % len(ALPHABET)
    return ALPHABET[(len(ALPHABET) - total % len(ALPHABET)) % len(ALPHABET)]


def looks_generated(text: str) -> bool:
    """Does `text` claim to be a checked key (so that a failed check is a typo)?"""
    if OLD_SHAPE.match(text) or not _GROUPED.match(text):
        return False
    groups = text.split("-")
    if text.upper() != text:  # a passphrase in lower case, or a key typed so
        return False
    return any(len(g) == GROUP_LEN for g in groups) and all(4 <= len(g) <= 8 for g in groups)


def problem(text: str, *, typing: bool = False) -> str | None:
    """Why `text`, which looks like a generated key, is not one; None when it is fine
    (or is not meant to be one). `typing`: judge only the groups finished so far."""
    text = text.strip()
    if typing:
        return _problem_so_far(text)
    if not looks_generated(text):
        return None
    for position, group in enumerate(text.split("-")):
        why = _group_problem(position, group)
        if why:
            return why
    return None


def _problem_so_far(text: str) -> str | None:
    """The first finished group that cannot be right, while a key is being typed: a
    group is finished once a `-` follows it, or when it is the 4th and 6 long. Nothing
    is said before one group is 6 long: until then it may be a key of before, or typed."""
    parts = text.split("-")
    if len(parts) > GROUPS or text.upper() != text or \
            not any(len(p) == GROUP_LEN for p in parts):
        return None
    finished = parts if len(parts) == GROUPS and len(parts[-1]) >= GROUP_LEN else parts[:-1]
    for position, group in enumerate(finished):
        why = _group_problem(position, group)
        if why:
            return why
    return None


def _group_problem(position: int, group: str) -> str | None:
    nth = _ORDINALS[position]
    wrong = sorted({c for c in group if c not in _INDEX})
    if wrong:
        chars = ", ".join(f"\u201c{c}\u201d" for c in wrong)
        return f"the {nth} group holds {chars}, which generated keys never contain"
    if len(group) != GROUP_LEN:
        which = "one is missing" if len(group) < GROUP_LEN else "one too many"
        count = f"{len(group)} character{'s' if len(group) != 1 else ''}"
        return f"the {nth} group has {count}, not {GROUP_LEN}: {which}"
    if check_char(position, group[:RANDOM_PER_GROUP]) != group[-1]:
        return f"the {nth} group has a typo"
    return None


def normalized(text: str) -> str:
    """The key to use for `text`: stripped; a generated key typed in lower case (with
    spaces for dashes) in upper case, when that passes its check. Raises KeyTypo for a
    key that looks generated and fails its check."""
    text = text.strip()
    upper = "-".join(text.upper().split())
    if upper != text and looks_generated(upper) and problem(upper) is None:
        return upper
    why = problem(text)
    if why:
        raise KeyTypo(why)
    return text


def typed(text: str, where: str) -> str:
    """`normalized`, for a key given on the command line or in the environment (`where`);
    a typo is bad usage: one line, exit 2, before anything starts."""
    try:
        return normalized(text)
    except KeyTypo as e:
        raise UsageError(f"{where} looks like a share key p2psync generated, but {e}: copy "
                         "it again from the device that shows it") from None


def given_key(option: str | None) -> str | None:
    """The key given as --secret, else in P2PSYNC_SECRET, checked (see `typed`); None
    when neither is: a typo there is exit 2, never a node that waits alone for ever."""
    if option:
        return typed(option, "--secret")
    env = os.environ.get("P2PSYNC_SECRET")
    return typed(env, "P2PSYNC_SECRET") if env else None


__all__ = ["ALPHABET", "KeyTypo", "check_char", "looks_generated", "new_key", "normalized",
           "given_key", "problem", "typed"]
