"""BLAKE3 content hashes: one per fixed-size block, and a file hash built from them.

A file's hash is the hash of its concatenated block hashes (not of its bytes), so a
receiver that verified every block it fetched also knows the file hash without
reading the file again. Blocks are `model.BLOCK_SIZE` bytes (the last may be
shorter; an empty file has no blocks).

An all-zero block has a well-known hash (`zero_hash`): the puller recognises it
without asking anyone and leaves a hole, and the hasher gives it to the holes of a
sparse file without reading them (app/core/holes.py). The hashes are the same as
if every zero had been read: nothing in an index tells a hole from written zeros.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import stat
import threading
from pathlib import Path

import blake3

from app.core import holes, platform
from app.core.model import BLOCK_SIZE, HASH_LEN

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


@functools.lru_cache(maxsize=64)
def zero_hash(size: int = BLOCK_SIZE) -> bytes:
    """The hash of a block of `size` zero bytes (a file's short last block, or a whole one)."""
    return block_hash(bytes(size))


def is_zero_block(h: bytes, size: int) -> bool:
    """Whether h is the hash of `size` zero bytes: a block that needs no data to make."""
    return h == zero_hash(size)


def zero_block_flags(blocks: bytes, size: int) -> list[bool]:
    """For each block of a file of `size` bytes with these block hashes, whether it is
    all zeros. Found by searching the hashes for the zero block's, not by comparing
    them one by one: a 100 GiB file has 819,200 blocks (4 s of Python one by one).
    """
    n = len(blocks) // HASH_LEN
    whole = zero_hash()
    found = blocks.count(whole)
    if found == n:  # as many as blocks, none across two: all zero (holes only)
        flags = [True] * n
        found = 0
    else:
        flags = [False] * n
    at = blocks.find(whole) if found else -1
    while at >= 0:
        if at % HASH_LEN:  # across two hashes (a peer can send any bytes): no block's
            at = blocks.find(whole, at + 1)
            continue
        flags[at // HASH_LEN] = True
        at = blocks.find(whole, at + HASH_LEN)
    last = size - (n - 1) * BLOCK_SIZE
    if n and last != BLOCK_SIZE:  # a short last block is zero by the hash of its size
        flags[-1] = blocks[-HASH_LEN:] == zero_hash(last)
    return flags


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
    and a swap in between must not make us publish other content. The whole blocks
    of a sparse file's holes are not read: they hash as zero blocks.
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
        sparse = holes.may_have_holes(st)
        while True:
            if sparse:
                skipped, to_the_end = _skip_hole(f, size, blocks)
                size += skipped
                if to_the_end:
                    break
            n = _fill(f, view)
            if n:
                _hash_blocks(view[:n], blocks)
                size += n
            if n < READ_SIZE:
                break
    out = bytes(blocks)
    return size, file_hash_from_blocks(out), out


def _skip_hole(f: io.FileIO, pos: int, out: bytearray) -> tuple[int, bool]:
    """Zero-block hashes for the whole blocks of a hole at pos (block-aligned).

    Returns the bytes skipped (f is positioned after them) and whether the hole ran
    to the end of the file (then the short last block is hashed too).
    """
    data = holes.next_data(f.fileno(), pos)
    if data == holes.END:
        skip = max(os.fstat(f.fileno()).st_size - pos, 0)
        _zero_blocks(skip, out)
        return skip, True
    skip = (data - pos) // BLOCK_SIZE * BLOCK_SIZE
    _zero_blocks(skip, out)
    f.seek(pos + skip)  # always: looking for the data moved the offset there
    return skip, False


def _zero_blocks(nbytes: int, out: bytearray) -> None:
    whole, rest = divmod(nbytes, BLOCK_SIZE)
    out += zero_hash() * whole
    if rest:
        out += zero_hash(rest)


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
    platform.advise_sequential(fd)
