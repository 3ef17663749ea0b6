"""The share-key strength estimate: what it calls weak, why, and the lines it gives."""

from __future__ import annotations

import re

import pytest

from app.engine.config import new_share_key
from app.net.keystrength import STRONG_BITS, app_warning, cli_warning, judge


@pytest.mark.parametrize(("key", "why"), [
    ("123456", "one of the most common passwords"),
    ("password", "one of the most common passwords"),
    ("P@ssw0rd", "one of the most common passwords"),  # l33t and case do not help
    ("Letmein!", "one of the most common passwords"),
    ("482913", "only 6 digits"),
    ("738205194", "only 9 digits"),
    ("test-share-key", "made of common words"),
    ("sunflowers", "made of common words"),
    ("correcthorsebatterystaple", "made of common words"),
    ("qwertyuiopasdf", "repeated or consecutive"),
    ("aaaaaaaaaaaaaaaaaaaaaaaaaaaa", "repeated or consecutive"),
    ("abcdefghijklmnop", "repeated or consecutive"),
    ("xK9#q", "only 5 characters long"),
    ("k", "only 1 character long"),
    ("", "empty"),
])
def test_easy_keys_are_weak_and_say_why(key, why):
    s = judge(key)
    assert s.weak and s.bits < STRONG_BITS
    assert why in s.why


@pytest.mark.parametrize("key", [
    "kq8Zv2#pLm9x",  # 12 random characters of all classes
    "the quick brown fox jumps over",
    "nobody-has-this",
    "correct-horse-battery-staple-lan",
    "Gl\u00fcckliche-Fahrt-nach-\u00d6sterreich",  # not ASCII: a bigger pool
])
def test_long_or_random_keys_are_strong(key):
    s = judge(key)
    assert not s.weak and s.why == ""


def test_every_generated_key_is_strong():
    for _ in range(200):
        key = new_share_key()
        assert judge(key) == judge(key) and not judge(key).weak
        assert judge(key).bits >= 100


def test_the_cli_line_is_one_line_with_the_reason_a_new_key_and_invite():
    example = new_share_key()
    line = cli_warning("123456", example)
    assert line is not None and "\n" not in line
    assert line.startswith("p2psync: warning: ")
    assert "one of the most common passwords" in line
    assert f"--secret {example}" in line and "p2psync invite" in line
    assert cli_warning(new_share_key(), example) is None


def test_the_app_text_says_why_and_points_to_the_generated_key_and_invite():
    text = app_warning("hunter2")
    assert text is not None and "easy to guess" in text and "p2psync invite" in text
    assert re.search(r"generates", text)
    assert app_warning("kq8Zv2#pLm9x") is None
