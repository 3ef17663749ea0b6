"""Where a sparse file holds data: holes are read as zeros and cost nothing to skip.

A file's holes (ranges the file system never allocated) read as zero bytes. A 2 GiB
disk image holding 2 MiB of data should cost 2 MiB to hash, send and store, not 2
GiB: the hasher skips holes (`hole_at`), and the puller neither fetches nor writes an
all-zero block (`hashing.is_zero_block`), so it stays a hole in the copy too.

SEEK_DATA/SEEK_HOLE say where the holes are. A file system without them (or a
platform) simply shows no holes: everything is read, as before.
"""

from __future__ import annotations

import errno
import os

_SEEK_DATA = getattr(os, "SEEK_DATA", None)
_SEEK_HOLE = getattr(os, "SEEK_HOLE", None)
END = 1 << 63  # "no more data": beyond any file's end


def may_have_holes(st: os.stat_result) -> bool:
    """Whether fewer bytes are allocated than the file is long (so looking is worth it)."""
    return _SEEK_DATA is not None and getattr(st, "st_blocks", None) is not None \
        and st.st_blocks * 512 < st.st_size


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
