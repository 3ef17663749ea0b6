"""Writes whose every byte is accounted for, made durable before a name points at them.

A write that comes up short (a nearly full disk, a quota) returns a smaller count
instead of failing; ignoring that count once put a truncated file in place, which the
next scan took for a user's edit and spread to every device. Everything the engine
writes into the folder therefore goes through `write_all`, and a finished temp file
reaches the disk (`flush_data`, or `flush_fs` once for a batch of small files) before
it is renamed or linked into place: after a crash or power cut a final path holds a
complete version, never a zero-length or half-written one.

Free space is checked before a file is started (`check_space`): the node stops
writing at the contract's reserve (1% of the file system or 100 MiB, whichever is
less) instead of filling the disk.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import TypeGuard

from app.core import platform
from app.core.units import human_size

RESERVE_MAX = 100 * 1024 * 1024


class NoSpace(OSError):
    """Not enough free space to write a file here; str() is the user-facing reason."""

    def __init__(self, needed: int, free: int, why: str | None = None) -> None:
        super().__init__(errno.ENOSPC, why or f"no space left here: {human_size(needed)} "
                         f"needed, {human_size(max(free, 0))} free")
        self.needed = needed

    def __str__(self) -> str:
        return self.strerror or "no space left here"


def write_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """pwrite all of data at offset, or raise: a short write is never taken as done."""
    view = memoryview(data)
    while view:
        n = platform.pwrite(fd, view, offset)
        if n <= 0:  # the kernel took nothing and said nothing: treat it as a full disk
            raise OSError(errno.ENOSPC, "the disk took no more data")
        view = view[n:]
        offset += n


def write_direct(direct: int, data: bytes | memoryview, offset: int) -> bool:
    """One write through an O_DIRECT descriptor; False when it must go through the page
    cache instead (it came up short, or the device wants another alignment)."""
    try:
        return platform.pwrite(direct, data, offset) == len(data)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        return False


def flush_data(fd: int) -> None:
    """The file's data (and size) on the disk, not just in the page cache."""
    platform.flush_data(fd)


def flush_fs(fds: list[int]) -> None:
    """Everything written to these files on the disk: one syncfs where Linux has it.

    One syncfs for a batch of 128 small files costs about what one fsync does; an
    fsync per file would cost a journal commit each (the fallback, app.core.platform).
    """
    platform.flush_files(fds)


def reserve_for(total: int) -> int:
    """The free space the node never writes into: 1% of the disk or 100 MiB, the less."""
    return min(total // 100, RESERVE_MAX)


def room(path: Path | str) -> int:
    """Bytes the node may still write on path's file system (free space less the reserve)."""
    usage = shutil.disk_usage(path)
    return usage.free - reserve_for(usage.total)


def check_space(path: Path | str, needed: int, promised: int = 0) -> None:
    """Raise NoSpace unless `needed` more bytes fit on path's file system above the reserve.

    `promised`: bytes already promised to writes under way, not yet on the disk.
    """
    if needed <= 0:
        return
    left = room(path) - promised
    if needed > left:
        raise NoSpace(needed, left)


def refused(path: Path | str, needed: int, free: int, e: OSError) -> NoSpace:
    """What the kernel's "no space" (ENOSPC, EDQUOT) meant, said as users need it.

    Where the bytes would have fitted, the disk ran out of something else: of inodes
    (a file system holds at most so many files, whatever their size), or of a quota.
    "199 B needed, 13.1 GB free" was all a user learned of a million tiny files that
    had taken every inode of a 20 GB disk."""
    if needed > free:
        return NoSpace(needed, free)
    files = _files_left(path)
    if files is not None and files[0] == 0:
        return NoSpace(needed, free, f"no space left for more files here: all {files[1]:,} "
                       f"of the disk's inodes are in use ({human_size(free)} free)")
    if e.errno == errno.EDQUOT:
        return NoSpace(needed, free, f"no space left in the disk quota here "
                       f"({human_size(free)} free on the disk)")
    return NoSpace(needed, free)


def _files_left(path: Path | str) -> tuple[int, int] | None:
    """(inodes free to us, inodes in all) of path's file system; None where that
    cannot be told (no statvfs, or a file system that counts none)."""
    statvfs = getattr(os, "statvfs", None)
    if statvfs is None:
        return None
    try:
        st = statvfs(path)
    except OSError:
        return None
    return (st.f_favail, st.f_files) if st.f_files else None


def is_no_space(e: BaseException) -> TypeGuard[OSError]:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
