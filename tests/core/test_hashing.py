import os

import blake3
import pytest

from app.core import hashing
from app.core.hashing import (
    READ_SIZE,
    block_hash,
    file_hash_from_blocks,
    hash_file,
    link_hash,
)
from app.core.model import BLOCK_SIZE, HASH_LEN


def reference(data: bytes) -> tuple[int, bytes, bytes]:
    """The definition, computed in one shot over the whole content."""
    blocks = b"".join(
        blake3.blake3(data[i : i + BLOCK_SIZE]).digest() for i in range(0, len(data), BLOCK_SIZE)
    )
    return len(data), blake3.blake3(blocks).digest(), blocks


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        BLOCK_SIZE - 1,
        BLOCK_SIZE,
        BLOCK_SIZE + 1,
        3 * BLOCK_SIZE + 5,
        READ_SIZE,
        READ_SIZE + 1,
        2 * READ_SIZE + BLOCK_SIZE + 7,
    ],
)
def test_hash_file_matches_one_shot(tmp_path, size):
    data = os.urandom(size)
    p = tmp_path / "f"
    p.write_bytes(data)
    got = hash_file(p)
    assert got == reference(data)
    n, _, blocks = got
    assert n == size
    assert len(blocks) == HASH_LEN * -(-size // BLOCK_SIZE)


def test_empty_file(tmp_path):
    p = tmp_path / "empty"
    p.write_bytes(b"")
    assert hash_file(str(p)) == (0, blake3.blake3(b"").digest(), b"")
    assert file_hash_from_blocks(b"") == blake3.blake3(b"").digest()


def test_block_hash_accepts_memoryview():
    data = os.urandom(1000)
    assert block_hash(memoryview(data)[10:20]) == block_hash(data[10:20])
    assert len(block_hash(data)) == HASH_LEN


def test_file_hash_is_hash_of_block_hashes(tmp_path):
    data = os.urandom(2 * BLOCK_SIZE + 3)
    p = tmp_path / "f"
    p.write_bytes(data)
    _, h, blocks = hash_file(p)
    parts = [block_hash(data[i : i + BLOCK_SIZE]) for i in range(0, len(data), BLOCK_SIZE)]
    assert blocks == b"".join(parts)
    assert h == file_hash_from_blocks(blocks)


def test_same_content_same_hash_different_content_differs(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    a.write_bytes(b"x" * 1000)
    b.write_bytes(b"x" * 1000)
    c.write_bytes(b"x" * 999 + b"y")
    assert hash_file(a) == hash_file(b)
    assert hash_file(a)[1] != hash_file(c)[1]


def test_short_reads_keep_blocks_aligned():
    class Trickle:
        """A reader that returns at most 1000 bytes per call, like a pipe or a network FS."""

        def __init__(self, data):
            self.data = data
            self.pos = 0

        def readinto(self, view):
            n = min(1000, len(view), len(self.data) - self.pos)
            view[:n] = self.data[self.pos : self.pos + n]
            self.pos += n
            return n

    data = os.urandom(BLOCK_SIZE + 12345)
    buf = bytearray(READ_SIZE)
    n = hashing._fill(Trickle(data), memoryview(buf))
    assert n == len(data) and bytes(buf[:n]) == data


def test_refuses_symlink_and_non_regular(tmp_path):
    (tmp_path / "real").write_bytes(b"secret")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OSError):
        hash_file(tmp_path / "link")
    with pytest.raises(OSError):
        hash_file(tmp_path)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError, match="not a regular file"):
        hash_file(tmp_path / "fifo")  # must not block


def test_missing_file_raises_filenotfound(tmp_path):
    with pytest.raises(FileNotFoundError):
        hash_file(tmp_path / "nope")


def test_link_hash():
    assert link_hash("a/b") == blake3.blake3(b"a/b").digest()
    raw = b"bad\xffname"
    assert link_hash(os.fsdecode(raw)) == blake3.blake3(raw).digest()
    assert link_hash("x") != link_hash("y")


# --- sparse files: holes hash as zero blocks, without being read ----------------------
def sparse_file(path, size: int, pieces: dict[int, bytes]) -> bytes:
    """A file of `size` bytes that holds `pieces` (offset -> bytes) and holes elsewhere."""
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in pieces.items():
            f.seek(offset)
            f.write(data)
    return path.read_bytes()


@pytest.mark.parametrize(
    ("size", "pieces"),
    [
        (64 * BLOCK_SIZE + 100, {}),  # nothing but a hole, a short last block
        (64 * BLOCK_SIZE + 100, {0: b"x"}),
        (3 * READ_SIZE, {READ_SIZE + 5 * BLOCK_SIZE + 3: os.urandom(3 * BLOCK_SIZE)}),
        (2 * READ_SIZE + 7, {2 * READ_SIZE: b"tail!!!"}),  # data only in the short tail
        (10 * READ_SIZE, {7 * BLOCK_SIZE - 1: b"ab", 9 * READ_SIZE: os.urandom(1000)}),
        # a hole that ends inside the block it starts in (a disk image's 4 KiB pages):
        # looking for the data moved the file's offset there, and the block was hashed
        # from that point on, its leading zeros left out
        (4 * BLOCK_SIZE, {8192: b"x"}),
        (2 * READ_SIZE, {0: b"a", READ_SIZE + 4096: b"b"}),
        (READ_SIZE + 3, {READ_SIZE: b"z"}),
    ],
)
def test_a_sparse_file_hashes_as_if_every_zero_were_read(tmp_path, size, pieces):
    p = tmp_path / "sparse"
    data = sparse_file(p, size, pieces)
    assert hash_file(p) == reference(data)


def test_the_holes_of_a_sparse_file_are_not_read(tmp_path, monkeypatch):
    p = tmp_path / "sparse"
    data = sparse_file(p, 256 * READ_SIZE, {100 * READ_SIZE: os.urandom(2 * BLOCK_SIZE)})
    if os.stat(p).st_blocks * 512 >= 2 * READ_SIZE:
        pytest.skip("this file system allocated the holes")
    read = []
    real_fill = hashing._fill
    monkeypatch.setattr(hashing, "_fill", lambda f, view: read.append(real_fill(f, view))
                        or read[-1])
    assert hash_file(p) == reference(data)
    assert sum(read) <= 2 * READ_SIZE, f"{sum(read)} bytes read of a 1 GiB file of 256 KiB"


def test_zero_blocks_are_known_by_their_hash():
    assert hashing.zero_hash() == block_hash(bytes(BLOCK_SIZE))
    assert hashing.is_zero_block(block_hash(bytes(100)), 100)
    assert not hashing.is_zero_block(block_hash(bytes(100)), 101)
    assert not hashing.is_zero_block(block_hash(b"\0" * 99 + b"\1"), 100)


@pytest.mark.parametrize("size", [3 * BLOCK_SIZE, 3 * BLOCK_SIZE + 5, 1, BLOCK_SIZE])
def test_zero_block_flags_match_a_look_at_each_block(size):
    """The search for zero blocks says what comparing each hash would, the short last
    block by the hash of its own size."""
    n = -(-size // BLOCK_SIZE)
    last = size - (n - 1) * BLOCK_SIZE
    for pattern in range(1 << n):
        hashes = []
        for i in range(n):
            length = last if i == n - 1 else BLOCK_SIZE
            zero = bool(pattern >> i & 1)
            hashes.append(block_hash(bytes(length) if zero else b"\1" * length))
        want = [hashing.is_zero_block(h, last if i == n - 1 else BLOCK_SIZE)
                for i, h in enumerate(hashes)]
        assert hashing.zero_block_flags(b"".join(hashes), size) == want
        assert want == [bool(pattern >> i & 1) for i in range(n)]


def test_a_zero_hash_across_two_hashes_is_no_zero_block():
    """A peer can send any bytes as a block list: the zero block's hash split over two
    entries (or a short last block given the whole block's) makes no block zero."""
    zero = hashing.zero_hash()
    crafted = os.urandom(16) + zero + os.urandom(16)  # two hashes, the zero one across
    assert hashing.zero_block_flags(crafted, 2 * BLOCK_SIZE) == [False, False]
    assert hashing.zero_block_flags(crafted + zero, 3 * BLOCK_SIZE) == [False, False, True]
    assert hashing.zero_block_flags(zero + zero, BLOCK_SIZE + 10) == [True, False]

