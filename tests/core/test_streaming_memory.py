"""Status and planning stream the index: what they hold does not grow with the folder.

Measured with tracemalloc (allocations, not time): listing 4x the files with a small
chunk size must not take much more memory at its peak. A list of every row (what
`status` did before schema 3) grows with the folder and fails this.
"""

from __future__ import annotations

import tracemalloc
from dataclasses import replace

from app.core.hashing import block_hash, file_hash_from_blocks
from app.core.index import Index
from app.core.model import FileEntry
from app.core.states import iter_file_states

ME = "AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"
PEER = "PEER000-0000000-0000000-0000000-0000000"


def _fill(ix: Index, n: int) -> None:
    """n files of ours, the peer holding each; every tenth changed on the peer."""
    for start in range(0, n, 1000):
        ours, theirs = [], []
        for i in range(start, min(n, start + 1000)):
            b = block_hash(b"%d" % i)
            e = FileEntry(f"t/d{i // 100:05}/f{i:07}.txt", size=120, mtime_ns=10**18 + i,
                          mode=0o644, hash=file_hash_from_blocks(b), blocks=b,
                          version={ME: 1}, modified_by=ME, inode=10**7 + i)
            ours.append(e)
            theirs.append(replace(e, version={ME: 1, PEER: 1}, modified_by=PEER, seq=i + 1)
                          if i % 10 == 0 else replace(e, seq=i + 1))
        ix.put_local(ours)
        ix.put_remote(PEER, b"p", theirs, start + len(theirs))


def _peak_of_listing(tmp_path, n: int) -> tuple[int, int]:
    with Index(tmp_path / f"index-{n}.db", ME) as ix:
        _fill(ix, n)
        tracemalloc.start()
        try:
            rows = states = 0
            for row in iter_file_states(ix):
                rows += 1
                states += row["state"] == "remote_change"
            planned = sum(len(chunk) for chunk in ix.iter_differing(chunk=500))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert rows == n and states == n // 10 and planned == n // 10
    return peak, rows


def test_listing_four_times_the_files_takes_about_the_same_memory(tmp_path):
    small, _ = _peak_of_listing(tmp_path, 5_000)
    large, _ = _peak_of_listing(tmp_path, 20_000)
    print(f"peak while listing: {small / 1024:.0f} KiB for 5,000 files, "
          f"{large / 1024:.0f} KiB for 20,000")
    assert large < small * 1.5 + 256 * 1024


def test_a_scan_of_large_files_holds_a_few_of_their_block_lists_at_a_time(tmp_path):
    """A folder of big files (videos, disk images): 40 files of 2 GiB, each a block
    list of 512 KiB (holes only here, so hashing them reads nothing). The scan writes
    them to the index once FLUSH_BYTES of lists wait, and its result keeps none of the
    lists: it held all of them twice (600 MB of peak for 500 such files)."""
    import os

    import pytest

    from app.core import scanner
    from app.core.ignore import Ignore
    from app.core.model import BLOCK_SIZE

    root = tmp_path / "folder"
    root.mkdir()
    for i in range(40):
        with open(root / f"disk{i:02}.img", "wb") as f:
            f.truncate(2 << 30)
    if os.stat(root / "disk00.img").st_blocks:
        pytest.skip("this file system allocated the holes")
    lists = 40 * (2 << 30) // BLOCK_SIZE * 32  # 20 MiB of block hashes
    with Index(tmp_path / "index.db", ME) as ix:
        tracemalloc.start()
        try:
            result = scanner.scan(root, ix, Ignore(root))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert result.changed_count == 40 and len(result.changed) == 40
        assert len(ix.get("disk07.img").blocks) == lists // 40
    assert peak < lists, f"{peak / 2**20:.1f} MiB"  # FLUSH_BYTES and a few more
