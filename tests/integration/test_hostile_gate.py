"""Strangers without the key against a real `run` node: floods and online guessing.

The attackers come from their own loopback addresses (127.1.x.y, see
hostile.new_source), the honest devices from 127.0.0.1, as on a LAN where each
device has its own address. The figures (memory, tries allowed) are printed; run
with -s to see them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import ssl
import time

import pytest

from app.engine import listener
from app.engine.config import Config
from app.engine.node import THROTTLED_ALERT, Node, NodeOptions
from app.net import gate
from app.net.handshake import HandshakeError, handshake
from tests import hostile
from tests.procs import SECRET, start_run, sync

NODE_FILE = b"content the node shares\n" * 10
FLOOD_S = 15.0
MIB = 1024


@pytest.fixture
def node(tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    (share / "from-node.txt").write_bytes(NODE_FILE)
    n = start_run(share, tmp_path / "cfg-node")
    yield n
    n.stop()


def honest_sync(tmp_path, node, tag: str, secret: str = SECRET, timeout: float = 30):
    folder = tmp_path / f"honest-{tag}"
    folder.mkdir(exist_ok=True)
    started = time.monotonic()
    r = sync(folder, tmp_path / f"cfg-{tag}", node.address, secret=secret, timeout=timeout)
    return r, time.monotonic() - started


def assert_quiet(node, most_fd_lines: int = 3) -> None:
    log = node.log()
    assert "Traceback" not in log, log[-3000:]
    fd_lines = len(re.findall(r"too many open files|out of file descriptors", log, re.I))
    assert fd_lines <= most_fd_lines, log[-3000:]


# --- (a) 3,000 unauthenticated connections ------------------------------------------------
@pytest.mark.slow
def test_a_flood_of_unfinished_connections_costs_little_and_lets_honest_peers_in(tmp_path,
                                                                                 node):
    pid = node.proc.pid
    # the machine's default descriptor limit, as the node would have it on a desktop
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (1024, 1024))
    before = hostile.vm_kib(pid)
    # each kind from 100 addresses of its own, 10 connections each
    pools = {kind: [hostile.new_source() for _ in range(100)] for kind in hostile.FLOOD_KINDS}
    floods = [hostile.start_flood(node.port, 1000, kind, pools[kind], FLOOD_S, tmp_path)
              for kind in hostile.FLOOD_KINDS]
    try:
        node.wait_for_log(r"refused a connection from 127\.1\.", 20)
        r, took = honest_sync(tmp_path, node, "during-flood")
        during = [f.poll() is None for f in floods]
        stats = [json.loads(f.communicate(timeout=FLOOD_S + 60)[0]) for f in floods]
    finally:
        for f in floods:
            if f.poll() is None:
                f.kill()
                f.wait()
    peak = hostile.vm_kib(pid)
    time.sleep(3.0)  # the node trims freed memory within a second of the flood's end
    after = hostile.vm_kib(pid)
    print(f"\nflood of 3 x 1000 connections from 3 x 100 addresses for {FLOOD_S:g} s: "
          f"{dict(zip(hostile.FLOOD_KINDS, stats, strict=True))}")
    print(f"node RSS before {before['VmRSS'] / MIB:.1f} MiB, peak {peak['VmHWM'] / MIB:.1f} "
          f"MiB, after {after['VmRSS'] / MIB:.1f} MiB; honest sync took {took:.1f} s")
    assert r.returncode == 0, f"honest sync failed:\n{r.stderr}\nnode:\n{node.log()[-3000:]}"
    assert all(during), "the flood ended before the honest sync did"
    assert (tmp_path / "honest-during-flood" / "from-node.txt").read_bytes() == NODE_FILE
    assert sum(s["opened"] for s in stats) >= 3000  # they were really there
    assert peak["VmHWM"] < 150 * MIB
    assert after["VmRSS"] < before["VmRSS"] + 32 * MIB
    assert node.proc.poll() is None
    assert_quiet(node)
    # the refusals were shown with their addresses, in a bounded number of lines
    assert re.search(r"refused a connection from 127\.1\.\d+\.\d+:\d+: ", node.log())
    assert len(node.lines) < 2 * listener.REPORTS_PER_MINUTE


def test_out_of_descriptors_is_said_once_and_the_node_recovers(tmp_path, node):
    pid = node.proc.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    open_fds = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    lowest_free = min(set(range(len(open_fds) + 1)) - open_fds)

    async def knock(n: int) -> int:
        """n connections, each from its own address; how many the node closed."""
        conns = [await asyncio.open_connection(hostile.HOST, node.port,
                                               local_addr=(hostile.new_source(), 0))
                 for _ in range(n)]
        closed = 0
        for reader, writer in conns:
            data = b"still open"
            with contextlib.suppress(TimeoutError, OSError):
                async with asyncio.timeout(gate.HANDSHAKE_TIMEOUT + 3):
                    data = await reader.read()
            closed += data == b""
            hostile.close(writer)
        return closed

    # two descriptors to spare: two handshakes may wait, every further one replaces the
    # one stalled the longest
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free + 2, hard))
    try:
        closed = asyncio.run(knock(12))
        # none to spare: each connection is accepted and closed at once with the reserve
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free, hard))
        r, _ = honest_sync(tmp_path, node, "no-fds", timeout=10)
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    assert closed == 12
    assert r.returncode == 3, r.stderr
    assert "closed before TLS" in r.stderr and "Traceback" not in r.stderr
    node.wait_for_log(r"out of file descriptors .*unfinished connections are closed")
    r, _ = honest_sync(tmp_path, node, "after")
    assert r.returncode == 0, f"{r.stderr}\n{node.log()[-3000:]}"
    assert node.proc.poll() is None
    fd_lines = [line for line in node.lines if "out of file descriptors" in line]
    assert len(fd_lines) == 1, node.log()[-3000:]
    assert_quiet(node)


# --- (b) online guessing ------------------------------------------------------------------
async def guess_for(port: int, seconds: float, source: str, ident) -> list[tuple[str, float]]:
    """Wrong keys from one address as fast as the node answers: (outcome, seconds) each."""
    results = []
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        i += 1
        started = time.monotonic()
        try:
            reader, writer = await hostile.open_tls(port, ident, source)
            try:
                await handshake(reader, writer, ident, f"guess-{i:04d}", "guesser",
                                initiator=True)
                outcome = "in"
            except HandshakeError as e:
                outcome = "wrong key" if e.code == "auth" else f"handshake {e.code}"
            finally:
                hostile.close(writer)
        except ssl.SSLError as e:
            outcome = "locked out" if e.reason == THROTTLED_ALERT else f"tls {e.reason}"
        except OSError as e:
            outcome = f"os {e!r}"
        results.append((outcome, time.monotonic() - started))
    return results


def test_online_guessing_is_throttled_and_named_while_honest_peers_sync(tmp_path, node):
    attacker = hostile.new_source()
    ident = hostile.new_identity(tmp_path)

    async def attack_while_syncing():
        honest = asyncio.create_task(asyncio.to_thread(honest_sync, tmp_path, node, "honest"))
        results = await guess_for(node.port, 10.0, attacker, ident)
        return results, await honest

    results, (r, took) = asyncio.run(attack_while_syncing())
    outcomes = [o for o, _ in results]
    tried = outcomes.count("wrong key")
    refused = [t for o, t in results if o == "locked out"]
    print(f"\nonline guessing from {attacker}: {tried} wrong keys checked in 10 s, then "
          f"{len(refused)} connections refused before TLS (median "
          f"{sorted(refused)[len(refused) // 2] * 1000:.1f} ms each); lockouts of 60 s "
          f"doubling to 1 h: 5 tries in the first minute, 30 in the first hour, 5 an hour "
          f"after (tests/net/test_gate.py); honest sync from 127.0.0.1 meanwhile: "
          f"{took:.1f} s")
    assert outcomes[:5] == ["wrong key"] * 5, outcomes[:10]
    assert tried == gate.TRIES_PER_LOCKOUT, outcomes
    assert set(outcomes[5:]) == {"locked out"}, outcomes
    assert len(refused) > 10  # refused at once, many times over
    assert r.returncode == 0, f"the honest sync failed:\n{r.stderr}"
    # the log names the device (as it called itself) and the address: its first wrong
    # key, then the lockout with the count
    node.wait_for_log(rf"refused a connection from guesser at {re.escape(attacker)}:\d+: "
                      r"the peer does not know this share key")
    node.wait_for_log(rf"refused 4 more connection\(s\) from {re.escape(attacker)} in the "
                      r"last minute \(wrong share key x4\); its connections are refused for "
                      r"the next 60 s")
    assert_quiet(node)


def test_sync_says_it_was_locked_out_and_a_fixed_key_gets_in_at_once(tmp_path, node):
    # a wrong key once, then the right one: in at once
    r, _ = honest_sync(tmp_path, node, "typo", secret="a typo")
    assert r.returncode == 4 and "refused our share key" in r.stderr, r.stderr
    r, took = honest_sync(tmp_path, node, "typo", secret=SECRET)
    assert r.returncode == 0, r.stderr
    print(f"\nafter a wrong key, the right one got in at its first try ({took:.1f} s)")
    # five wrong keys in a row: the sixth try is turned away before TLS, and says so
    for i in range(gate.TRIES_PER_LOCKOUT):
        r, _ = honest_sync(tmp_path, node, f"wrong-{i}", secret=f"wrong-{i}")
        assert r.returncode == 4 and "refused our share key" in r.stderr, r.stderr
    r, _ = honest_sync(tmp_path, node, "locked", secret=SECRET)
    assert r.returncode == 4, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"{node.address}: refused: too many failed attempts" in lines[0]
    assert "wait a minute" in lines[0]


def test_sync_from_an_address_with_too_many_unfinished_connections_says_so(tmp_path, node):
    """Four connections from 127.0.0.1 that never send a byte (replaced as the node closes
    them) fill the address's share: `sync` from there is told "busy", tries again a few
    times, then says so in one line; once they are gone it gets in."""

    async def while_held():
        stop = asyncio.Event()

        async def keep_one() -> None:
            while not stop.is_set():
                reader, writer = await asyncio.open_connection(hostile.HOST, node.port)
                with contextlib.suppress(TimeoutError, OSError):
                    async with asyncio.timeout(gate.HANDSHAKE_TIMEOUT + 1):
                        while await reader.read(1024):
                            pass
                hostile.close(writer)

        holders = [asyncio.create_task(keep_one()) for _ in range(gate.MAX_PER_SOURCE)]
        await asyncio.sleep(0.5)
        r, _ = await asyncio.to_thread(honest_sync, tmp_path, node, "busy", timeout=20)
        stop.set()
        for h in holders:
            h.cancel()
        await asyncio.gather(*holders, return_exceptions=True)
        return r

    r = asyncio.run(while_held())
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"{node.address}: busy: too many unfinished connections from this address" in lines[0]
    r, _ = honest_sync(tmp_path, node, "after-busy")
    assert r.returncode == 0, r.stderr


# --- the engine event ---------------------------------------------------------------------
def test_refused_tries_become_events_that_name_the_address(tmp_path):
    (tmp_path / "A").mkdir()
    events: list[tuple[str, dict]] = []
    attacker = hostile.new_source()

    async def main():
        node = Node(NodeOptions(folder=tmp_path / "A", config=Config(tmp_path / "cfgA"),
                                secret=SECRET, name="alpha", listen=("127.0.0.1", 0)),
                    on_event=lambda kind, data: events.append((kind, data)))
        await node.start()
        try:
            results = await guess_for(node.listen_address[1], 2.0, attacker,
                                      hostile.new_identity(tmp_path))
            return results, node.refused_sources()
        finally:
            await node.stop()

    results, recent = asyncio.run(main())
    refused = [d for kind, d in events if kind == "auth_refused"]
    assert refused[0] == {"address": attacker, "reason": "wrong_key", "count": 1,
                          "locked_for": 0, "name": "guesser",
                          "text": f"refused a connection from guesser at {attacker}: wrong "
                                  "share key"}
    assert refused[1]["address"] == attacker and refused[1]["count"] == 4
    assert refused[1]["locked_for"] == 60 and "refused for the next 60 s" in refused[1]["text"]
    assert len(refused) == 2  # the refusals after the lockout wait for the minute's summary
    assert len(results) > 5
    (row,) = recent
    assert row["address"] == attacker and row["count"] == len(results)
    assert row["reason"] == "throttled" and "locked out for" in row["text"]


def test_a_flood_from_many_addresses_is_told_in_a_few_lines(caplog):
    """Past REPORTS_PER_MINUTE lines a minute, refusals are counted, then told as one."""
    events = []
    lst = listener.Listener(None, None, None, lambda kind, data: events.append(data))
    gate_ = lst.gate
    with caplog.at_level("WARNING", logger="app.engine.listener"):
        for i in range(listener.REPORTS_PER_MINUTE + 10):
            verdict = gate_.admit(f"10.9.0.{i}", 0.0)
            lst._report(gate_.finish(verdict.slot, gate.TIMEOUT, 0.0), f"10.9.0.{i}:1", "")
        lst._report_hidden()
    assert len(events) == listener.REPORTS_PER_MINUTE + 1
    assert events[-1]["text"] == ("refused 10 more connection(s) from 10 other address(es) in "
                                  "the last minute (not listed one by one: too many)")
    assert len(caplog.records) == listener.REPORTS_PER_MINUTE + 1
