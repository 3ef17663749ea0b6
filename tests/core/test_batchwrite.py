"""The disk half of a batched small-file fetch: each file safely in place, or why not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.core import apply, batchwrite, hashing, paths, platform
from app.core.batchwrite import BadContent, Placed, SmallFile, write_small_files
from app.core.model import FileEntry, Kind
from app.core.versions import bump

MTIME = 1_600_000_000_123_456_789


@pytest.fixture(autouse=True, params=["unnamed", "named", "paths"])
def temp_kind(request, monkeypatch):
    """Every test three times: with O_TMPFILE, with the named temp file used without it,
    and with neither directory descriptors nor O_NOFOLLOW (Windows, P2PSYNC_PORTABLE)."""
    if request.param == "paths":
        monkeypatch.setattr(platform, "DIR_FDS", False)
        monkeypatch.setattr(platform, "NOFOLLOW", 0)
        monkeypatch.setattr(platform, "TEMP_FLAGS", platform.TEMP_FLAGS & ~os.O_NOFOLLOW)
    if request.param in ("named", "paths"):
        monkeypatch.setattr(platform, "UNNAMED_TEMPS", False)
    elif not platform.UNNAMED_TEMPS:
        pytest.skip("no O_TMPFILE here")
    return request.param


def small(rel: str, data: bytes, local: FileEntry | None = None, mode: int = 0o640) -> SmallFile:
    return SmallFile(rel, data, hashing.block_hash(data) if data else b"", mode, MTIME, local,
                     bump(local.version if local else {}, "PEER"))


def indexed(root: Path, rel: str) -> FileEntry:
    """The entry a scan would have made for the file at rel."""
    st = os.lstat(root / rel)
    return FileEntry(rel, Kind.FILE, st.st_size, st.st_mtime_ns, st.st_mode & 0o777,
                     inode=st.st_ino, ctime_ns=st.st_ctime_ns)


def leftovers(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if paths.is_temp_name(p.name)]


def test_new_files_land_with_content_mode_and_mtime(tmp_path):
    files = [small("top.txt", b"top"), small("a/b/deep.txt", b"deep", mode=0o755),
             small("a/empty", b"")]
    out = write_small_files(tmp_path, files)
    assert all(isinstance(o, Placed) for o in out)
    assert (tmp_path / "top.txt").read_bytes() == b"top"
    assert (tmp_path / "a/b/deep.txt").read_bytes() == b"deep"
    assert (tmp_path / "a/empty").read_bytes() == b""
    st = os.stat(tmp_path / "a/b/deep.txt")
    assert st.st_mode & 0o777 == 0o755 and st.st_mtime_ns == MTIME
    assert (out[1].inode, out[1].ctime_ns) == (st.st_ino, st.st_ctime_ns)  # what a scan sees
    assert leftovers(tmp_path) == []


def test_a_temp_name_is_worked_out_only_for_a_file_written_under_one(
        tmp_path, temp_kind, monkeypatch):
    """Most files are written unnamed: naming each cost ~3% of a tiny file's receiving."""
    named: list[str] = []
    real = paths.temp_name_for
    monkeypatch.setattr(paths, "temp_name_for", lambda rel, h: named.append(rel) or real(rel, h))
    out = write_small_files(tmp_path, [small("top.txt", b"top"), small("a/deep.txt", b"deep")])
    assert all(isinstance(o, Placed) for o in out)
    assert named == ([] if temp_kind == "unnamed" else ["top.txt", "a/deep.txt"])


def test_the_indexed_old_version_is_archived(tmp_path):
    (tmp_path / "doc.txt").write_bytes(b"old")
    [out] = write_small_files(tmp_path, [small("doc.txt", b"new", indexed(tmp_path, "doc.txt"))])
    assert isinstance(out, Placed)
    assert (tmp_path / "doc.txt").read_bytes() == b"new"
    [kept] = (tmp_path / apply.VERSIONS_DIR).iterdir()
    assert kept.read_bytes() == b"old"


def test_a_file_edited_since_indexing_is_left_alone(tmp_path):
    (tmp_path / "doc.txt").write_bytes(b"old")
    entry = indexed(tmp_path, "doc.txt")
    (tmp_path / "doc.txt").write_bytes(b"the user's newer edit")
    (tmp_path / "new.txt").write_bytes(b"appeared meanwhile")  # the index says: nothing here
    out = write_small_files(tmp_path, [small("doc.txt", b"new", entry),
                                       small("new.txt", b"peer's"), small("ok.txt", b"ok")])
    assert isinstance(out[0], apply.DiskChanged) and isinstance(out[1], apply.DiskChanged)
    assert isinstance(out[2], Placed)  # one refusal does not stop the batch
    assert (tmp_path / "doc.txt").read_bytes() == b"the user's newer edit"
    assert (tmp_path / "new.txt").read_bytes() == b"appeared meanwhile"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("link_at", ["sub", "sub/inner"])
def test_never_written_through_a_linked_directory(tmp_path, link_at):
    share, outside = tmp_path / "share", tmp_path / "outside"
    (outside / "inner").mkdir(parents=True)
    (share / "sub").mkdir(parents=True)
    if link_at == "sub":
        os.rmdir(share / "sub")
        os.symlink(outside, share / "sub")
    else:
        os.symlink(outside / "inner", share / "sub/inner")
    [out] = write_small_files(share, [small("sub/inner/evil.txt", b"evil")])
    assert isinstance(out, paths.BadPath) and "symlink" in str(out)
    assert list(outside.rglob("*")) == [outside / "inner"]


def test_a_planted_link_under_the_temp_name_is_not_followed(tmp_path, temp_kind):
    share, outside = tmp_path / "share", tmp_path / "outside.txt"
    share.mkdir()
    outside.write_bytes(b"precious")
    f = small("doc.txt", b"new")
    os.symlink(outside, share / f.temp_name)
    [out] = write_small_files(share, [f])
    assert isinstance(out, Placed)
    assert outside.read_bytes() == b"precious"
    assert (share / "doc.txt").read_bytes() == b"new" and not (share / "doc.txt").is_symlink()
    if temp_kind == "named":
        assert not os.path.lexists(share / f.temp_name)  # the planted link was removed


def test_a_file_where_a_directory_is_needed_fails_that_file_only(tmp_path):
    (tmp_path / "plain").write_bytes(b"a file")
    out = write_small_files(tmp_path, [small("plain/x.txt", b"x"), small("y.txt", b"y")])
    assert isinstance(out[0], paths.BadPath) and "not a directory" in str(out[0])
    assert isinstance(out[1], Placed)
    assert (tmp_path / "plain").read_bytes() == b"a file"


def test_bytes_that_do_not_match_their_hash_are_not_written(tmp_path):
    bad = small("x.txt", b"what the peer promised")
    bad.data = b"what the peer sent"
    out = write_small_files(tmp_path, [bad, small("y.txt", b"y")])
    assert isinstance(out[0], BadContent) and isinstance(out[1], Placed)
    assert not (tmp_path / "x.txt").exists() and leftovers(tmp_path) == []


def test_a_name_taken_meanwhile_is_never_replaced(tmp_path, monkeypatch):
    """Between the check and the link, a user saves a file under that very name."""
    real_utime = os.utime

    def user_saves_meanwhile(*args, **kwargs):
        real_utime(*args, **kwargs)
        (tmp_path / "doc.txt").write_bytes(b"the user's new file")

    monkeypatch.setattr(batchwrite.os, "utime", user_saves_meanwhile)
    [out] = write_small_files(tmp_path, [small("doc.txt", b"peer's")])
    assert isinstance(out, apply.DiskChanged)
    assert (tmp_path / "doc.txt").read_bytes() == b"the user's new file"
    assert leftovers(tmp_path) == []


def test_a_failed_file_keeps_no_frame_alive(tmp_path):
    """A file's failure is kept as a value without its traceback: the traceback held the
    batch's frame, which held the list holding the failure (a cycle the collector had
    to free, 60,000-90,000 objects at a time on a full disk)."""
    (tmp_path / "plain").write_bytes(b"a file")
    bad = small("y.txt", b"what the peer promised")
    bad.data = b"what the peer sent"
    out = write_small_files(tmp_path, [small("plain/x.txt", b"x"), bad])
    assert isinstance(out[0], paths.BadPath) and isinstance(out[1], BadContent)
    assert out[0].__traceback__ is None and out[1].__traceback__ is None
