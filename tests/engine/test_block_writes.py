"""Received blocks reach the temp file only when they match their hash, direct or cached."""

from __future__ import annotations

import os

from app.core import hashing
from app.core.model import BLOCK_SIZE
from app.engine.puller import DIRECT_RUN, _open_direct, _verify_write_all


def blocks(n: int, tail: int) -> list[bytes]:
    return [os.urandom(BLOCK_SIZE) for _ in range(n)] + [os.urandom(tail)]


def write(path, data: list[bytes], tamper: set[int], use_direct: bool) -> list[bool]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    direct = _open_direct(fd) if use_direct else None
    try:
        jobs = [(b"x" * len(d) if i in tamper else d, i * BLOCK_SIZE, hashing.block_hash(d))
                for i, d in enumerate(data)]
        jobs.reverse()  # arrival order does not matter
        return list(reversed(_verify_write_all(fd, jobs, direct)))
    finally:
        if direct is not None:
            os.close(direct)
        os.close(fd)


def test_every_good_block_lands_at_its_offset(tmp_path):
    for use_direct in (False, True):
        path = tmp_path / f"t{use_direct}"
        data = blocks(DIRECT_RUN + 3, 1000)  # longer than one direct run, and a short tail
        oks = write(path, data, set(), use_direct)
        assert all(oks)
        assert path.read_bytes() == b"".join(data)


def test_a_block_that_fails_its_hash_is_not_written(tmp_path):
    for use_direct in (False, True):
        path = tmp_path / f"t{use_direct}"
        data = blocks(6, 10)
        oks = write(path, data, {2, 6}, use_direct)
        assert oks == [True, True, False, True, True, True, False]
        on_disk = path.read_bytes()
        assert on_disk[2 * BLOCK_SIZE:3 * BLOCK_SIZE] == b"\0" * BLOCK_SIZE  # a hole
        assert on_disk[:2 * BLOCK_SIZE] == data[0] + data[1]
        assert on_disk[3 * BLOCK_SIZE:6 * BLOCK_SIZE] == data[3] + data[4] + data[5]
        assert len(on_disk) == 6 * BLOCK_SIZE  # the bad tail never written


def test_a_resumed_temp_file_holds_its_written_blocks_and_its_holes(tmp_path):
    """Written blocks are checked; a hole is there only where the file has a zero block."""
    from app.core.hashing import zero_hash
    from app.engine.puller import _blocks_present

    data = [os.urandom(BLOCK_SIZE) for _ in range(6)] + [os.urandom(5)]
    hashes = [hashing.block_hash(d) for d in data]
    hashes[3] = hashes[4] = zero_hash()  # blocks 3 and 4 of the file are all zeros
    size = 6 * BLOCK_SIZE + 5
    path = tmp_path / "temp"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, data[0], 0)
        os.pwrite(fd, b"\1" * BLOCK_SIZE, BLOCK_SIZE)  # not block 1's content
        os.pwrite(fd, data[5], 5 * BLOCK_SIZE)  # 2, 3 and 4: a hole; 6: past the end
        assert _blocks_present(fd, hashes, size) == [True, False, False, True, True, True,
                                                     False]
    finally:
        os.close(fd)
