"""What strangers without the key can cost a node, and how fast they can guess the key.

Starts a real `p2psync run` node on loopback (tests/procs.py) and attacks it with the
helpers of tests/hostile.py, each attack from its own loopback addresses (127.1.x.y):

  gate.pending_kib.KIND        node memory per handshake held open, for 32 of them:
                               raw (TCP, no byte), tls-stall (half a ClientHello),
                               tls-idle (TLS done, then nothing)
  gate.flood.rss_before_mib    node VmRSS before a flood of 3 x N connections (raw,
  gate.flood.rss_peak_mib      tls-stall, tls-idle from 3 x 100 addresses, each re-opened
  gate.flood.rss_after_mib     when the node closes it) for S seconds; the peak (VmHWM)
                               and 3 s after the flood
  gate.flood.connections       connections the flood made
  gate.flood.honest_sync_s     an honest `sync` from 127.0.0.1 during the flood
  gate.guess.checked           wrong keys the node checked for one address in S seconds
  gate.guess.refused           its further tries, refused before TLS
  gate.guess.first_minute ...  tries one address gets at full speed in its first minute,
                               first hour, and each later day (the gate's own clock)

Prints figures, asserts nothing.

    python bench/bench_gate.py [--flood 1000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.net import gate as g  # noqa: E402
from app.net.handshake import HandshakeError, handshake  # noqa: E402
from tests import hostile, procs  # noqa: E402

MIB = 1024


def pending_cost(node: procs.RunNode, work: Path) -> dict[str, float]:
    async def hold(kind: str) -> float:
        ident = hostile.new_identity(work)
        sources = [hostile.new_source() for _ in range(8)]
        before = hostile.vm_kib(node.proc.pid)["VmRSS"]
        writers = []
        for i in range(32):
            if kind == "tls-idle":
                _, writer = await hostile.open_tls(node.port, ident, sources[i % 8])
            else:
                _, writer = await asyncio.open_connection(
                    hostile.HOST, node.port, local_addr=(sources[i % 8], 0))
                if kind == "tls-stall":
                    writer.write(b"\x16\x03\x01\x02\x00" + b"\x01" * 100)
            writers.append(writer)
        await asyncio.sleep(1.0)
        cost = (hostile.vm_kib(node.proc.pid)["VmRSS"] - before) / 32
        for writer in writers:
            hostile.close(writer)
        await asyncio.sleep(g.HANDSHAKE_TIMEOUT + 0.5)
        return cost

    return {kind: asyncio.run(hold(kind)) for kind in hostile.FLOOD_KINDS}


def flood(node: procs.RunNode, work: Path, per_kind: int, seconds: float) -> dict:
    pid = node.proc.pid
    before = hostile.vm_kib(pid)["VmRSS"]
    floods = [hostile.start_flood(node.port, per_kind, kind,
                                  [hostile.new_source() for _ in range(100)], seconds, work)
              for kind in hostile.FLOOD_KINDS]
    time.sleep(min(3.0, seconds / 3))
    started = time.monotonic()
    r = procs.sync(work / "honest", work / "cfg-honest", node.address, timeout=60)
    took = time.monotonic() - started if r.returncode == 0 else float("nan")
    stats = [json.loads(f.communicate()[0] or "{}") for f in floods]
    peak = hostile.vm_kib(pid)["VmHWM"]
    time.sleep(3.0)
    return {"rss_before_mib": before / MIB, "rss_peak_mib": peak / MIB,
            "rss_after_mib": hostile.vm_kib(pid)["VmRSS"] / MIB,
            "connections": sum(s.get("opened", 0) + s.get("refused", 0) for s in stats),
            "honest_sync_s": took}


def guess(node: procs.RunNode, work: Path, seconds: float) -> dict:
    async def go() -> tuple[int, int]:
        ident, source = hostile.new_identity(work), hostile.new_source()
        checked = refused = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                reader, writer = await hostile.open_tls(node.port, ident, source)
            except OSError:  # ssl.SSLError too: turned away before TLS
                refused += 1
                continue
            try:
                await handshake(reader, writer, ident, f"guess-{checked}", "g", initiator=True)
            except HandshakeError:
                checked += 1
            finally:
                hostile.close(writer)
        return checked, refused

    checked, refused = asyncio.run(go())
    return {"checked": checked, "refused": refused, **schedule()}


def schedule() -> dict:
    """Tries one address gets at full speed (one every 0.1 s), on the gate's own clock."""
    gate = g.Gate()

    def tries(start: float, end: float) -> int:
        n, t = 0, start
        while t < end:
            verdict = gate.admit("10.0.0.5", t)
            if verdict.slot is not None:
                gate.finish(verdict.slot, g.WRONG_KEY, t)
                n += 1
            t += 0.1
        return n

    minute = tries(0.0, 60.0)
    hour = minute + tries(60.0, 3600.0)
    tries(3600.0, 86400.0)
    return {"first_minute": minute, "first_hour": hour,
            "per_later_day": tries(86400.0, 2 * 86400.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flood", type=int, default=1000, help="connections per kind")
    ap.add_argument("--seconds", type=float, default=15.0)
    args = ap.parse_args()
    hostile.raise_fd_limit()
    work = Path(tempfile.mkdtemp(prefix="bench-gate-"))
    share = work / "share"
    share.mkdir()
    (share / "file.txt").write_bytes(b"x" * 1000)
    node = procs.start_run(share, work / "cfg")
    # the default soft limit of a desktop session, which the node cannot raise
    resource.prlimit(node.proc.pid, resource.RLIMIT_NOFILE, (1024, 1024))
    figures: dict[str, float] = {}
    try:
        for kind, kib in pending_cost(node, work).items():
            figures[f"gate.pending_kib.{kind}"] = kib
        for name, value in flood(node, work, args.flood, args.seconds).items():
            figures[f"gate.flood.{name}"] = value
        for name, value in guess(node, work, 10.0).items():
            figures[f"gate.guess.{name}"] = value
    finally:
        node.stop()
    for name, value in figures.items():
        print(f"{name} {value:.1f}" if isinstance(value, float) else f"{name} {value}")
    tracebacks = node.log().count("Traceback")
    print(f"gate.node_log.lines {len(node.lines)}")
    print(f"gate.node_log.tracebacks {tracebacks}")


if __name__ == "__main__":
    main()
