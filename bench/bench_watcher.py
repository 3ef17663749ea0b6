"""What the folder watcher costs a program writing into the folder, and what it gains.

`copy`: a FolderWatcher on a new folder, and a file of --mib MiB written into it in
128 KiB pieces (as `cp` does) and kept open until its events are read. Prints the
events the watcher took and the CPU its threads used (the process's CPU less the
writer's), as built and with the reader's wait after a write taken out (COALESCE = 0:
every write() read as an event of its own, as when IN_MODIFY was first asked for),
runs alternating. The write itself is not timed for a target: it is the page cache's.

`kept_open`: two watching nodes (as `run` and the app are) on 127.0.0.1; a line
appended to a file of A that its program keeps open (a log, a database: no close to
report); the time until B's copy holds it. A changed file is picked up once it has
been still for the engine's SETTLE (1 s); before the watcher took writes, such a file
waited for the periodic full rescan (a minute at least).

Never asserts.

    .venv/bin/python bench/bench_watcher.py [--runs 3] [--mib 1024] [--dir /dev/shm]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.engine import watcher as watcher_mod  # noqa: E402
from app.engine.config import Config  # noqa: E402
from app.engine.node import Node, NodeOptions  # noqa: E402

SECRET = "BENCH-WATCH-E2345-KEYQQ"
PIECE = 128 * 1024


def one_copy(where: Path, mib: int) -> tuple[int, float, float]:
    """(events taken, the watcher's CPU s, the write's wall s)."""
    with tempfile.TemporaryDirectory(dir=where) as d:
        root = Path(d)
        taken = [0]
        watcher = watcher_mod.FolderWatcher(root, lambda: None)
        take = watcher.handler.take

        def counted(path: bytes, may_be_unnamed: bool) -> None:
            taken[0] += 1
            take(path, may_be_unnamed)

        watcher.handler.take = counted  # type: ignore[method-assign]
        watcher.start()
        try:
            time.sleep(0.3)  # the watches are set
            piece = os.urandom(PIECE)
            cpu, mine, started = time.process_time(), time.thread_time(), time.monotonic()
            fd = os.open(root / "copy.bin", os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                for _ in range(mib * 1024 * 1024 // PIECE):
                    os.write(fd, piece)
                wrote = time.monotonic() - started
                time.sleep(0.5)  # its last events are read
            finally:
                os.close(fd)
            others = (time.process_time() - cpu) - (time.thread_time() - mine)
        finally:
            watcher.stop()
    return taken[0], others, wrote


def options(base: Path, name: str) -> NodeOptions:
    folder = base / name
    folder.mkdir(parents=True, exist_ok=True)
    return NodeOptions(folder=folder, config=Config(base / f"cfg{name}"), secret=SECRET,
                       name=name, listen=("127.0.0.1", 0), watch=True)


async def kept_open(base: Path, runs: int) -> list[float]:
    (base / "A").mkdir(parents=True)
    (base / "A" / "app.log").write_bytes(b"started\n")
    node_a = Node(options(base, "A"))
    await node_a.start()
    node_b = Node(options(base, "B"))
    await node_b.start()
    took: list[float] = []
    fd = os.open(base / "A" / "app.log", os.O_WRONLY | os.O_APPEND)
    try:
        assert node_a.listen_address is not None
        await node_b.connect("127.0.0.1", node_a.listen_address[1])
        want = b"started\n"
        while _read(base / "B" / "app.log") != want:
            await asyncio.sleep(0.01)
        for i in range(runs):
            await asyncio.sleep(1.5)  # still again, as a log between two lines
            line = f"line {i} at {time.time()}\n".encode()
            want += line
            started = time.monotonic()
            os.write(fd, line)
            while _read(base / "B" / "app.log") != want:
                if time.monotonic() - started > 120:
                    raise SystemExit("B never got the line (120 s)")
                await asyncio.sleep(0.005)
            took.append(time.monotonic() - started)
    finally:
        os.close(fd)
        await node_b.stop()
        await node_a.stop()
    return took


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def spread(values: list[float], fmt: str = ".3f") -> str:
    return " / ".join(format(v, fmt) for v in (min(values), statistics.median(values),
                                                max(values)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = ap.parse_args()

    built = watcher_mod.COALESCE
    figures: dict[str, list[tuple[int, float, float]]] = {"as built": [], "no wait": []}
    for _ in range(args.runs):
        for name, wait in (("as built", built), ("no wait", 0.0)):
            watcher_mod.COALESCE = wait
            figures[name].append(one_copy(args.dir, args.mib))
    watcher_mod.COALESCE = built
    print(f"copy: {args.mib} MiB in {PIECE // 1024} KiB pieces into a watched folder "
          f"(min / median / max of {args.runs})")
    for name, runs in figures.items():
        events, cpu, wall = zip(*runs, strict=True)
        print(f"  {name:9} events {spread(list(events), '.0f')}, "
              f"watcher CPU {spread(list(cpu))} s, write {spread(list(wall))} s")

    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        took = asyncio.run(kept_open(Path(d), args.runs))
    print(f"kept_open: a line appended to a file kept open on A, on B after "
          f"{spread(took)} s (min / median / max of {args.runs})")


if __name__ == "__main__":
    main()
