import logging
import os
import shutil
import time
from dataclasses import replace

import pytest

from app.core import holes, scanner
from app.core.hashing import hash_file, link_hash
from app.core.ignore import IGNORE_FILE, Ignore
from app.core.index import SPARSE_RECHECK_KEY, Index
from app.core.model import BLOCK_SIZE, MAX_FILE_SIZE, FileEntry, Kind
from app.core.paths import temp_name_for

DEV = "DEVAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"
TEMP = ".p2psync-0123456789abcdef.tmp"


class Folder:
    """A folder on disk with its index, and helpers to scan and inspect it."""

    def __init__(self, tmp_path):
        self.root = tmp_path / "folder"
        self.root.mkdir()
        self.index = Index(tmp_path / "index.db", DEV)
        self.ignore = Ignore(self.root)

    def write(self, rel, data=b"x", mode=None):
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        if mode is not None:
            p.chmod(mode)
        return p

    def scan(self, subpaths=None):
        self.ignore.reload_if_changed()
        return scanner.scan(self.root, self.index, self.ignore, subpaths)

    def get(self, rel):
        return self.index.get(rel)

    def paths(self, live=True):
        return [e.path for e in self.index.all_local() if not (live and e.deleted)]


@pytest.fixture
def folder(tmp_path):
    f = Folder(tmp_path)
    yield f
    f.index.close()


def bump_mtime(p, by_ns=1_000_000_000):
    st = os.lstat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + by_ns), follow_symlinks=False)


def changed_paths(result):
    return sorted(e.path for e in result.changed)


# --- files


def test_new_files_and_dirs(folder):
    p = folder.write("a.txt", b"hello", mode=0o640)
    folder.write("d/sub/b.bin", os.urandom(300_000))
    r = folder.scan()
    assert changed_paths(r) == ["a.txt", "d", "d/sub", "d/sub/b.bin"]
    assert r.hashed_bytes == 5 + 300_000
    e = folder.get("a.txt")
    size, h, blocks = hash_file(p)
    st = os.lstat(p)
    assert (e.kind, e.size, e.hash, e.blocks, e.mode) == (Kind.FILE, size, h, blocks, 0o640)
    assert (e.mtime_ns, e.inode) == (st.st_mtime_ns, st.st_ino)
    assert e.version == {DEV: 1} and e.modified_by == DEV and not e.deleted and not e.error
    assert folder.get("d/sub/b.bin").block_count() == 3
    d = folder.get("d")
    assert (d.kind, d.size, d.hash) == (Kind.DIR, 0, b"")
    assert all(x.seq > 0 for x in r.changed)


def test_unchanged_rescan_does_nothing(folder):
    folder.write("a.txt")
    folder.write("d/b.txt")
    folder.scan()
    seq = folder.index.max_seq()
    r = folder.scan()
    assert r.changed == [] and r.hashed_bytes == 0
    assert folder.index.max_seq() == seq


def test_modified_file_gets_new_version(folder):
    p = folder.write("a.txt", b"one")
    folder.scan()
    old = folder.get("a.txt")
    p.write_bytes(b"two!")
    r = folder.scan()
    assert changed_paths(r) == ["a.txt"]
    new = folder.get("a.txt")
    assert new.version == {DEV: 2} and new.hash != old.hash and new.size == 4


def test_mtime_only_change_is_a_new_version(folder):
    p = folder.write("a.txt", b"same")
    folder.scan()
    old = folder.get("a.txt")
    bump_mtime(p)
    r = folder.scan()
    assert changed_paths(r) == ["a.txt"]
    new = folder.get("a.txt")
    assert new.hash == old.hash and new.version == {DEV: 2}
    assert new.mtime_ns == old.mtime_ns + 1_000_000_000


def test_executable_bit_change(folder):
    p = folder.write("run.sh", b"#!/bin/sh\n", mode=0o644)
    folder.scan()
    p.chmod(0o755)
    r = folder.scan()
    assert changed_paths(r) == ["run.sh"]
    assert folder.get("run.sh").mode == 0o755
    assert folder.get("run.sh").version == {DEV: 2}


def test_inode_only_change_updates_bookkeeping(folder):
    p = folder.write("a.txt", b"content")
    folder.scan()
    before = folder.get("a.txt")
    st = os.lstat(p)
    copy = folder.root / "copy.tmpfile"
    shutil.copy2(p, copy)
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(copy, p)  # same content, mode and mtime; new inode
    assert os.lstat(p).st_ino != before.inode
    r = folder.scan()
    assert r.changed == []
    after = folder.get("a.txt")
    assert after.inode == os.lstat(p).st_ino
    assert after.version == before.version and after.seq == before.seq


def test_deleted_file_becomes_tombstone(folder):
    p = folder.write("a.txt", b"bye", mode=0o600)
    folder.scan()
    p.unlink()
    r = folder.scan()
    assert changed_paths(r) == ["a.txt"]
    e = folder.get("a.txt")
    assert e.deleted and e.size == 0 and e.hash == b"" and e.blocks == b""
    assert e.version == {DEV: 2} and e.modified_by == DEV
    assert folder.scan().changed == []  # tombstones stay, once
    folder.write("a.txt", b"back")
    folder.scan()
    again = folder.get("a.txt")
    assert not again.deleted and again.version == {DEV: 3}  # bumped from the tombstone


def test_bump_keeps_other_devices_counters(folder):
    p = folder.write("a.txt", b"one")
    folder.scan()
    e = folder.get("a.txt")
    folder.index.put_local([replace(e, version={DEV: 1, "PEER": 5}, modified_by="PEER")])
    p.write_bytes(b"changed")
    folder.scan()
    assert folder.get("a.txt").version == {DEV: 6, "PEER": 5}


# --- directories


def test_empty_dirs(folder):
    (folder.root / "empty").mkdir()
    (folder.root / "outer" / "inner").mkdir(parents=True)
    r = folder.scan()
    assert changed_paths(r) == ["empty", "outer", "outer/inner"]
    assert folder.get("empty").kind == Kind.DIR


def test_dir_mtime_or_mode_is_not_a_change_only_bookkeeping(folder):
    """Only the executable bit of files syncs (the contract): a directory's mode is this
    device's business, so it is recorded, with no new version for the peers."""
    d = folder.root / "d"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    folder.scan()
    bump_mtime(d)
    assert folder.scan().changed == []
    d.chmod(0o700)
    assert folder.scan().changed == []
    assert folder.get("d").mode == 0o700 and folder.get("d").version == {DEV: 1}
    assert folder.scan().changed == [] and folder.get("d").mode == 0o700


def test_file_permissions_other_than_exec_are_bookkeeping(folder):
    p = folder.write("a.txt", b"hello", mode=0o644)
    folder.scan()
    seq = folder.get("a.txt").seq
    p.chmod(0o600)
    assert folder.scan().changed == []
    e = folder.get("a.txt")
    assert (e.mode, e.version, e.seq) == (0o600, {DEV: 1}, seq)  # not announced again
    p.chmod(0o700)  # the executable bit: a change the peers get
    assert changed_paths(folder.scan()) == ["a.txt"]
    assert folder.get("a.txt").version == {DEV: 2}


def test_stale_error_on_dir_is_cleared_without_new_version(folder):
    (folder.root / "d").mkdir()
    folder.scan()
    e = folder.get("d")
    folder.index.put_local([replace(e, error="could not create")])
    r = folder.scan()
    assert r.changed == []
    assert folder.get("d").error == "" and folder.get("d").version == e.version
    assert folder.scan().changed == []


def test_nested_dirs_removed(folder):
    folder.write("a/b/c/f.txt")
    folder.write("a/b/g.txt")
    folder.write("a/keep.txt")
    folder.scan()
    shutil.rmtree(folder.root / "a" / "b")
    r = folder.scan()
    assert changed_paths(r) == ["a/b", "a/b/c", "a/b/c/f.txt", "a/b/g.txt"]
    assert all(e.deleted for e in r.changed)
    order = [e.path for e in r.changed]
    assert order.index("a/b/c/f.txt") < order.index("a/b/c") < order.index("a/b")
    assert folder.paths() == ["a", "a/keep.txt"]


def test_dir_replaced_by_file(folder):
    folder.write("x/inner.txt")
    folder.scan()
    shutil.rmtree(folder.root / "x")
    folder.write("x", b"now a file")
    r = folder.scan()
    assert changed_paths(r) == ["x", "x/inner.txt"]
    assert folder.get("x").kind == Kind.FILE and folder.get("x").version == {DEV: 2}
    assert folder.get("x/inner.txt").deleted


# --- symlinks


def test_symlinks_inside_and_outside(folder, tmp_path):
    folder.write("sub/file.txt")
    (folder.root / "inside").symlink_to("sub/file.txt")
    (folder.root / "sub" / "up").symlink_to("../sub/file.txt")
    (folder.root / "abs").symlink_to("/etc/passwd")
    (folder.root / "sub" / "escape").symlink_to("../../outside")
    r = folder.scan()
    inside = folder.get("inside")
    assert inside.kind == Kind.LINK and inside.target == "sub/file.txt"
    assert inside.hash == link_hash("sub/file.txt") and inside.size == len("sub/file.txt")
    assert not inside.error and not folder.get("sub/up").error
    for rel in ("abs", "sub/escape"):
        e = folder.get(rel)
        assert e.error == scanner.LINK_OUTSIDE
        assert e in r.errors and e in r.changed  # recorded so `status` shows it
    assert folder.scan().changed == []  # links are unchanged on a rescan
    (folder.root / "inside").unlink()
    (folder.root / "inside").symlink_to("sub")
    r = folder.scan()
    assert changed_paths(r) == ["inside"]
    assert folder.get("inside").target == "sub" and folder.get("inside").version == {DEV: 2}


def test_symlinked_dirs_are_not_entered(folder, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    folder.write("real/x.txt")
    (folder.root / "out").symlink_to(outside)
    (folder.root / "loop").symlink_to(".")
    folder.scan()
    assert folder.paths() == ["loop", "out", "real", "real/x.txt"]
    assert folder.get("out").kind == Kind.LINK
    assert folder.get("out").error == scanner.LINK_OUTSIDE


def test_dir_replaced_by_symlink(folder):
    folder.write("d/f.txt")
    folder.scan()
    shutil.rmtree(folder.root / "d")
    (folder.root / "d").symlink_to("elsewhere")
    r = folder.scan()
    assert changed_paths(r) == ["d", "d/f.txt"]
    assert folder.get("d").kind == Kind.LINK and folder.get("d/f.txt").deleted


def test_non_utf8_link_target(folder):
    os.symlink(b"bad\xfftarget", os.fsencode(folder.root / "l"))
    r = folder.scan()
    e = folder.get("l")
    assert e.error == scanner.LINK_NOT_UTF8 and e in r.errors
    assert e.hash == link_hash(os.fsdecode(b"bad\xfftarget"))
    assert folder.scan().changed == []


# --- errors and odd names


def test_unreadable_file_is_recorded_and_recovers(folder, monkeypatch):
    """Root can read anything, so the read failure is injected; see the test below."""
    folder.write("ok.txt")
    bad = folder.write("locked.txt", b"secret")
    real = scanner.hash_file

    def failing(path):
        if os.fspath(path).endswith("locked.txt"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(scanner, "hash_file", failing)
    r = folder.scan()
    assert changed_paths(r) == ["ok.txt"]  # no new version for unknown content
    e = folder.get("locked.txt")
    assert e.error == "cannot read: Permission denied" and e.hash == b""
    assert [x.path for x in r.errors] == ["locked.txt"]
    seq = folder.index.max_seq()
    r = folder.scan()  # still unreadable: nothing rewritten
    assert r.changed == [] and r.errors == [] and folder.index.max_seq() == seq
    monkeypatch.setattr(scanner, "hash_file", real)
    r = folder.scan()
    assert changed_paths(r) == ["locked.txt"]
    e = folder.get("locked.txt")
    assert not e.error and e.hash == hash_file(bad)[1] and e.version == {DEV: 1}


def test_a_file_too_large_to_sync_is_recorded_not_read(folder, monkeypatch):
    """Its block list would not fit a frame (MAX_FILE_SIZE): an error says so, without
    reading 120 GiB first, and once it is smaller it is synced as usual."""
    big = folder.root / "disk.img"
    with open(big, "wb") as f:
        f.truncate(MAX_FILE_SIZE + 1)  # a hole: nothing allocated
    real = scanner.hash_file

    def hash_file(path):
        assert not os.fspath(path).endswith("disk.img"), "read a file too large to sync"
        return real(path)

    monkeypatch.setattr(scanner, "hash_file", hash_file)
    r = folder.scan()
    e = folder.get("disk.img")
    assert e.error == "too large to sync (files of more than 120 GB are not synced)"
    assert [x.path for x in r.errors] == ["disk.img"] and r.changed == []
    seq = folder.index.max_seq()
    assert folder.scan().errors == [] and folder.index.max_seq() == seq  # nothing rewritten
    monkeypatch.undo()
    os.truncate(big, 5)
    r = folder.scan()
    assert changed_paths(r) == ["disk.img"] and not folder.get("disk.img").error


def test_sparse_files_hashed_wrong_before_are_hashed_again_once(folder, monkeypatch):
    """A hole that ended inside a block was hashed wrong until 34cc737, and such a file
    never synced: the first full scan after index schema 8 hashes every file with holes
    again (and no other), however unchanged its stat."""
    img = folder.root / "disk.img"
    with open(img, "wb") as f:
        f.truncate(4 * BLOCK_SIZE)
        f.seek(8192)
        f.write(b"x")
    if not holes.may_have_holes(os.stat(img)):
        pytest.skip("this file system allocated the holes")
    folder.write("plain.txt", b"data")
    folder.scan()
    good = folder.get("disk.img")
    folder.index.put_local([replace(good, hash=b"\1" * 32, blocks=b"\2" * 128)])
    assert folder.scan().changed == []  # as indexed, as far as its stat tells
    hashed = []
    real = scanner.hash_file
    monkeypatch.setattr(scanner, "hash_file", lambda p: hashed.append(p) or real(p))
    folder.index.set_meta(SPARSE_RECHECK_KEY, 1)
    r = folder.scan()
    assert changed_paths(r) == ["disk.img"] and [os.fspath(p) for p in hashed] == [str(img)]
    assert (folder.get("disk.img").hash, folder.get("disk.img").blocks) == (good.hash, good.blocks)
    assert not folder.index.get_meta(SPARSE_RECHECK_KEY)
    assert folder.scan().changed == [] and len(hashed) == 1


def test_file_that_becomes_unreadable_keeps_its_version(folder, monkeypatch):
    folder.write("a.txt", b"data")
    folder.scan()
    good = folder.get("a.txt")

    def failing(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(scanner, "hash_file", failing)
    bump_mtime(folder.root / "a.txt")
    r = folder.scan()
    assert r.changed == []
    e = folder.get("a.txt")
    assert e.error and e.version == good.version and e.hash == good.hash
    monkeypatch.undo()
    bump_mtime(folder.root / "a.txt", 0)
    r = folder.scan()
    assert changed_paths(r) == ["a.txt"]  # mtime did change meanwhile
    assert not folder.get("a.txt").error and folder.get("a.txt").version == {DEV: 2}


@pytest.mark.skipif(
    getattr(os, "geteuid", lambda: -1)() == 0, reason="root reads files regardless of permissions"
)
def test_unreadable_file_real_permissions(folder):
    p = folder.write("locked.txt", b"secret")
    p.chmod(0)
    try:
        folder.scan()
        assert folder.get("locked.txt").error.startswith("cannot read:")
    finally:
        p.chmod(0o644)


def test_unlistable_dir_protects_its_entries(folder, monkeypatch, caplog, unlistable):
    folder.write("d/a.txt")
    folder.write("d/e/b.txt")
    folder.scan()
    unlistable("d")
    with caplog.at_level(logging.WARNING):
        r = folder.scan()
    monkeypatch.undo()
    assert r.changed == []
    assert folder.paths() == ["d", "d/a.txt", "d/e", "d/e/b.txt"]
    assert "cannot list d" in caplog.text


def test_non_utf8_and_invalid_names_skipped(folder, caplog):
    folder.write("fine.txt")
    with open(os.fsencode(folder.root) + b"/bad\xffname.txt", "wb") as f:
        f.write(b"x")
    os.mkdir(os.fsencode(folder.root) + b"/bad\xfedir")
    folder.write("back\\slash.txt")
    with caplog.at_level(logging.WARNING):
        r = folder.scan()
    assert changed_paths(r) == ["fine.txt"]
    assert folder.paths() == ["fine.txt"]
    assert "UTF-8" in caplog.text and "backslash" in caplog.text


def test_special_files_are_skipped(folder):
    os.mkfifo(folder.root / "fifo")
    folder.write("a.txt")
    r = folder.scan()
    assert changed_paths(r) == ["a.txt"]


def test_file_changing_while_hashed_is_skipped(folder, monkeypatch):
    p = folder.write("growing.log", b"start")
    real = scanner.hash_file

    def and_then_append(path):
        out = real(path)
        with open(path, "ab") as f:
            f.write(b"more")
        return out

    monkeypatch.setattr(scanner, "hash_file", and_then_append)
    r = folder.scan()
    assert r.changed == [] and folder.get("growing.log") is None
    monkeypatch.undo()
    folder.scan()
    assert folder.get("growing.log").size == os.path.getsize(p)


def test_missing_root_raises_instead_of_deleting(folder):
    folder.write("a.txt")
    folder.scan()
    shutil.rmtree(folder.root)
    with pytest.raises(FileNotFoundError):
        folder.scan()
    with pytest.raises(FileNotFoundError):
        folder.scan(["a.txt"])
    assert folder.paths() == ["a.txt"]


def test_index_write_during_scan_wins(folder, monkeypatch):
    """What the engine writes while a scan runs is newer than the scan's view."""
    folder.write("a.txt", b"one")
    folder.write("b.txt", b"two")
    folder.scan()
    (folder.root / "a.txt").write_bytes(b"changed a")
    (folder.root / "b.txt").write_bytes(b"changed b")
    real = scanner.hash_file
    engine_entry = FileEntry("a.txt", version={"PEER": 9}, modified_by="PEER")

    def engine_writes_meanwhile(path):
        if os.fspath(path).endswith("a.txt"):
            folder.index.put_local([replace(engine_entry)])
        return real(path)

    monkeypatch.setattr(scanner, "hash_file", engine_writes_meanwhile)
    r = folder.scan()
    assert changed_paths(r) == ["b.txt"]
    assert folder.get("a.txt").version == {"PEER": 9}


def test_one_batched_write(folder, monkeypatch):
    for i in range(20):
        folder.write(f"d{i % 3}/f{i}.txt", str(i).encode())
    calls = []
    real = folder.index.put_local
    monkeypatch.setattr(folder.index, "put_local", lambda es: (calls.append(1), real(es)))
    r = folder.scan()
    assert len(r.changed) == 23 and len(calls) == 1


# --- ignores and temps


def test_temp_files_reported_not_indexed(folder):
    folder.write(TEMP, b"partial")
    nested = temp_name_for("d/file.txt", b"\x01" * 32)
    folder.write(nested, b"partial")
    r = folder.scan()
    assert sorted(r.temps) == sorted([TEMP, nested])
    assert folder.paths() == ["d"]
    assert r.ignored == []


def test_ignored_paths(folder):
    folder.write(IGNORE_FILE, b"*.log\nbuild/\n")
    folder.write("a.log")
    folder.write("src/b.log")
    folder.write("build/out/x.o")
    folder.write("src/main.c")
    folder.write(".p2psync/archive/old.txt")
    r = folder.scan()
    assert folder.paths() == [IGNORE_FILE, "src", "src/main.c"]
    assert sorted(r.ignored) == ["a.log", "build", "src/b.log"]


def test_now_ignored_paths_are_kept_not_deleted(folder):
    folder.write("logs/a.log")
    folder.write("b.log")
    folder.write("c.txt")
    folder.scan()
    folder.write(IGNORE_FILE, b"*.log\nlogs/\n")
    r = folder.scan()
    assert changed_paths(r) == [IGNORE_FILE]
    for rel in ("logs", "logs/a.log", "b.log"):
        assert not folder.get(rel).deleted
    (folder.root / "b.log").unlink()  # gone while ignored: still not our business
    shutil.rmtree(folder.root / "logs")
    assert folder.scan().changed == []
    assert not folder.get("b.log").deleted


def test_p2psync_dir_never_entered(folder):
    folder.write(".p2psync/x/y.txt")
    r = folder.scan()
    assert folder.paths() == [] and r.ignored == [] and r.changed == []


# --- subpath scans


def test_subpath_scan_only_looks_there(folder):
    folder.write("a/one.txt", b"1")
    folder.write("b/two.txt", b"2")
    folder.scan()
    (folder.root / "a/one.txt").write_bytes(b"11")
    (folder.root / "b/two.txt").write_bytes(b"22")
    r = folder.scan(["a"])
    assert changed_paths(r) == ["a/one.txt"]
    assert folder.get("b/two.txt").size == 1
    r = folder.scan(["b/two.txt"])
    assert changed_paths(r) == ["b/two.txt"]


def test_subpath_removed_dir_deletes_beneath(folder):
    folder.write("a/b/c.txt")
    folder.write("a/b/d/e.txt")
    folder.write("a/bb.txt")  # shares a prefix, not beneath
    folder.scan()
    shutil.rmtree(folder.root / "a" / "b")
    r = folder.scan(["a/b"])
    assert changed_paths(r) == ["a/b", "a/b/c.txt", "a/b/d", "a/b/d/e.txt"]
    assert folder.paths() == ["a", "a/bb.txt"]


def test_subpath_removed_dir_indexed_as_deleted_still_deletes_beneath(folder):
    # A pull puts a file in place (making its directory) before the directory's own
    # entry comes: until then the index has the directory deleted, the file live.
    folder.write("docs/f1.txt")
    folder.write("docs/sub/f2.txt")
    folder.scan()
    folder.index.put_local([replace(folder.get("docs"), deleted=True)])
    shutil.rmtree(folder.root / "docs")
    r = folder.scan(["docs"])
    assert changed_paths(r) == ["docs/f1.txt", "docs/sub", "docs/sub/f2.txt"]
    assert folder.paths() == []


def test_subpaths_below_a_vanished_directory_wait_for_its_own_scan(folder):
    """Files whose events come before their directory's move (the watcher holds a move
    to pair it) are not deleted one by one: the directory is scanned as a whole later,
    so a peer learns of all of it at once (and its mass-deletion guard can see it)."""
    for i in range(3):
        folder.write(f"docs/sub/f{i}.txt")
    folder.write("keep.txt")
    folder.scan()
    os.rename(folder.root / "docs", folder.root.parent / "trash")
    r = folder.scan(["docs/sub/f0.txt", "docs/sub/f1.txt", "docs/sub"])
    assert changed_paths(r) == [] and r.parents_gone == ["docs"]
    assert not folder.get("docs/sub/f0.txt").deleted
    r = folder.scan(r.parents_gone)
    assert changed_paths(r) == ["docs", "docs/sub", *(f"docs/sub/f{i}.txt" for i in range(3))]
    assert folder.paths() == ["keep.txt"]


def test_a_parent_that_cannot_be_looked_at_deletes_nothing(folder, monkeypatch):
    folder.write("docs/f.txt")
    folder.scan()
    real = os.lstat

    def lstat(p, *a, **kw):  # type: ignore[no-untyped-def]
        if str(p).endswith("/docs"):
            raise PermissionError(13, "Permission denied", str(p))
        return real(p, *a, **kw)

    monkeypatch.setattr(scanner.os, "lstat", lstat)
    r = folder.scan(["docs/f.txt"])
    assert changed_paths(r) == [] and r.parents_gone == ["docs"]
    r = folder.scan(r.parents_gone)
    assert changed_paths(r) == [] and not folder.get("docs/f.txt").deleted


def test_subpath_new_nested_file_adds_parents(folder):
    folder.write("x/y/z.txt")
    r = folder.scan(["x/y/z.txt"])
    assert changed_paths(r) == ["x", "x/y", "x/y/z.txt"]
    assert folder.scan().changed == []


def test_subpath_edge_cases(folder, caplog):
    folder.write("a/f.txt")
    folder.scan()
    assert folder.scan(["nothing/here"]).changed == []
    with caplog.at_level(logging.WARNING):
        assert folder.scan(["../etc", "/abs", ""]).changed == []
    folder.write("a/g.txt")
    folder.write("a/h.txt")
    r = folder.scan(["a/g.txt", "a", "a/g.txt"])  # overlapping: each path once
    assert changed_paths(r) == ["a/g.txt", "a/h.txt"]
    folder.write(f"a/{TEMP}")
    assert folder.scan([f"a/{TEMP}"]).temps == [f"a/{TEMP}"]


def test_subpath_under_symlinked_parent_is_gone(folder, tmp_path):
    folder.write("d/f.txt")
    folder.scan()
    shutil.rmtree(folder.root / "d")
    other = tmp_path / "other"
    other.mkdir()
    (other / "f.txt").write_text("outside")
    (folder.root / "d").symlink_to(other)
    r = folder.scan(["d/f.txt"])  # its parent is no directory now: the parent's scan says
    assert changed_paths(r) == [] and r.parents_gone == ["d"]
    r = folder.scan(r.parents_gone)
    assert "d/f.txt" in changed_paths(r) and folder.get("d/f.txt").deleted
    assert folder.get("d").kind == Kind.LINK


# --- speed


def test_rescan_of_many_unchanged_files_is_cheap(folder):
    for d in range(20):
        sub = folder.root / f"d{d}"
        sub.mkdir()
        for i in range(100):
            (sub / f"f{i}.txt").write_bytes(b"%d" % i)
    start = time.perf_counter()
    r = folder.scan()
    first = time.perf_counter() - start
    assert len(r.changed) == 2020
    start = time.perf_counter()
    r = folder.scan()
    second = time.perf_counter() - start
    assert r.changed == [] and r.hashed_bytes == 0
    assert first < 5 and second < 1, (first, second)  # ~0.1 s and ~0.012 s here


# --- directories moved, and scans in bounded pieces


def _count_hashes(monkeypatch) -> list:
    calls = []
    real = scanner.hash_file
    monkeypatch.setattr(scanner, "hash_file", lambda p: (calls.append(p), real(p))[1])
    return calls


@pytest.mark.parametrize("how", ["full", "subpaths"])
def test_a_moved_directory_is_not_read_again_and_each_move_comes_in_one_piece(
        folder, monkeypatch, how):
    for i in range(30):
        folder.write(f"old/sub{i % 3}/f{i}.txt", b"%d" % i)
    folder.write("zz.txt")
    folder.scan()
    before = {e.path: e for e in folder.index.all_local()}
    os.rename(folder.root / "old", folder.root / "new")
    calls = _count_hashes(monkeypatch)
    r = folder.scan(None if how == "full" else ["old", "new"])
    assert calls == []  # nothing read: same size, mtime, inode and ctime
    seq = {e.path: e.seq for e in r.changed}
    for i in range(30):
        old, new = f"old/sub{i % 3}/f{i}.txt", f"new/sub{i % 3}/f{i}.txt"
        assert folder.get(old).deleted
        got = folder.get(new)
        assert (got.hash, got.blocks, got.size) == (before[old].hash, before[old].blocks,
                                                     before[old].size)
        assert seq[new] == seq[old] + 1  # the deletion right before the new entry
    assert folder.paths() == ["new", "new/sub0", *sorted(
        f"new/sub0/f{i}.txt" for i in range(0, 30, 3)), "new/sub1", *sorted(
        f"new/sub1/f{i}.txt" for i in range(1, 30, 3)), "new/sub2", *sorted(
        f"new/sub2/f{i}.txt" for i in range(2, 30, 3)), "zz.txt"]
    assert seq["old/sub0"] < seq["old"]  # directories go after what they held


def test_a_moved_directory_re_reads_the_files_that_changed_meanwhile(folder, monkeypatch):
    folder.write("old/same.txt", b"same")
    folder.write("old/edited.txt", b"before")
    folder.scan()
    os.rename(folder.root / "old", folder.root / "new")
    (folder.root / "new" / "edited.txt").write_bytes(b"after!")
    calls = _count_hashes(monkeypatch)
    folder.scan()
    assert [os.path.basename(p) for p in calls] == ["edited.txt"]
    assert folder.get("new/edited.txt").hash == hash_file(folder.root / "new/edited.txt")[1]
    assert folder.get("old/edited.txt").deleted and folder.get("old/same.txt").deleted


def test_a_directory_replaced_by_another_is_no_move(folder, monkeypatch):
    folder.write("a/x.txt", b"one")
    folder.scan()
    shutil.rmtree(folder.root / "a")
    folder.write("b/x.txt", b"two")
    folder.scan()
    assert folder.get("b/x.txt").hash == hash_file(folder.root / "b/x.txt")[1]
    assert folder.get("a/x.txt").deleted


@pytest.mark.parametrize("copied", [False, True], ids=["new", "copy-p"])
@pytest.mark.parametrize("moved_to", ["g", "a"], ids=["after", "before"])
def test_a_new_file_at_a_moved_directory_s_old_path_stays(folder, moved_to, copied):
    """d moved to moved_to, then a new d/c.txt (or a copy keeping its time, `cp -p`):
    both files are live. Found by the property test (d moved to g): the new d/c.txt
    was recorded first, and the move's deletion of the old d/c.txt, read from the
    index the scan had not written yet, came after it and won; the peer deleted its
    d/c.txt. The old path holds a file of its own: no move is taken from there."""
    folder.write("d/c.txt", b"")
    folder.scan()
    os.rename(folder.root / "d", folder.root / moved_to)
    if copied:
        (folder.root / "d").mkdir()
        shutil.copy2(folder.root / moved_to / "c.txt", folder.root / "d/c.txt")
    else:
        folder.write("d/c.txt", b"")
    folder.scan()
    assert not folder.get("d/c.txt").deleted
    assert not folder.get(f"{moved_to}/c.txt").deleted
    assert folder.get("d/c.txt").inode == os.lstat(folder.root / "d/c.txt").st_ino
    folder.scan()  # and the next scan finds nothing to change
    assert folder.scan().changed_count == 0


def test_a_scan_writes_in_bounded_batches_and_reads_the_index_a_chunk_at_a_time(
        folder, monkeypatch):
    for i in range(95):
        folder.write(f"d{i % 7}/f{i:03}.txt", b"%d" % i)
    monkeypatch.setattr(scanner, "FLUSH_EVERY", 10)
    monkeypatch.setattr(scanner, "BRIEF_CHUNK", 8)
    calls = []
    real = folder.index.put_local
    monkeypatch.setattr(folder.index, "put_local", lambda es: (calls.append(len(es)),
                                                               real(es)))
    r = folder.scan()
    assert r.changed_count == len(r.changed) == 102 and max(calls) <= 10
    for i in range(0, 95, 5):
        (folder.root / f"d{i % 7}/f{i:03}.txt").unlink()
    shutil.rmtree(folder.root / "d6")
    calls.clear()
    r = folder.scan()
    gone = {e.path for e in r.changed}
    assert all(e.deleted for e in r.changed) and max(calls) <= 10
    assert gone == {f"d{i % 7}/f{i:03}.txt" for i in range(0, 95, 5)} | {
        f"d6/f{i:03}.txt" for i in range(6, 95, 7)} | {"d6"}
    assert folder.scan().changed == []


def test_the_count_of_changes_is_exact_beyond_the_list(folder, monkeypatch):
    monkeypatch.setattr(scanner, "CHANGED_KEPT", 5)
    for i in range(12):
        folder.write(f"f{i}", b"x")
    r = folder.scan()
    assert r.changed_count == 12 and len(r.changed) == 5


def test_skipped_names_are_listed_with_why_and_go_when_fixed(folder):
    bad = os.fsencode(folder.root) + b"/bad\xffname.txt"
    with open(bad, "wb") as f:
        f.write(b"x")
    folder.write("d/back\\slash.txt")
    folder.write("build/x\\y.txt")  # ignored below: not listed
    folder.write(IGNORE_FILE, b"build/\n")
    folder.scan()
    assert folder.index.skipped() == {
        "bad\ufffdname.txt": "not synced: the name is not valid UTF-8; rename it",
        "d/back\\slash.txt": "not synced: the name holds a backslash, a path separator on "
                             "Windows; rename it",
    }
    os.rename(bad, os.fsencode(folder.root) + b"/good.txt")
    folder.scan(["d"])  # a partial scan keeps what it did not look at
    assert list(folder.index.skipped()) == ["bad\ufffdname.txt", "d/back\\slash.txt"]
    (folder.root / "d/back\\slash.txt").rename(folder.root / "d/slash.txt")
    folder.scan(["d"])
    assert list(folder.index.skipped()) == ["bad\ufffdname.txt"]
    folder.scan()
    assert folder.index.skipped() == {}


def test_skipped_names_are_bounded(folder, monkeypatch, caplog):
    monkeypatch.setattr(scanner, "SKIPPED_KEPT", 3)
    for i in range(5):
        folder.write(f"n{i}\\x.txt")
    with caplog.at_level(logging.WARNING):
        folder.scan()
    skipped = folder.index.skipped()
    assert len(skipped) == 3 and set(skipped) < {f"n{i}\\x.txt" for i in range(5)}
    assert "2 more path(s) could not be indexed" in caplog.text


def test_an_unlistable_directory_is_listed_as_skipped(folder, monkeypatch, unlistable):
    folder.write("locked/a.txt")
    folder.scan()
    unlistable("locked")
    folder.scan()
    assert folder.index.skipped() == {
        "locked": "cannot be read here: this user may not list this directory (permission "
                  "denied); give it read access, or add it to .p2psyncignore"}
    assert folder.paths() == ["locked", "locked/a.txt"]  # protected, as before
    monkeypatch.undo()
    folder.scan()
    assert folder.index.skipped() == {}


# --- subpaths that are unchanged files (what a watching node is told of its own writes)
def test_unchanged_files_asked_for_are_passed_by_without_a_range_read(folder, monkeypatch):
    for i in range(50):
        folder.write(f"docs/{i:02d}.txt", b"same")
    folder.scan()
    ranges = []
    real = folder.index.brief_range
    monkeypatch.setattr(folder.index, "brief_range",
                        lambda *a, **k: ranges.append(a) or real(*a, **k))
    before = folder.index.max_seq()
    result = folder.scan([f"docs/{i:02d}.txt" for i in range(50)])
    assert changed_paths(result) == []
    assert ranges == []  # no subpath was scanned: each was told apart by one lstat
    assert folder.index.max_seq() == before


@pytest.mark.parametrize("change", ["rewritten, same size and mtime", "replaced", "chmod",
                                    "removed", "made a directory", "made a link"])
def test_a_subpath_whose_file_changed_is_still_scanned(folder, change):
    p = folder.write("docs/a.txt", b"version one")
    folder.write("docs/b.txt", b"untouched")
    folder.scan()
    st = os.lstat(p)
    time.sleep(0.01)  # the ctime clock moves on
    if change == "rewritten, same size and mtime":
        with open(p, "r+b") as fh:
            fh.write(b"version two")
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif change == "replaced":
        new = folder.write("docs/new.tmp", b"version two")
        os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(new, p)
    elif change == "chmod":
        p.chmod(st.st_mode & 0o777 | 0o111)  # made executable: a change every device takes
    elif change == "removed":
        p.unlink()
    elif change == "made a directory":
        p.unlink()
        p.mkdir()
    else:
        p.unlink()
        p.symlink_to("b.txt")
    # what a watching node asks before it takes the disk lock: a.txt may have changed
    assert scanner.maybe_changed(folder.root, folder.index, folder.ignore,
                                 ["docs/b.txt", "docs/a.txt"]) == ["docs/a.txt"]
    result = folder.scan(["docs/a.txt", "docs/b.txt"])
    assert "docs/a.txt" in changed_paths(result)  # a new version, or a deletion
    assert "docs/b.txt" not in changed_paths(result)


def test_subpaths_below_a_directory_made_a_link_are_still_scanned(folder):
    """The same files, reached through a link: their lstat is the indexed one, but they
    are no longer in the folder (a link is not followed)."""
    for name in ("a.txt", "b.txt"):
        folder.write(f"docs/{name}", b"same")
    folder.scan()
    os.rename(folder.root / "docs", folder.root / "elsewhere")
    os.symlink("elsewhere", folder.root / "docs")
    assert scanner.maybe_changed(folder.root, folder.index, folder.ignore,
                                 ["docs/a.txt", "docs/b.txt"]) == ["docs/a.txt", "docs/b.txt"]
    result = folder.scan(["docs/a.txt", "docs/b.txt"])
    assert result.parents_gone == ["docs"]  # scanned as a whole next
    result = folder.scan(result.parents_gone)
    assert {"docs/a.txt", "docs/b.txt"} <= set(changed_paths(result))


def test_maybe_changed_keeps_what_is_not_a_known_unchanged_file(folder):
    """Directories (their scan is of all below them), new files and paths not on disk are
    never left out; paths below another one asked are covered by it, and a bad path is
    dropped (as the scan drops it, with a warning)."""
    folder.write("docs/a.txt", b"same")
    folder.scan()
    folder.write("docs/new.txt", b"new")
    asked = ["docs/a.txt", "docs", "docs/new.txt", "gone.txt", "../outside", "docs/a.txt"]
    assert scanner.maybe_changed(folder.root, folder.index, folder.ignore, asked) == [
        "docs", "gone.txt"]
    asked = ["docs/a.txt", "docs/new.txt", "gone.txt"]
    assert scanner.maybe_changed(folder.root, folder.index, folder.ignore, asked) == [
        "docs/new.txt", "gone.txt"]
