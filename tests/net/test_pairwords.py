"""Pairing codes: a number and two words of our list; typos named as they are typed."""

from __future__ import annotations

import pytest

from app.net.pairwords import (
    WORDS,
    CodeError,
    confirmation_words,
    new_code,
    parse_code,
    typing_problem,
)


def test_the_word_list_is_256_distinct_words_none_the_start_of_another():
    assert len(WORDS) == 256 == len(set(WORDS))
    assert all(w.isalpha() and w.islower() and 3 <= len(w) <= 7 for w in WORDS)
    assert not [(a, b) for a in WORDS for b in WORDS if a != b and b.startswith(a)]


def test_new_codes_parse_back_to_themselves():
    for _ in range(200):
        code = new_code()
        number, parsed = parse_code(code)
        assert parsed == code and 1 <= number <= 99


def test_a_code_is_forgiven_its_case_and_separators():
    assert parse_code("  7 Apple RIVER ") == (7, "7-apple-river")
    assert parse_code("7--apple_river") == (7, "7-apple-river")


@pytest.mark.parametrize(("text", "why"), [
    ("", "type the code the inviting device shows"),
    ("apple-river", "starts with a number"),
    ("0-apple-river", "1 to 99, not 0"),
    ("7-apple", "two words after its number, like 7-apple-river; this one has 1"),
    ("7-apple-river-stone", "this one has 3"),
    ("7-aple-river", "\u201caple\u201d is not a word of pairing codes (did you mean "
                     "\u201capple\u201d?)"),
])
def test_a_wrong_code_says_why(text, why):
    with pytest.raises(CodeError) as e:
        parse_code(text)
    assert why in str(e.value)


def test_while_typing_an_unfinished_word_is_not_judged_yet():
    assert typing_problem("7-app") is None  # on its way to "apple"
    assert typing_problem("7-apple-riv") is None
    assert "did you mean \u201capple\u201d" in typing_problem("7-aple-")
    assert "did you mean \u201criver\u201d" in typing_problem("7-apple-rivr")  # no word starts so
    assert "only two words" in typing_problem("7-apple-river-s")
    assert "starts with a number" in typing_problem("x")


def test_confirmation_words_are_three_words_that_follow_the_key():
    a, b = confirmation_words(b"k" * 32), confirmation_words(b"j" * 32)
    assert len(a.split()) == 3 and all(w in WORDS for w in a.split())
    assert a == confirmation_words(b"k" * 32) and a != b
