"""BLAKE3 content hashes: one per fixed-size block, and a file hash built from them.

A file's hash is the hash of its concatenated block hashes (not of its bytes), so a
receiver that verified every block it fetched also knows the file hash without
reading the file again. Blocks are `model.BLOCK_SIZE` bytes (the last may be
shorter; an empty file has no blocks).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import threading
from pathlib import Path

import blake3

from app.core.model import BLOCK_SIZE

READ_SIZE = 4 * 1024 * 1024  # a multiple of BLOCK_SIZE
assert READ_SIZE % BLOCK_SIZE == 0

_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)  # never hash what a swapped-in symlink points to
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO swapped in must not block the open
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)

_local = threading.local()


def block_hash(data: bytes | memoryview) -> bytes:
    """Hash of one block (32 bytes), as stored in FileEntry.blocks and checked on fetch."""
    return blake3.blake3(data).digest()


def file_hash_from_blocks(blocks: bytes) -> bytes:
    """The content hash of a file given its concatenated block hashes (b"" when empty)."""
    return blake3.blake3(blocks).digest()


def link_hash(target: str) -> bytes:
    """The content hash of a symlink: its target's bytes (undecodable bytes kept)."""
    return blake3.blake3(target.encode("utf-8", "surrogateescape")).digest()


def hash_file(path: Path | str) -> tuple[int, bytes, bytes]:
    """Hash a regular file: (bytes read, file hash, concatenated block hashes).

    Streams through one reused per-thread buffer, so memory stays flat for any file
    size and small files cost no allocation. Refuses to follow a symlink or to open
    anything but a regular file (OSError), because the scanner stat'ed a regular file
    and a swap in between must not make us publish other content.
    """
    buf = _buffer()
    view = memoryview(buf)
    blocks = bytearray()
    size = 0
    with open(os.open(path, _OPEN_FLAGS), "rb", buffering=0) as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
        if st.st_size > READ_SIZE:
            _advise_sequential(f.fileno())
        while True:
            n = _fill(f, view)
            if n:
                _hash_blocks(view[:n], blocks)
                size += n
            if n < READ_SIZE:
                break
    out = bytes(blocks)
    return size, file_hash_from_blocks(out), out


def _buffer() -> bytearray:
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = bytearray(READ_SIZE)
    return buf


def _fill(f: io.FileIO, view: memoryview) -> int:
    """Read until the buffer is full or EOF, so blocks stay aligned on short reads."""
    got = 0
    total = len(view)
    while got < total:
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _hash_blocks(data: memoryview, out: bytearray) -> None:
    for off in range(0, len(data), BLOCK_SIZE):
        out += blake3.blake3(data[off : off + BLOCK_SIZE]).digest()


def _advise_sequential(fd: int) -> None:
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None:
        with contextlib.suppress(OSError):
            advise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
