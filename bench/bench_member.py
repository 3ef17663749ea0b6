"""What one hostile member can cost a node within the limits (issue #10), measured.

Each scenario starts a real `p2psync run` node on loopback, lets a member built with
tests/hostile.py do its worst just inside the limits, then has an honest device
`sync` with the node while the member stays connected. Printed per scenario: the
node's peak memory (VmHWM) and memory now (VmRSS), its index size, how long the
member took to send, and the honest sync's seconds and exit code. Never asserts.

    .venv/bin/python bench/bench_member.py [--only NAME,...]

Scenarios:
  unsendable  260,000 small files it cannot send (past the 250,000-path budget and far
              past the 20,000 planned at a time)
  wide        files it cannot send whose version vectors hold 256 devices, until its
              64 MiB budget is spent
  tombstones  300,000 deletions of paths nobody has (past the budget), which are not
              adopted nor passed on
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.model import BLOCK_SIZE  # noqa: E402
from tests import hostile  # noqa: E402
from tests.procs import start_run, sync  # noqa: E402

MIB = 1024 * 1024


def batches(name: str, device: str):
    if name == "unsendable":
        for b in range(260):
            yield [hostile.junk_wire(f"u/{b:03}/{i:04}.txt", device, b * 1000 + i + 1,
                                     deleted=False, size=100) for i in range(1000)]
    elif name == "wide":
        wide = dict.fromkeys(hostile.junk_devices(256, "W"), 9)
        for b in range(40):
            yield [hostile.junk_wire(f"w/{b:03}/{i:03}.bin", device, b * 100 + i + 1, wide,
                                     deleted=False, size=3 * BLOCK_SIZE) for i in range(100)]
    else:
        for b in range(300):
            yield [hostile.junk_wire(f"t/{b:03}/{i:04}", device, b * 1000 + i + 1)
                   for i in range(1000)]


async def scenario(name: str, tmp: Path) -> str:
    share = tmp / name
    share.mkdir()
    (share / "a.txt").write_text("a file of the share\n")
    node = start_run(share, tmp / f"cfg-{name}")
    try:
        s = await hostile.connect(node.port, hostile.new_identity(tmp), name="member")
        await s.send_start()
        started = time.monotonic()
        sent = await hostile.send_index_batches(s, batches(name, s.device))
        await s.send({"t": "ping"})
        await s.wait_for(lambda: "pong" in s.types(), 300)
        took = time.monotonic() - started
        await asyncio.sleep(5)  # a round or two on what it announced
        honest = tmp / f"honest-{name}"
        honest.mkdir()
        (honest / "h.txt").write_text("an honest edit\n")
        started = time.monotonic()
        r = await asyncio.to_thread(sync, honest, tmp / f"cfg-h-{name}", node.address,
                                    timeout=120)
        honest_s = time.monotonic() - started
        rss, hwm = hostile.memory_kib(node.proc.pid)
        db = hostile.index_bytes(tmp / f"cfg-{name}")
        await s.close()
        return (f"{name}: {sent:,} entries sent in {took:.1f} s; node VmHWM {hwm // 1024} MiB, "
                f"VmRSS {rss // 1024} MiB; index {db / MIB:.1f} MiB; honest sync "
                f"{honest_s:.1f} s, exit {r.returncode}")
    finally:
        node.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="unsendable,wide,tombstones")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-member-") as d:
        for name in args.only.split(","):
            print(asyncio.run(scenario(name, Path(d))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
