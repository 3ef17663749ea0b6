"""Sparse files stay sparse: holes and zero blocks are neither sent nor allocated.

Real `run` and `sync` processes: each side has files that are mostly holes (and one
whose zeros were written out, not a hole); after one sync each side holds the other's
files byte for byte, taking about their data's size on the disk (`st_blocks`), and
about their data's size crossed the network.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import blake3
import pytest

from app.core import platform
from app.core.model import BLOCK_SIZE
from tests.procs import start_run, sync

MIB = 1024 * 1024
SLACK = MIB  # what a file system may allocate beyond the data (metadata, rounding)


def make(path: Path, size: int, pieces: dict[int, bytes], dense: bool = False) -> int:
    """A file of size bytes holding pieces (offset -> bytes); holes elsewhere, or zeros
    written out (`dense`). Returns the bytes of its blocks that are not all zeros."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        if dense:
            f.write(bytes(size))
        f.truncate(size)
        for offset, data in pieces.items():
            f.seek(offset)
            f.write(data)
    touched = {i for offset, data in pieces.items()
               for i in range(offset // BLOCK_SIZE, (offset + len(data) - 1) // BLOCK_SIZE + 1)}
    return sum(min(BLOCK_SIZE, size - i * BLOCK_SIZE) for i in touched)


def digest(path: Path) -> bytes:
    h = blake3.blake3()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MIB):
            h.update(chunk)
    return h.digest()


def on_disk(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def test_sparse_files_keep_their_holes_both_ways(tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    data_a = make(a / "disk.img", 512 * MIB + 3,  # data at the start, the middle, the end
                  {0: os.urandom(MIB), 300 * MIB + 7: os.urandom(300_000),
                   512 * MIB: b"end"})
    data_a += make(a / "trailing-hole.img", 64 * MIB, {5: os.urandom(3 * BLOCK_SIZE)})
    data_a += make(a / "nothing.img", 40 * MIB + 1, {})
    data_a += make(a / "zeros-written.bin", 24 * MIB, {12 * MIB: os.urandom(BLOCK_SIZE)},
                   dense=True)  # zeros on the disk at A: holes at B all the same
    data_b = make(b / "vm.img", 256 * MIB, {100 * MIB: os.urandom(2 * MIB)})
    node = start_run(a, tmp_path / "cfgA")
    try:
        r = sync(b, tmp_path / "cfgB", node.address, timeout=60)
        assert r.returncode == 0, f"{r.stderr}\n{node.log()}"
        node.wait_for_log(r"pulled 1 change\(s\)")  # B's file, at A
    finally:
        assert node.stop() == 0, node.log()

    for name in ("disk.img", "trailing-hole.img", "nothing.img", "zeros-written.bin"):
        assert os.stat(b / name).st_size == os.stat(a / name).st_size, name
        assert digest(b / name) == digest(a / name), name
    assert digest(a / "vm.img") == digest(b / "vm.img")
    got_b = sum(on_disk(b / n) for n in ("disk.img", "trailing-hole.img", "nothing.img",
                                          "zeros-written.bin"))
    print(f"\nB: {data_a // 1024} KiB of data, {got_b // 1024} KiB on the disk; "
          f"A: vm.img takes {on_disk(a / 'vm.img') // 1024} KiB for {data_b // 1024} KiB")
    assert got_b <= data_a + 4 * SLACK, f"{got_b} bytes allocated for {data_a} of data"
    assert on_disk(a / "vm.img") <= data_b + SLACK
    fetched = sum(int(n) for n in re.findall(
        r"pulled \d+ change\(s\) in [\d.]+ s \((\d+) bytes fetched", r.stderr))
    assert fetched == data_a, "only the blocks that hold data were fetched"
    received = int(re.search(r"(\d+) block bytes received", r.stderr).group(1))
    assert received == data_a, "no zero block crossed the network"


@pytest.mark.skipif(platform.SEEK_DATA is None,
                    reason="no holes known here: the 140 GiB would be read to be hashed")
def test_a_folder_of_many_large_files_syncs(tmp_path):
    """140 files of 1 GiB: 35 MiB of block hashes, more than one frame holds. As one
    index page it was never sent: the sync waited until it timed out, no word of why
    in either log. Pages end at PAGE_BYTES now (app.core.index)."""
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir()
    for i in range(140):
        make(a / f"f{i:03d}.img", 1024**3, {i * 4096: b"%03d" % i})
    node = start_run(a, tmp_path / "cfgA")
    try:
        r = sync(b, tmp_path / "cfgB", node.address, timeout=120)
        assert r.returncode == 0, f"{r.stderr}\n{node.log()}"
    finally:
        assert node.stop() == 0, node.log()
    for i in range(140):
        with open(b / f"f{i:03d}.img", "rb") as f:
            assert os.fstat(f.fileno()).st_size == 1024**3
            f.seek(i * 4096)
            assert f.read(3) == b"%03d" % i
    assert sum(on_disk(p) for p in b.iterdir()) <= 140 * BLOCK_SIZE + SLACK
