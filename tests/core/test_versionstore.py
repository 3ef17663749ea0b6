"""The versions index: every kept version listed with its full path; old ones pruned."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app.core import versionstore
from app.core.versionstore import INDEX, Kept

DAY = 86400.0
NOW = 1_800_000_000.0  # the fake clock of the prune tests


def keep(root: Path, path: str, when: float, by: str = "", data: bytes = b"old") -> Kept:
    """A version file of path archived at `when`, listed in the index."""
    version = f".p2psync/versions/{path}~{int(when)}"
    (root / version).parent.mkdir(parents=True, exist_ok=True)
    (root / version).write_bytes(data)
    kept = Kept(path, version, when, len(data), by)
    versionstore.record(root, kept)
    return kept


def files_under_versions(root: Path) -> list[str]:
    base = root / ".p2psync" / "versions"
    return sorted(str(p.relative_to(root)) for p in base.rglob("*") if p.is_file())


# --- record and list ---------------------------------------------------------------------
def test_record_then_list_all_or_one_path(tmp_path):
    a1 = keep(tmp_path, "docs/a.txt", NOW - 50, by="PEERDEV")
    b = keep(tmp_path, "b.txt", NOW - 40)
    a2 = keep(tmp_path, "docs/a.txt", NOW - 60)
    assert versionstore.entries(tmp_path) == [a1, b, a2]  # as written
    assert versionstore.list_kept(tmp_path) == [a2, a1, b]  # oldest first
    assert versionstore.list_kept(tmp_path, "docs/a.txt") == [a2, a1]
    assert versionstore.list_kept(tmp_path, "nothing.txt") == []
    lines = (tmp_path / INDEX).read_bytes().splitlines()
    assert len(lines) == 3 and json.loads(lines[0]) == {
        "path": "docs/a.txt", "version": a1.version, "when": NOW - 50, "size": 3,
        "by": "PEERDEV"}


def test_no_index_yet_lists_nothing(tmp_path):
    assert versionstore.entries(tmp_path) == []
    assert versionstore.list_kept(tmp_path) == []
    assert versionstore.prune(tmp_path, 30 * DAY, now=NOW) == []


def test_unicode_paths_are_kept_as_written(tmp_path):
    k = keep(tmp_path, "日本語/ñandú €.md", NOW)
    assert "日本語".encode() in (tmp_path / INDEX).read_bytes()  # readable by a person
    assert versionstore.list_kept(tmp_path) == [k]


def test_a_torn_last_line_is_skipped_and_the_next_line_starts_afresh(tmp_path):
    first = keep(tmp_path, "a.txt", NOW - 2)
    with open(tmp_path / INDEX, "ab") as f:
        f.write(b'{"path": "b.txt", "version": ".p2psync/versi')  # a crash mid-write
    assert versionstore.entries(tmp_path) == [first]
    second = keep(tmp_path, "c.txt", NOW - 1)
    assert versionstore.entries(tmp_path) == [first, second]


@pytest.mark.parametrize("line", [
    b"not json at all",
    b'["a", "list"]',
    b'{"path": "a.txt"}',
    b'{"path": 3, "version": ".p2psync/versions/x", "when": 1, "size": 1}',
    b'{"path": "a", "version": ".p2psync/versions/x", "when": "soon", "size": 1}',
    b'{"path": "a", "version": ".p2psync/versions/x", "when": 1, "size": 1, "by": 7}',
])
def test_damaged_lines_are_skipped(tmp_path, line):
    (tmp_path / ".p2psync").mkdir()
    (tmp_path / INDEX).write_bytes(line + b"\n")
    good = keep(tmp_path, "good.txt", NOW)
    assert versionstore.entries(tmp_path) == [good]


def test_a_line_whose_file_is_gone_is_not_listed(tmp_path):
    gone = keep(tmp_path, "gone.txt", NOW)
    there = keep(tmp_path, "there.txt", NOW)
    os.unlink(tmp_path / gone.version)
    versionstore.record(tmp_path, Kept("out.txt", "../../out.txt", NOW, 1))
    (tmp_path.parent / "out.txt").touch()  # a line that points out of the folder
    assert versionstore.list_kept(tmp_path) == [there]


def test_a_short_write_is_an_error(tmp_path, monkeypatch):
    real_write = os.write
    monkeypatch.setattr(versionstore.os, "write", lambda fd, data: real_write(fd, data[:10]))
    with pytest.raises(OSError, match="short write"):
        versionstore.record(tmp_path, Kept("a.txt", ".p2psync/versions/a", NOW, 1))
    monkeypatch.undo()
    assert versionstore.entries(tmp_path) == []  # the torn line is not read as one


# --- prune, with a fake clock ------------------------------------------------------------
def test_prune_removes_old_versions_their_lines_and_emptied_directories(tmp_path):
    old = keep(tmp_path, "deep/er/old.txt", NOW - 31 * DAY)
    older = keep(tmp_path, "top.txt", NOW - 400 * DAY)
    young = keep(tmp_path, "deep/young.txt", NOW - 29 * DAY)
    edge = keep(tmp_path, "edge.txt", NOW - 30 * DAY)  # exactly 30 days: kept

    pruned = versionstore.prune(tmp_path, 30 * DAY, now=NOW)

    assert pruned == [old, older]
    assert versionstore.entries(tmp_path) == [young, edge]
    assert files_under_versions(tmp_path) == sorted([young.version, edge.version])
    assert not (tmp_path / ".p2psync/versions/deep/er").exists()  # emptied: removed
    assert (tmp_path / ".p2psync/versions").is_dir()  # the versions folder itself stays
    assert versionstore.prune(tmp_path, 30 * DAY, now=NOW) == []
    # a month later the rest goes too
    assert versionstore.prune(tmp_path, 30 * DAY, now=NOW + 31 * DAY) == [young, edge]
    assert versionstore.entries(tmp_path) == [] and files_under_versions(tmp_path) == []


def test_prune_leaves_an_index_with_nothing_to_drop_untouched(tmp_path):
    keep(tmp_path, "a.txt", NOW)
    before = os.stat(tmp_path / INDEX).st_ino
    assert versionstore.prune(tmp_path, 30 * DAY, now=NOW) == []
    assert os.stat(tmp_path / INDEX).st_ino == before


def test_prune_drops_damaged_lines_and_lines_of_files_gone(tmp_path):
    gone = keep(tmp_path, "gone.txt", NOW)
    with open(tmp_path / INDEX, "ab") as f:
        f.write(b"garbage\n")
    kept = keep(tmp_path, "kept.txt", NOW)
    os.unlink(tmp_path / gone.version)
    assert versionstore.prune(tmp_path, 30 * DAY, now=NOW) == []
    assert (tmp_path / INDEX).read_bytes().count(b"\n") == 1
    assert versionstore.entries(tmp_path) == [kept]


def test_prune_never_deletes_outside_the_versions_folder(tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    for bad in ("precious.txt", ".p2psync/versions/../../precious.txt", "/etc/passwd",
                ".p2psync/versions//precious.txt"):
        versionstore.record(tmp_path, Kept("x", bad, NOW - 400 * DAY, 1))
    assert versionstore.prune(tmp_path, 30 * DAY, now=NOW) == []
    assert victim.read_text() == "keep me"
    assert versionstore.entries(tmp_path) == []  # such lines are dropped, not acted on


def test_a_version_that_cannot_be_deleted_keeps_its_line(tmp_path):
    stuck = Kept("dir", ".p2psync/versions/dir~1", NOW - 400 * DAY, 0)
    (tmp_path / stuck.version / "inside").mkdir(parents=True)  # unlink fails on a directory
    versionstore.record(tmp_path, stuck)
    old = keep(tmp_path, "old.txt", NOW - 400 * DAY)
    assert versionstore.prune(tmp_path, 30 * DAY, now=NOW) == [old]
    assert versionstore.entries(tmp_path) == [stuck]  # tried again by the next prune


def test_a_failed_rewrite_keeps_the_old_index(tmp_path):
    old = keep(tmp_path, "old.txt", NOW - 400 * DAY)
    (tmp_path / (INDEX + ".tmp")).mkdir()  # the temp file cannot be made
    with pytest.raises(OSError):
        versionstore.prune(tmp_path, 30 * DAY, now=NOW)
    assert versionstore.entries(tmp_path) == [old]  # the line of a file already gone stays
    os.rmdir(tmp_path / (INDEX + ".tmp"))
    assert versionstore.prune(tmp_path, 30 * DAY, now=NOW) == []  # ... until the next prune
    assert versionstore.entries(tmp_path) == []
