"""What settle-before-pickup costs: the time a one-file edit takes to reach a peer.

Two watching nodes (as `run` and the app are) in this process, A and B, connected
over TLS on 127.0.0.1. A file is written in A's folder (open, write, close: one
inotify event) and the time until B's copy has the new content is measured, `--runs`
times, first with the engine's SETTLE (a file changed within it waits until it has
been still that long), then with SETTLE set to 0 (picked up at once, as before).
Prints the median, min and max of each, and the median's difference: the delay
settling adds. Never asserts; timings on a shared machine are noisy, run it twice.

    .venv/bin/python bench/bench_settle.py [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.engine import node as node_mod  # noqa: E402
from app.engine.config import Config  # noqa: E402
from app.engine.node import Node, NodeOptions  # noqa: E402

SECRET = "BENCH-SETTL-E2345-KEYQQ"


def options(base: Path, name: str, peers: list[tuple[str, int]]) -> NodeOptions:
    folder = base / name
    folder.mkdir(parents=True, exist_ok=True)
    return NodeOptions(folder=folder, config=Config(base / f"cfg{name}"), secret=SECRET,
                       name=name, listen=("127.0.0.1", 0), peers=peers, watch=True)


async def one_edit(a: Path, b: Path, i: int) -> float:
    data = f"edit {i} {time.time()}\n".encode() * 50
    started = time.monotonic()
    (a / "notes.txt").write_bytes(data)
    while True:
        try:
            if (b / "notes.txt").read_bytes() == data:
                return time.monotonic() - started
        except FileNotFoundError:
            pass
        await asyncio.sleep(0.005)


async def measure(base: Path, runs: int) -> list[float]:
    node_a = Node(options(base, "A", []))
    await node_a.start()
    node_b = Node(options(base, "B", []))
    await node_b.start()
    try:
        await node_b.connect(*node_a.listen_address)
        await one_edit(node_a.root, node_b.root, -1)  # warm: the first transfer
        times = []
        for i in range(runs):
            await asyncio.sleep(1.5)  # nothing left in flight, the last edit settled
            times.append(await one_edit(node_a.root, node_b.root, i))
        return times
    finally:
        await node_b.stop()
        await node_a.stop()


def summary(label: str, times: list[float]) -> float:
    med = statistics.median(times)
    print(f"{label}_median_s {med:.3f}   (min {min(times):.3f}, max {max(times):.3f}, "
          f"{len(times)} edits)")
    return med


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settle = node_mod.SETTLE
    with tempfile.TemporaryDirectory(prefix="p2psync-settle-") as tmp:
        with_settle = asyncio.run(measure(Path(tmp) / "settle", args.runs))
        node_mod.SETTLE = 0.0
        without = asyncio.run(measure(Path(tmp) / "none", args.runs))
        node_mod.SETTLE = settle
    print(f"settle_s {settle}")
    a = summary("edit_to_peer_with_settle", with_settle)
    b = summary("edit_to_peer_without_settle", without)
    print(f"added_by_settle_s {a - b:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
