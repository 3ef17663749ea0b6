"""Generated share keys carry a check character per group: a typo is caught, with its group;
keys of before (no check) and keys people made up are taken as they are."""

from __future__ import annotations

import pytest

from app.errors import UsageError
from app.net.keystrength import judge
from app.net.sharekey import (
    ALPHABET,
    KeyTypo,
    given_key,
    looks_generated,
    new_key,
    normalized,
    problem,
)


def swap(key: str, i: int, j: int) -> str:
    chars = list(key)
    chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


def other(c: str) -> str:
    return ALPHABET[(ALPHABET.index(c) + 1) % len(ALPHABET)]


def test_a_new_key_passes_its_check_and_is_strong():
    for _ in range(200):
        key = new_key()
        assert len(key) == 27 and key.count("-") == 3, key
        assert looks_generated(key) and problem(key) is None
        assert normalized(key) == key
        assert not judge(key).weak


@pytest.mark.parametrize("group", range(4))
def test_any_one_wrong_character_names_its_group(group):
    nth = ("1st", "2nd", "3rd", "4th")[group]
    for _ in range(50):
        key = new_key()
        for offset in range(6):
            i = group * 7 + offset
            typo = key[:i] + other(key[i]) + key[i + 1:]
            assert problem(typo) == f"the {nth} group has a typo"


def test_two_groups_swapped_are_caught():
    for _ in range(100):
        g = new_key().split("-")
        if g[1] != g[2]:
            assert problem("-".join([g[0], g[2], g[1], g[3]])) is not None


def test_most_swaps_of_neighbours_are_caught():
    """Luhn mod N misses a few pairs (as for card numbers); nearly all are caught."""
    caught = total = 0
    for _ in range(300):
        key = new_key()
        for i in range(5):
            typo = swap(key, i, i + 1)
            if typo != key:
                total += 1
                caught += problem(typo) is not None
    assert caught / total > 0.98, (caught, total)


def test_a_missing_or_extra_character_or_a_foreign_one_is_named():
    key = new_key()
    assert problem(key[:8] + key[9:]) == "the 2nd group has 5 characters, not 6: one is missing"
    assert problem(key[:15] + "A" + key[15:]) == \
        "the 3rd group has 7 characters, not 6: one too many"
    assert problem("O" + key[1:]) == \
        "the 1st group holds \u201cO\u201d, which generated keys never contain"


def test_keys_of_before_and_keys_people_make_up_are_never_checked():
    for key in ("TESTS-HARE7-KEY4X-NQ2ZW",  # 4 groups of 5: made before check characters
                "correct-horse-battery-staple", "purple-turkey-market-basket",
                "my secret key", "123456", "ABCDEF", "A-B-C-D"):
        assert problem(key) is None and normalized(key) == key.strip(), key


def test_a_generated_key_typed_in_lower_case_or_with_spaces_is_taken_in_upper_case():
    key = new_key()
    assert normalized(key.lower()) == key
    assert normalized("  " + key.replace("-", " ") + " ") == key
    # lower case that fails the check is somebody's passphrase, taken as typed
    typo = key[:3] + other(key[3]) + key[4:]
    assert normalized(typo.lower()) == typo.lower()
    with pytest.raises(KeyTypo, match="1st group has a typo"):
        normalized(typo)


def test_while_typing_only_finished_groups_are_judged():
    key = new_key()
    typo = key[:3] + other(key[3]) + key[4:]
    assert problem(typo[:5], typing=True) is None  # the 1st group is not finished
    assert problem(typo[:6], typing=True) is None  # nor before its dash
    assert problem(typo[:7], typing=True) == "the 1st group has a typo"
    assert problem(key[:7], typing=True) is None
    assert problem(key[:7] + key[7:12] + "-", typing=True) == \
        "the 2nd group has 5 characters, not 6: one is missing"
    assert problem(key, typing=True) is None
    last = key[:-1] + other(key[-1])
    assert problem(last, typing=True) == "the 4th group has a typo"
    assert problem("TESTS-HARE7-KEY4X-NQ2ZW", typing=True) is None
    assert problem("letmein", typing=True) is None


def test_given_key_reads_the_option_then_the_environment_and_refuses_a_typo(monkeypatch):
    key = new_key()
    typo = key[:3] + other(key[3]) + key[4:]
    monkeypatch.delenv("P2PSYNC_SECRET", raising=False)
    assert given_key(None) is None
    assert given_key(key.lower()) == key
    monkeypatch.setenv("P2PSYNC_SECRET", typo)
    with pytest.raises(UsageError, match=r"^P2PSYNC_SECRET looks like a share key p2psync "
                       r"generated, but the 1st group has a typo"):
        given_key(None)
    with pytest.raises(UsageError, match=r"^--secret looks like"):
        given_key(typo)
