"""app.core.conflicts on real files: each way out keeps every byte somewhere."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from app.core import conflicts
from app.core.apply import conflict_name

COPY = "docs/report.sync-conflict-20261125-101530-ABCDEF2.txt"


def versions(root) -> dict[str, bytes]:
    base = root / ".p2psync" / "versions"
    return {str(p.relative_to(base)): p.read_bytes() for p in base.rglob("*") if p.is_file()}


@pytest.fixture
def root(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "report.txt").write_text("winner\n")
    (tmp_path / COPY).write_text("loser\n")
    return tmp_path


def test_parse_matches_the_engines_names():
    name = conflict_name("a/b/notes.tar.gz", 1_764_000_000 * 10**9, "ABCDEF2-XXXXXXX")
    c = conflicts.parse(name)
    assert c is not None
    assert c.original == "a/b/notes.tar.gz"
    assert c.device == "ABCDEF2"
    assert c.when == datetime.fromtimestamp(1_764_000_000, UTC)
    assert conflicts.parse("a/b/notes.txt") is None
    assert conflicts.parse(".sync-conflict-20261125-101530-ABCDEF2") is None
    c = conflicts.parse("Makefile.sync-conflict-20261125-101530-ABCDEF2")
    assert c.original == "Makefile" and c.both_name == "Makefile (conflict ABCDEF2 " \
                                                        "2026-11-25 101530)"


def test_keep_this_one(root):
    c = conflicts.parse(COPY)
    assert conflicts.keep_original(root, c) == [COPY]
    assert not (root / COPY).exists()
    assert (root / "docs/report.txt").read_text() == "winner\n"
    assert list(versions(root).values()) == [b"loser\n"]


def test_keep_the_other(root):
    c = conflicts.parse(COPY)
    assert conflicts.keep_copy(root, c) == [COPY, "docs/report.txt"]
    assert not (root / COPY).exists()
    assert (root / "docs/report.txt").read_text() == "loser\n"
    assert list(versions(root).values()) == [b"winner\n"]


def test_keep_the_other_when_the_original_is_gone(root):
    os.unlink(root / "docs/report.txt")
    conflicts.keep_copy(root, conflicts.parse(COPY))
    assert (root / "docs/report.txt").read_text() == "loser\n"


def test_keep_both_gives_an_ordinary_free_name(root):
    c = conflicts.parse(COPY)
    taken = root / "docs/report (conflict ABCDEF2 2026-11-25 101530).txt"
    taken.write_text("someone already used that name\n")
    changed = conflicts.keep_both(root, c)
    assert changed == [COPY, "docs/report (conflict ABCDEF2 2026-11-25 101530 2).txt"]
    assert (root / changed[1]).read_text() == "loser\n"
    assert taken.read_text() == "someone already used that name\n"
    assert (root / "docs/report.txt").read_text() == "winner\n"
    assert not (root / COPY).exists() and versions(root) == {}


def test_a_copy_that_went_away_changes_nothing(root):
    c = conflicts.parse(COPY)
    os.unlink(root / COPY)
    for fn in (conflicts.keep_original, conflicts.keep_copy, conflicts.keep_both):
        with pytest.raises(conflicts.ConflictError, match="no longer there"):
            fn(root, c)
    assert (root / "docs/report.txt").read_text() == "winner\n"


def test_no_way_out_of_the_folder(root):
    c = conflicts.Conflict(copy="../x.sync-conflict-20261125-101530-ABCDEF2",
                           original="../x", device="ABCDEF2", when=datetime.now(UTC))
    with pytest.raises(Exception):  # noqa: B017 - BadPath, whatever its base
        conflicts.keep_both(root, c)


def test_read_side_text_binary_and_missing(root):
    side = conflicts.read_side(root, "docs/report.txt")
    assert side.exists and side.text == "winner\n" and side.size == 7
    (root / "img.bin").write_bytes(b"\x89PNG\0\0\1")
    assert conflicts.read_side(root, "img.bin").text is None
    assert not conflicts.read_side(root, "nope.txt").exists
    (root / "big.txt").write_text("é" * 1000)
    side = conflicts.read_side(root, "big.txt", limit=101)  # cuts a 2-byte character
    assert side.truncated and side.text == "é" * 50
