"""The floor of a receiver: a first sync of many small files with no planning stage.

Why: the receiving `sync` spends 70-90 us a tiny file on metadata (bench/README.md,
Caveats), and issue #11 asks for 1.5x rsync. This measures what a receiver could
take if a peer's new files went straight from its index pages to the disk: the
sending process streams TLS frames of (entry, content), batch by batch, and the
receiver does only what must be done per file, with the product's own code:
`FileEntry.from_wire`, `paths.validate`, `batchwrite.write_small_files` (temp file,
one flush a batch, checked and linked into place) and `Index.put_local` with the
sender's seq kept as "what it has" (`Index.put_remote(ours=...)`), on a writer thread
while the next batch is read. `--bookkept` adds what today's receiver does besides:
each entry stored as a pending row first (`put_remote`), then settled by
`put_local`; `--no-index` records nothing (what the write path alone costs). No
election, no scan, no planning, no block requests: a floor, not a sync. rsync copies
the same files right after each run (`--compare`).

Usage:  PYTHONPATH=. python bench/bench_floor.py [--tiny N | --small N] [--runs N]
            [--bookkept | --no-index] [--compare] [--workdir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import shutil
import signal
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

import blake3
import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_sync import (  # noqa: E402
    RsyncDaemon,
    populate_small,
    populate_tiny,
    tree_digest,
    walk_files,
)

from app.core import batchwrite, modes, paths  # noqa: E402
from app.core.index import Index  # noqa: E402
from app.core.model import FileEntry, Kind  # noqa: E402
from app.net import datalink, identity  # noqa: E402

BATCH = 1000  # entries a frame: an index page of an earlier release (node.EARLIER_PAGE_ROWS)
_LEN = struct.Struct(">I")


def entries_of(folder: Path) -> list[FileEntry]:
    """The sender's index, made before the clock starts (a `run` node has it)."""
    out = []
    for seq, path in enumerate(sorted(walk_files(folder)), 1):
        data = path.read_bytes()
        block = blake3.blake3(data).digest()
        out.append(FileEntry(path.relative_to(folder).as_posix(), Kind.FILE, len(data),
                             path.stat().st_mtime_ns, 0o644, blake3.blake3(block).digest(),
                             block, "", {"A": seq}, "A", False, seq))
    return out


def send(sock: socket.socket, folder: Path, entries: list[FileEntry]) -> None:
    """Batches of [entry, content], read from the disk as they go; an empty one ends."""
    for i in range(0, len(entries), BATCH):
        batch = [[e.to_wire(), (folder / e.path).read_bytes()] for e in entries[i:i + BATCH]]
        body = msgpack.packb(batch, use_bin_type=True)
        sock.sendall(_LEN.pack(len(body)) + body)
    sock.sendall(_LEN.pack(1) + msgpack.packb([]))


def recv_exact(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    datalink.recv_exact(sock, memoryview(buf))
    return buf


class Receiver:
    """Decodes on the calling thread, writes and records on a thread of its own."""

    def __init__(self, root: Path, index: Index | None, bookkept: bool) -> None:
        self.root, self.index, self.bookkept = root, index, bookkept
        self.made: set[str] = set()
        self.queue: queue.Queue = queue.Queue(2)
        self.failed: list[Exception] = []
        self.writer = threading.Thread(target=self._write_all)
        self.writer.start()

    def take(self, items: list) -> None:
        entries, files = [], []
        for wire, data in items:
            e = FileEntry.from_wire(wire)
            paths.validate(e.path)
            entries.append(e)
            files.append(batchwrite.SmallFile(
                paths.on_disk(self.root, e.path), data, e.blocks, modes.file_mode(e.mode, None),
                e.mtime_ns, None, e.version, e.modified_by))
        if self.bookkept and self.index is not None:
            self.index.put_remote("A", b"A" * 16, entries, entries[-1].seq)
        self.queue.put((entries, files))

    def finish(self) -> None:
        if self.writer.is_alive():
            self.queue.put(None)
            self.writer.join()

    def _write_all(self) -> None:
        while (batch := self.queue.get()) is not None:
            try:
                self._write(*batch)
            except Exception as e:  # noqa: BLE001 - run_once reports it; the reader goes on
                self.failed.append(e)

    def _write(self, entries: list[FileEntry], files: list[batchwrite.SmallFile]) -> None:
        for e in entries:
            parent = e.path.rpartition("/")[0]
            if parent and parent not in self.made:
                os.makedirs(self.root / parent, exist_ok=True)
                self.made.add(parent)
        placed = batchwrite.write_small_files(self.root, files)
        self.failed += [p for p in placed if not isinstance(p, batchwrite.Placed)]
        if self.index is None:
            return
        done = [(e, e.recorded(p.inode, p.ctime_ns))  # e keeps the sender's seq
                for e, p in zip(entries, placed, strict=True) if isinstance(p, batchwrite.Placed)]
        self.index.put_local([r for _, r in done])  # r gets ours
        if not self.bookkept:  # bookkept: put_local turned the pending rows into these
            self.index.put_remote("A", b"A" * 16, [], 0,
                                  [(e.path, e.seq, r.seq) for e, r in done])


def run_once(src: Path, entries: list[FileEntry], dest: Path, ids: Path, bookkept: bool,
             indexed: bool = True) -> dict[str, float]:
    """One floor sync of src into an empty dest; figures of the receiving side."""
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "folder").mkdir(parents=True)
    server = identity.server_context(identity.load_or_create(ids / "a"))
    client = identity.client_context(identity.load_or_create(ids / "b"))
    listener = socket.create_server(("127.0.0.1", 0))
    address = listener.getsockname()
    pid = os.fork()
    if pid == 0:  # the sender
        code = 1
        try:
            raw, _ = listener.accept()
            with server.wrap_socket(raw, server_side=True) as sock:
                recv_exact(sock, 1)
                send(sock, src, entries)
                recv_exact(sock, 1)
            code = 0
        finally:
            os._exit(code)
    listener.close()
    index = Index(dest / "index.db", "B") if indexed else None
    receiver = Receiver(dest / "folder", index, bookkept)
    cpu0 = time.process_time()
    start = time.monotonic()
    try:
        with client.wrap_socket(socket.create_connection(address)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(b"g")
            while items := msgpack.unpackb(recv_exact(sock, _LEN.unpack(recv_exact(sock, 4))[0])):
                receiver.take(items)
            receiver.finish()
            wall = time.monotonic() - start
            sock.sendall(b"d")
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        receiver.finish()
        if index is not None:
            index.close()
        _, status = os.waitpid(pid, 0)
    if receiver.failed or status:
        raise SystemExit(f"the floor sync failed: {receiver.failed[:3]!r}, sender {status}")
    return {"wall_s": wall, "cpu_s": time.process_time() - cpu0}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="p2psync-floor-", dir=args.workdir))
    try:
        src = work / "a"
        src.mkdir()
        fill = populate_small if args.small else populate_tiny
        fill(src, args.small or args.tiny, random.Random(1))
        entries = entries_of(src)
        runs = []
        for _ in range(args.runs):
            runs.append(run_once(src, entries, work / "b", work / "ids", args.bookkept,
                                 not args.no_index))
            runs[-1]["same"] = tree_digest(src) == tree_digest(work / "b" / "folder")
            if args.compare:
                runs[-1]["rsync_s"] = _rsync(src, work)
        figures = _figures(len(entries), runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(figures))
    else:
        for k, v in figures.items():
            print(f"{k:36} {v}")
    return figures


def _rsync(src: Path, work: Path) -> float:
    daemon = RsyncDaemon(src, work)
    try:
        shutil.rmtree(work / "r", ignore_errors=True)
        return daemon.copy_to(work / "r").wall_s
    finally:
        daemon.stop()
        shutil.rmtree(work / "r", ignore_errors=True)


def _figures(count: int, runs: list[dict]) -> dict:
    out: dict = {"files": count, "runs": len(runs), "all_same": all(r["same"] for r in runs)}
    for key in ("wall_s", "cpu_s", "rsync_s"):
        values = sorted(r[key] for r in runs if key in r)
        if values:
            out[key] = [round(values[0], 3), round(statistics.median(values), 3),
                        round(values[-1], 3)]
    if "rsync_s" in out:
        ratios = sorted(r["wall_s"] / r["rsync_s"] for r in runs)
        out["vs_rsync"] = [round(ratios[0], 2), round(statistics.median(ratios), 2),
                           round(ratios[-1], 2)]
    out["us_per_file"] = round(statistics.median(r["wall_s"] for r in runs) / count * 1e6, 1)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = p.add_mutually_exclusive_group()
    group.add_argument("--tiny", type=int, default=100_000, help="files of 50-200 bytes")
    group.add_argument("--small", type=int, default=0, help="files of 1-32 KiB instead")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--bookkept", action="store_true",
                   help="store each entry as a pending row first, as today's receiver does")
    p.add_argument("--no-index", action="store_true",
                   help="write the files and record nothing: what the disk path alone costs")
    p.add_argument("--compare", action="store_true", help="rsync the same files after each")
    p.add_argument("--workdir", default=None)
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


if __name__ == "__main__":
    main()
