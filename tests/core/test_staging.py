"""Where a batch's new files are made: `.p2psync/staging`, out of the watcher's sight,
wherever a file made there is the one made beside its place; else beside it."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from app.core import apply, batchwrite, hashing, paths, platform
from app.core.batchwrite import Placed, SmallFile, write_small_files
from app.core.model import FileEntry, Kind
from app.core.versions import bump

pytestmark = pytest.mark.skipif(not platform.UNNAMED_TEMPS, reason="no O_TMPFILE here")

MTIME = 1_600_000_000_123_456_789


def small(rel: str, data: bytes, local: FileEntry | None = None, mode: int = 0o640) -> SmallFile:
    return SmallFile(rel, data, hashing.block_hash(data), mode, MTIME, local,
                     bump(local.version if local else {}, "PEER"))


@pytest.fixture
def made_in(monkeypatch) -> list[str]:
    """The directory (relative to the folder) each unnamed temp file was made in."""
    where: list[str] = []
    real = platform.open_unnamed

    def spy(d, mode):
        where.append(d.rel)
        return real(d, mode)

    monkeypatch.setattr(platform, "open_unnamed", spy)
    return where


@pytest.fixture
def share(tmp_path: Path) -> Path:
    root = tmp_path / "share"
    (root / paths.META_DIR).mkdir(parents=True)  # the marker a node makes
    return root


def test_new_files_are_made_in_staging_and_land_whole(share, made_in):
    files = [small("top.txt", b"top"), small("a/b/deep.txt", b"deep", mode=0o755)]
    out = write_small_files(share, files)
    assert made_in == [batchwrite.STAGING] * 2
    assert (share / "top.txt").read_bytes() == b"top"
    st = os.stat(share / "a/b/deep.txt")
    assert (st.st_mode & 0o777, st.st_mtime_ns) == (0o755, MTIME)
    assert isinstance(out[1], Placed) and (out[1].inode, out[1].ctime_ns) == (st.st_ino,
                                                                             st.st_ctime_ns)
    assert os.listdir(share / batchwrite.STAGING) == []  # unnamed: nothing is left there


def test_a_file_made_in_staging_replaces_the_indexed_one(share, made_in):
    (share / "doc.txt").write_bytes(b"old")
    st = os.lstat(share / "doc.txt")
    entry = FileEntry("doc.txt", Kind.FILE, st.st_size, st.st_mtime_ns, st.st_mode & 0o777,
                      inode=st.st_ino, ctime_ns=st.st_ctime_ns)
    [out] = write_small_files(share, [small("doc.txt", b"new", entry)])
    assert isinstance(out, Placed) and made_in == [batchwrite.STAGING]
    assert (share / "doc.txt").read_bytes() == b"new"
    [kept] = (share / apply.VERSIONS_DIR).iterdir()
    assert kept.read_bytes() == b"old"


def test_a_missing_marker_is_never_made_again(tmp_path, made_in):
    """Gone, `.p2psync` says the folder is not there (app.core.marker): writing must not
    bring it back."""
    [out] = write_small_files(tmp_path, [small("x.txt", b"x")])
    assert isinstance(out, Placed) and made_in == [""]
    assert not (tmp_path / paths.META_DIR).exists()


def test_a_linked_marker_is_not_followed(tmp_path, made_in):
    share, outside = tmp_path / "share", tmp_path / "outside"
    share.mkdir()
    outside.mkdir()
    os.symlink(outside, share / paths.META_DIR)
    [out] = write_small_files(share, [small("x.txt", b"x")])
    assert isinstance(out, Placed) and made_in == [""]
    assert list(outside.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory another group needs root")
def test_a_setgid_directory_still_gives_its_group(share, made_in):
    (share / "team").mkdir()
    os.chown(share / "team", -1, 4242)
    os.chmod(share / "team", 0o2775)
    write_small_files(share, [small("team/plan.txt", b"plan"), small("mine.txt", b"mine")])
    assert os.stat(share / "team/plan.txt").st_gid == 4242
    assert made_in == ["team", batchwrite.STAGING]


@pytest.mark.skipif(shutil.which("setfacl") is None, reason="no setfacl here")
def test_a_directory_with_a_default_acl_still_gives_its_entries(share, made_in):
    (share / "team").mkdir()
    if subprocess.run(["setfacl", "-d", "-m", "g:4242:rwx", share / "team"]).returncode:
        pytest.skip("no ACLs on this file system")
    write_small_files(share, [small("team/plan.txt", b"plan")])
    assert "system.posix_acl_access" in os.listxattr(share / "team/plan.txt")
    assert made_in == ["team"]


@pytest.fixture
def mounted(share):
    """A tmpfs mounted inside the folder: a link from staging into it would fail."""
    inner = share / "mnt"
    inner.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs",
                                            inner], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield inner
    subprocess.run(["umount", "-l", inner], check=True)


def test_files_below_another_mount_are_made_there(share, mounted, made_in):
    out = write_small_files(share, [small("mnt/in.txt", b"in"), small("out.txt", b"out")])
    assert all(isinstance(o, Placed) for o in out), out
    assert (mounted / "in.txt").read_bytes() == b"in"
    assert made_in == ["mnt", batchwrite.STAGING]


def test_a_file_that_cannot_be_linked_from_staging_is_written_again_beside(share, made_in,
                                                                          monkeypatch):
    """EXDEV where traits_alike saw nothing against it (a bind mount of the same mount's
    file system, an ext4 project quota): written again beside its place, and so are the
    next files of that directory."""
    real = platform.link_unnamed
    refused: list[str] = []

    def across(d, fd, name):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(share / batchwrite.STAGING)):
            refused.append(name)
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real(d, fd, name)

    monkeypatch.setattr(platform, "link_unnamed", across)
    out = write_small_files(share, [small("q/a.txt", b"a"), small("q/b.txt", b"b")])
    assert all(isinstance(o, Placed) for o in out), out
    assert (share / "q/a.txt").read_bytes() == b"a" and (share / "q/b.txt").read_bytes() == b"b"
    assert refused == ["a.txt", "b.txt"] and made_in == [batchwrite.STAGING] * 2 + ["q"] * 2
    assert sorted(os.listdir(share / "q")) == ["a.txt", "b.txt"]  # no temp file left
