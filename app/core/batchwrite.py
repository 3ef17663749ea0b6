"""Writing many small files in one call: the disk half of a batched fetch.

A first sync of 10,000 small files is bound by per-file costs, not by bytes, so the
puller hands a whole batch of fetched contents to this function on its writer
thread while the event loop receives the next batch. Every file still follows the
safe path: content checked against its hash, temp file beside it, mode and mtime
set, whatever the index says is at the final path checked and archived, then an
atomic rename. The work is done relative to directory descriptors
(`app.core.dirfds`), so each directory is resolved once per batch and no step can
be sent through a link.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from app.core import apply, hashing, paths
from app.core.dirfds import DirFds
from app.core.model import FileEntry

_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class SmallFile:
    rel: str  # a validated relative path
    data: bytes  # the whole content, as a peer sent it
    block_hash: bytes  # what it must hash to (b"" for an empty file)
    mode: int
    mtime_ns: int
    temp_name: str  # the temp file's name, in rel's directory
    local: FileEntry | None  # what the index says is at rel now


class BadContent(Exception):
    """The bytes do not match their hash: fetch them again, from another peer if need be."""


@dataclass
class Placed:
    inode: int
    ctime_ns: int


def write_small_files(root: Path, files: list[SmallFile]) -> list[Placed | Exception]:
    """Put each file in place; per file, where it now is on disk or why it failed.

    A failure (`BadContent`, `apply.DiskChanged`, `paths.BadPath`, `OSError`)
    concerns that file alone and leaves no temp file behind. The caller holds the
    disk lock.
    """
    out: list[Placed | Exception] = []
    with DirFds(root, create=True) as dirs:
        for f in files:
            try:
                if (hashing.block_hash(f.data) if f.data else b"") != f.block_hash:
                    raise BadContent(f"{f.rel}: the bytes do not match their hash")
                out.append(_place(root, dirs, f))
            except (BadContent, OSError, paths.BadPath, apply.DiskChanged) as e:
                out.append(e)
    return out


def _place(root: Path, dirs: DirFds, f: SmallFile) -> Placed:
    parent, _, name = f.rel.rpartition("/")
    dfd = dirs.open(parent)
    try:
        st: os.stat_result | None = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        st = None
    if not apply.stat_matches(f.local, st):
        raise apply.DiskChanged  # changed since it was indexed: rescan, never overwrite
    fd = _open_temp(dfd, f.temp_name)
    try:
        try:
            view = memoryview(f.data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, f.mode & 0o777)
            os.utime(fd, ns=(f.mtime_ns, f.mtime_ns))
            if st is not None:
                _move_aside(root, dfd, name, f.rel, st)
            os.rename(f.temp_name, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(f.temp_name, dir_fd=dfd)  # nothing worth resuming in one block
            raise
        done = os.fstat(fd)  # after the rename, which moved the ctime
    finally:
        os.close(fd)
    return Placed(done.st_ino, done.st_ctime_ns)


def _move_aside(root: Path, dfd: int, name: str, rel: str, st: os.stat_result) -> None:
    """The old content goes to the versions folder; an (empty) directory is removed."""
    if stat.S_ISDIR(st.st_mode):
        os.rmdir(name, dir_fd=dfd)  # fails, keeping everything, unless it is empty
    else:
        apply.archive(root, rel)


def _open_temp(dfd: int, name: str) -> int:
    """A fresh temp file; a leftover under that name (or a planted link) is removed first."""
    try:
        return os.open(name, _TEMP_FLAGS, 0o600, dir_fd=dfd)
    except FileExistsError:
        os.unlink(name, dir_fd=dfd)
        return os.open(name, _TEMP_FLAGS, 0o600, dir_fd=dfd)
