"""Conflicts on long names: the shortened copy still leads back to its original, each
way out works, and the conflict shows in the file states."""

from __future__ import annotations

import os

import pytest

from app.core import apply, conflicts, paths, states, versionstore
from app.core.index import Index
from app.core.model import FileEntry

MTIME_NS = 1_764_000_000 * 10**9
DEVICE = "ABCDEF2-GHIJKL3-XXXXXXX"
LONG = "é" * 100 + "ü" * 25 + ".txt"  # 254 bytes
SIBLING = "é" * 100 + "ü" * 24 + "x.txt"  # shares a long prefix with LONG


def nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


@pytest.fixture
def root(tmp_path):
    """A conflict on docs/LONG: the winner in place, the shortened copy beside it."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / LONG).write_text("winner\n")
    (tmp_path / "docs" / SIBLING).write_text("a neighbour\n")
    copy = apply.conflict_name(f"docs/{LONG}", MTIME_NS, DEVICE)
    assert "~" in copy and nbytes(copy.rpartition("/")[2]) <= 255
    (tmp_path / copy).write_text("loser\n")
    return tmp_path


def the_copy(root) -> str:
    [name] = [n for n in os.listdir(root / "docs") if apply.is_conflict_copy(n)]
    return f"docs/{name}"


def test_parse_reads_the_name_and_resolve_finds_the_original(root):
    copy = the_copy(root)
    c = conflicts.parse(copy)
    assert c is not None and c.original != f"docs/{LONG}"  # the name holds only a part
    assert c.device == "ABCDEF2"
    r = conflicts.resolve(root, copy)
    assert r == conflicts.Conflict(copy, f"docs/{LONG}", c.device, c.when)


def test_resolve_of_something_else(root, tmp_path):
    assert conflicts.resolve(root, f"docs/{LONG}") is None
    missing_dir = "gone/x~0123abcd.sync-conflict-20251124-160000-ABCDEF2.txt"
    assert conflicts.resolve(root, missing_dir) == conflicts.parse(missing_dir)
    (root / "docs" / LONG).unlink()  # the original went away: the name as it stands
    assert conflicts.resolve(root, the_copy(root)) == conflicts.parse(the_copy(root))


def test_keep_this_one(root):
    copy = the_copy(root)
    assert conflicts.keep_original(root, conflicts.resolve(root, copy)) == [copy]
    assert (root / "docs" / LONG).read_text() == "winner\n" and not (root / copy).exists()
    [k] = versionstore.list_kept(root)
    assert k.path == copy and (root / k.version).read_text() == "loser\n"


def test_keep_the_other_takes_the_long_name_back(root):
    copy = the_copy(root)
    changed = conflicts.keep_copy(root, conflicts.resolve(root, copy))
    assert changed == [copy, f"docs/{LONG}"]
    assert (root / "docs" / LONG).read_text() == "loser\n"
    assert (root / "docs" / SIBLING).read_text() == "a neighbour\n"
    [k] = versionstore.list_kept(root)
    assert k.path == f"docs/{LONG}" and (root / k.version).read_text() == "winner\n"


def test_keep_both_gives_ordinary_names_that_fit(root):
    first = conflicts.resolve(root, the_copy(root))
    names = []
    for _ in range(3):  # the same conflict again and again: " 2", " 3" still fit
        c = conflicts.resolve(root, first.copy)
        changed = conflicts.keep_both(root, c)
        new = changed[-1]
        names.append(new)
        assert paths.validate(new) == new and not apply.is_conflict_copy(new)
        assert nbytes(new.rpartition("/")[2]) <= 255 and new.endswith(".txt")
        assert (root / new).read_text() == "loser\n"
        (root / first.copy).write_text("loser\n")  # the conflict comes back
    assert len(set(names)) == 3
    assert (root / "docs" / LONG).read_text() == "winner\n"


def test_keep_both_of_a_short_name_is_unchanged():
    c = conflicts.parse("docs/report.sync-conflict-20261125-101530-ABCDEF2.txt")
    assert c.both_name == "docs/report (conflict ABCDEF2 2026-11-25 101530).txt"


def test_the_original_of_a_shortened_copy_is_in_conflict_too(root, tmp_path):
    copy = the_copy(root)
    index = Index(tmp_path / "index.db", "MEMEMEM-AAAAAAA")
    try:
        index.put_local([FileEntry(p, size=1, mtime_ns=1, version={"MEMEMEM-AAAAAAA": 1})
                         for p in (copy, f"docs/{LONG}", f"docs/{SIBLING}", "other.txt")])
        found = {r["path"]: r["state"] for r in states.file_states(index)}
    finally:
        index.close()
    assert found[copy] == found[f"docs/{LONG}"] == states.CONFLICT
    assert found[f"docs/{SIBLING}"] != states.CONFLICT
    assert found["other.txt"] != states.CONFLICT


def test_conflict_original_with_and_without_siblings(root):
    copy = the_copy(root)
    assert states.conflict_original(copy, os.listdir(root / "docs")) == f"docs/{LONG}"
    assert states.conflict_original(copy) == conflicts.parse(copy).original
    assert states.conflict_original("docs/plain.txt") == "docs/plain.txt"
    assert states.conflict_original("a.sync-conflict-20251124-160000-ABCDEF2.md") == "a.md"
