"""Where a sparse file holds data: holes are read as zeros and cost nothing to skip.

A file's holes (ranges the file system never allocated) read as zero bytes. A 2 GiB
disk image holding 2 MiB of data should cost 2 MiB to hash, send and store, not 2
GiB: the hasher skips holes (`hole_at`), and the puller neither fetches nor writes an
all-zero block (`hashing.is_zero_block`), so it stays a hole in the copy too.

SEEK_DATA/SEEK_HOLE say where the holes are (app.core.platform). A file system without
them (or a platform, or P2PSYNC_PORTABLE=1) simply shows no holes: everything is read.
"""

from __future__ import annotations

import errno
import os

from app.core import platform

_SEEK_DATA = platform.SEEK_DATA
_SEEK_HOLE = platform.SEEK_HOLE
END = 1 << 63  # "no more data": beyond any file's end


def may_have_holes(st: os.stat_result) -> bool:
    """Whether fewer bytes are allocated than the file is long (so looking is worth it)."""
    allocated = platform.allocated(st)
    return allocated is not None and allocated < st.st_size


def next_data(fd: int, pos: int) -> int:
    """The offset of the first data at or after pos; END when only a hole follows.

    pos itself where the file system cannot tell (no holes known: read it all).
    """
    if _SEEK_DATA is None:
        return pos
    try:
        return os.lseek(fd, pos, _SEEK_DATA)
    except OSError as e:
        if e.errno == errno.ENXIO:  # pos is in a hole that runs to the end, or past the end
            return END
        return pos


class DataExtents:
    """Asks, for increasing offsets, whether a range of a file holds any data."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.start = self.end = -1  # the data extent [start, end) found last

    def has_data(self, offset: int, size: int) -> bool:
        """Whether [offset, offset + size) overlaps data (offsets must not go back)."""
        if offset >= self.end:
            self.start = next_data(self.fd, offset)
            self.end = END if self.start == END else self._hole_after(self.start)
        return self.start < offset + size

    def _hole_after(self, pos: int) -> int:
        if _SEEK_HOLE is None:
            return END
        try:
            return os.lseek(self.fd, pos, _SEEK_HOLE)
        except OSError:
            return END
