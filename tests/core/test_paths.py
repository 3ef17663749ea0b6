import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.paths import (
    BadPath,
    is_temp_name,
    link_escapes,
    safe_join,
    temp_name_for,
    validate,
    validate_child,
)

GOOD = [
    "a",
    "a/b/c.txt",
    "with space/file name.txt",
    " leading and trailing ",
    "ünïcødé/日本語.txt",
    "emoji 😀.png",
    ".hidden",
    "..foo",
    "foo..",
    "...",
    ".p2psyncignore",
    ".p2psync-not-ours",
    "a/.p2psync",  # only the folder at the root is ours
    "a/.p2psync/x",
    "x" * 255,
    "é" * 127,  # 254 bytes
    "/".join(["d" * 200] * 20),  # 4019 bytes
]

BAD = [
    ("", "empty"),
    ("/abs", "absolute"),
    ("/", "absolute"),
    ("a\\b", "backslash"),
    ("..\\x", "backslash"),
    ("a\x00b", "NUL"),
    ("a//b", "segment"),
    ("a/", "segment"),
    ("./a", "segment"),
    ("a/./b", "segment"),
    (".", "segment"),
    ("..", "segment"),
    ("../a", "segment"),
    ("a/../b", "segment"),
    ("a/..", "segment"),
    (".p2psync", ".p2psync"),
    (".p2psync/x", ".p2psync"),
    (".P2PSYNC/x", ".p2psync"),  # same folder on case-insensitive file systems
    ("x" * 256, "255"),
    ("é" * 128, "255"),  # 256 bytes
    ("/".join(["d" * 200] * 21), "4096"),
    ("bad\udcffname", "UTF-8"),
    ("\ud800", "UTF-8"),
]


@pytest.mark.parametrize("rel", GOOD)
def test_validate_accepts(rel):
    assert validate(rel) is rel


@pytest.mark.parametrize("rel,why", BAD)
def test_validate_refuses_with_reason(rel, why):
    with pytest.raises(BadPath, match=why.replace(".", r"\.")):
        validate(rel)


@pytest.mark.parametrize("value", [None, b"a", 3, Path("a")])
def test_validate_refuses_non_str(value):
    with pytest.raises(BadPath, match="not a string"):
        validate(value)


def test_badpath_is_valueerror():
    assert issubclass(BadPath, ValueError)


def _ok(fn, *args):
    try:
        fn(*args)
    except BadPath:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["", "a", "dir/sub", "é" * 100, "/".join(["d" * 200] * 20)]),
    st.lists(
        st.sampled_from(list("ab.\\\x00 é😀") + ["\udcff", "x" * 60]), max_size=8
    ).map("".join),
)
def test_validate_child_agrees_with_validate(parent, name):
    joined = f"{parent}/{name}" if parent else name
    assert _ok(validate_child, parent, name) == _ok(validate, joined)


def test_safe_join_plain_and_missing_parents(tmp_path):
    assert safe_join(tmp_path, "a/b/c.txt") == tmp_path / "a" / "b" / "c.txt"
    (tmp_path / "a").mkdir()
    assert safe_join(tmp_path, "a/b/c.txt") == tmp_path / "a/b/c.txt"


def test_safe_join_refuses_symlinked_parent(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "sub").symlink_to(outside)
    with pytest.raises(BadPath, match="symlink"):
        safe_join(root, "sub/file")
    (root / "real").mkdir()
    (root / "real" / "deeper").symlink_to(outside)
    with pytest.raises(BadPath, match="symlink"):
        safe_join(root, "real/deeper/x/y")


def test_safe_join_refuses_file_parent(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(BadPath, match="not a directory"):
        safe_join(tmp_path, "f/x")


def test_safe_join_allows_last_component_symlink(tmp_path):
    (tmp_path / "link").symlink_to("/etc")
    assert safe_join(tmp_path, "link") == tmp_path / "link"


def test_safe_join_validates(tmp_path):
    with pytest.raises(BadPath):
        safe_join(tmp_path, "../x")


@pytest.mark.parametrize(
    "rel,target,escapes",
    [
        ("l", "file", False),
        ("l", "./file", False),
        ("l", "sub/file", False),
        ("l", ".", False),
        ("a/l", "..", False),  # the folder root itself
        ("a/l", "../b", False),
        ("a/b/l", "../../c", False),
        ("a/b/l", "../c/d", False),
        ("l", "..foo", False),
        ("l", "", True),
        ("l", "/etc/passwd", True),
        ("l", "..", True),
        ("l", "../x", True),
        ("a/l", "../../x", True),
        ("a/b/l", "../../../x", True),
        ("l", "sub/../../x", True),
        ("l", "sub/../x", True),  # "sub" may itself be a link: refuse ".." after a name
        ("l", "a\\..\\..\\x", True),
        ("l", "a\x00b", True),
    ],
)
def test_link_escapes(rel, target, escapes):
    assert link_escapes(rel, target) is escapes


def test_temp_names():
    name = temp_name_for("file.txt", b"\x01" * 32)
    assert is_temp_name(name)
    assert name == temp_name_for("file.txt", b"\x01" * 32)  # deterministic
    assert name != temp_name_for("file.txt", b"\x02" * 32)
    assert name != temp_name_for("other.txt", b"\x01" * 32)
    nested = temp_name_for("a/b/file.txt", b"\x01" * 32)
    head, _, last = nested.rpartition("/")
    assert head == "a/b" and is_temp_name(last)
    validate(nested)


@pytest.mark.parametrize(
    "name,ours",
    [
        (".p2psync-0123456789abcdef.tmp", True),
        (".p2psync-0123456789ABCDEF.tmp", False),
        (".p2psync-0123456789abcde.tmp", False),
        (".p2psync-0123456789abcdef.tmp.x", False),
        ("x.p2psync-0123456789abcdef.tmp", False),
        ("file.tmp", False),
    ],
)
def test_is_temp_name(name, ours):
    assert is_temp_name(name) is ours


def test_safe_join_returns_usable_path(tmp_path):
    p = safe_join(tmp_path, "dir/file")
    p.parent.mkdir()
    p.write_text("hello")
    assert os.listdir(tmp_path / "dir") == ["file"]
