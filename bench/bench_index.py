"""The index work of a first sync, without the network or the files: what the receiver's
index costs at a million files (app/core/contentindex.py was built on these figures).

The real `Index` of a receiving device: `put_remote` of N announced entries in batches
of 1,000 (as they come over the wire), then `put_local` of each file once it is written,
in batches of 500 (the puller's COMMIT_BATCH), in path order. Prints the time and the
bytes this process wrote and read (/proc/self/io: the WAL, the checkpoints) per phase,
and the database's size per file. Never asserts anything.

`--devices K`: then K more devices each say, page by page, that they hold every file
exactly as we announced it (what a device whose first sync came from us sends back),
and the first and the last of them are timed: the cost of a device that comes when
many came before (each is a row per file in `remote_same`).

Usage:  PYTHONPATH=. python bench/bench_index.py [--files N] [--devices K] [--dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import sqlite3
import tempfile
import time

from app.core.index import Index
from app.core.model import FileEntry, Kind

PEER, US = "A" * 56, "B" * 56


def io() -> tuple[int, int]:
    """(bytes written to the disk, bytes read) by this process so far (Linux only)."""
    with open("/proc/self/io") as f:
        fields = dict(line.split(": ") for line in f.read().splitlines())
    return int(fields["write_bytes"]), int(fields["rchar"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--devices", type=int, default=0)
    ap.add_argument("--dir", default=None, help="where the database goes (default: /tmp)")
    args = ap.parse_args()
    n = args.files
    where = tempfile.mkdtemp(prefix="bench-index-", dir=args.dir)
    try:
        rng = random.Random(1)
        paths = [f"tiny/d{i // 100:05d}/f{i:07d}.txt" for i in range(n)]
        blocks = [rng.randbytes(32) for _ in range(n)]

        def entry(i: int, seq: int) -> FileEntry:
            return FileEntry(paths[i], Kind.FILE, 100, 1_700_000_000 * 10**9, 0o644,
                             blocks[i], blocks[i], "", {PEER: i + 1}, PEER, False, seq)

        db = os.path.join(where, "index.db")
        with Index(db, US) as idx:
            phase("put_remote, 1,000 a batch", lambda: [
                idx.put_remote(PEER, b"x" * 16, [entry(i, i + 1) for i in
                                                 range(s, min(n, s + 1000))], min(n, s + 1000))
                for s in range(0, n, 1000)])
            phase("put_local, 500 a batch", lambda: [
                idx.put_local([entry(i, 0).recorded(inode=i + 1, ctime_ns=1)
                               for i in range(s, min(n, s + 500))])
                for s in range(0, n, 500)])
            if args.devices:  # (a million paths' seqs: read only when asked for)
                with contextlib.closing(sqlite3.connect(db)) as look:
                    seqs = dict(look.execute("SELECT path, seq FROM files"))
                holds = [(p, i + 1, seqs[p]) for i, p in enumerate(paths)]

            def says_it_holds_all(device: str) -> None:
                for s in range(0, n, 3000):
                    idx.put_remote(device, b"y" * 16, [], min(n, s + 3000), holds[s:s + 3000])

            for k in range(args.devices):
                device = f"{k:056d}"
                if k in (0, args.devices - 1):
                    phase(f"device {k + 1} of {args.devices} holds every file",
                          lambda d=device: says_it_holds_all(d))
                else:
                    says_it_holds_all(device)
        size = sum(os.path.getsize(os.path.join(where, f)) for f in os.listdir(where))
        print(f"database: {size / n:.0f} B per file ({size >> 20} MiB, WAL included)")
    finally:
        shutil.rmtree(where, ignore_errors=True)


def phase(name: str, work) -> None:
    (w0, r0), t0 = io(), time.perf_counter()
    work()
    (w1, r1), t1 = io(), time.perf_counter()
    print(f"{name}: {t1 - t0:.1f} s, wrote {(w1 - w0) >> 20} MiB, read {(r1 - r0) >> 20} MiB",
          flush=True)


if __name__ == "__main__":
    main()
