"""What making writes durable costs: the small-file batch writer with and without its flush.

`app.core.batchwrite.write_small_files` writes a batch of fetched small files to temp
files, flushes them to the disk once (`diskio.flush_fs`: one syncfs), then links each
into place. This script writes N files of 1-32 KiB (the sync benchmark's mix) in
batches of 128, into a fresh folder on the chosen disk, three ways in alternation:
as the engine does; with the flush skipped (what the engine did before it flushed);
and with an fdatasync per file (what the flush would cost without syncfs). It prints
seconds per run and per file; it asserts nothing (bench/README.md).

Usage:  PYTHONPATH=. python bench/bench_durability.py [--files 10000] [--runs 3] [--dir D]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from app.core import batchwrite, diskio, hashing

BATCH = 128


def _files(n: int) -> list[tuple[str, bytes]]:
    rnd = random.Random(1)
    return [(f"d{i % 100:02}/f{i:05}.bin", rnd.randbytes(rnd.randrange(1024, 32 * 1024)))
            for i in range(n)]


def _write_all(root: Path, files: list[tuple[str, bytes]]) -> float:
    small = [batchwrite.SmallFile(rel, data, hashing.block_hash(data), 0o644, 1_700_000_000,
                                  None, {"PEER": 1})
             for rel, data in files]
    started = time.perf_counter()
    for i in range(0, len(small), BATCH):
        out = batchwrite.write_small_files(root, small[i:i + BATCH])
        bad = [o for o in out if not isinstance(o, batchwrite.Placed)]
        if bad:
            raise SystemExit(f"write failed: {bad[0]}")
    return time.perf_counter() - started


def _per_file_fdatasync(fds: list[int]) -> None:
    for fd in fds:
        os.fdatasync(fd)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--dir", type=Path, help="parent of the temp folders (default: $TMPDIR)")
    args = p.parse_args()
    files = _files(args.files)
    real_flush = diskio.flush_fs
    ways = {"flushed (syncfs per batch)": real_flush,
            "not flushed": lambda fds: None,
            "fdatasync per file": _per_file_fdatasync}
    took: dict[str, list[float]] = {w: [] for w in ways}
    for _ in range(args.runs):
        for way, flush in ways.items():
            root = Path(tempfile.mkdtemp(prefix="p2psync-dur-", dir=args.dir))
            try:
                batchwrite.diskio.flush_fs = flush  # type: ignore[assignment]
                os.sync()  # start every run with no dirty pages of the one before
                took[way].append(_write_all(root, files))
            finally:
                batchwrite.diskio.flush_fs = real_flush  # type: ignore[assignment]
                shutil.rmtree(root, ignore_errors=True)
    base = statistics.median(took["not flushed"])
    print(f"{'files':<34}{args.files:>10}")
    for way, secs in took.items():
        med = statistics.median(secs)
        print(f"{way:<34}{med:>10.3f} s  ({min(secs):.3f}-{max(secs):.3f}; "
              f"{med / args.files * 1e6:.0f} us/file; x{med / base:.2f})")


if __name__ == "__main__":
    main()
