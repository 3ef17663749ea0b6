"""Listing kept versions and putting one back: a plain edit of the folder, nothing lost."""

from __future__ import annotations

import os
import time

import pytest

from app.core import apply, restore
from app.core.restore import RestoreError


def _archive(root, rel: str, data: bytes, when: float, by: str = "") -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    apply.archive(root, rel, when=when, by=by)


def test_versions_are_listed_oldest_first_with_who_replaced_them(tmp_path):
    _archive(tmp_path, "d/a.txt", b"one", 1_700_000_000, by="PEERAAA-X")
    _archive(tmp_path, "d/a.txt", b"two!", 1_700_000_100)
    _archive(tmp_path, "b.txt", b"bee", 1_700_000_050)
    found = restore.kept_versions(tmp_path)
    assert [(v.path, v.size, v.by) for v in found] == [
        ("d/a.txt", 3, "PEERAAA-X"), ("b.txt", 3, ""), ("d/a.txt", 4, "")]
    assert [v.path for v in restore.kept_versions(tmp_path, "d/a.txt")] == ["d/a.txt"] * 2
    assert found[0].stamp == time.strftime("%Y%m%d-%H%M%S", time.localtime(1_700_000_000))


def test_versions_kept_before_the_index_existed_are_read_from_their_names(tmp_path):
    old = tmp_path / ".p2psync/versions/docs/plan~20250102-030405.md"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"kept by an older release")
    [v] = restore.kept_versions(tmp_path)
    assert (v.path, v.stamp, v.size, v.by) == ("docs/plan.md", "20250102-030405", 24, "")


def test_restore_puts_the_newest_back_and_keeps_what_was_there(tmp_path):
    _archive(tmp_path, "a.txt", b"first", 1_700_000_000)
    _archive(tmp_path, "a.txt", b"second", 1_700_000_100)
    (tmp_path / "a.txt").write_bytes(b"current")
    chosen, replaced = restore.restore(tmp_path, "a.txt")
    assert (tmp_path / "a.txt").read_bytes() == b"second"
    assert chosen.size == 6 and replaced is not None
    assert (tmp_path / replaced).read_bytes() == b"current"
    # the restored version is still kept, and so is what it replaced: all three listed
    kept = {(tmp_path / v.stored).read_bytes() for v in restore.kept_versions(tmp_path)}
    assert kept == {b"first", b"second", b"current"}
    assert not list(tmp_path.glob(".p2psync-*.tmp"))


def test_restore_at_a_time_and_of_a_deleted_file(tmp_path):
    _archive(tmp_path, "gone/x.bin", b"A" * 300_000, 1_700_000_000)
    _archive(tmp_path, "gone/x.bin", b"B", 1_700_000_100)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(1_700_000_000))
    os.rmdir(tmp_path / "gone")
    chosen, replaced = restore.restore(tmp_path, "gone/x.bin", at=stamp)
    assert replaced is None and chosen.stamp == stamp
    assert (tmp_path / "gone/x.bin").read_bytes() == b"A" * 300_000


def test_what_cannot_be_restored_says_why_and_changes_nothing(tmp_path):
    _archive(tmp_path, "a.txt", b"old", 1_700_000_000)
    (tmp_path / "a.txt").write_bytes(b"now")
    with pytest.raises(RestoreError, match="no earlier version of b.txt"):
        restore.restore(tmp_path, "b.txt")
    with pytest.raises(RestoreError, match=r"kept at 20000101-000000 \(kept: "):
        restore.restore(tmp_path, "a.txt", at="20000101-000000")
    with pytest.raises(ValueError):
        restore.restore(tmp_path, "../outside.txt")
    (tmp_path / "a.txt").unlink()
    (tmp_path / "a.txt").mkdir()
    with pytest.raises(RestoreError, match="is a folder now"):
        restore.restore(tmp_path, "a.txt")
    assert [v.size for v in restore.kept_versions(tmp_path)] == [3]
    assert not list(tmp_path.glob(".p2psync-*.tmp"))
