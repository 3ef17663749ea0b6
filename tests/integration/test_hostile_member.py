"""A member that knows the share key tries to take a real `run` node down.

Members are trusted to edit files, not to freeze or fill the devices: a flood of
block requests, a flood of junk index entries and a huge file made of one repeated
block must leave the node's memory, its index and its disk bounded, and an honest
device must still sync meanwhile. The attacker is tests/hostile.py over the real
protocol; the figures (memory from /proc, index size) are printed (`pytest -s`).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from app.core import diskio, paths
from app.core.hashing import block_hash
from app.core.model import BLOCK_SIZE
from app.net import framing
from tests import hostile
from tests.integration.test_two_devices import wait_indexed
from tests.procs import RunNode, env, p2psync_cmd, start_run, sync, tmpfs, wait_until

MIB = 1024 * 1024
NODE_FILE = b"content the node shares\n" * 10


def run(coro):
    return asyncio.run(coro)


class Sampler:
    """Samples a process's VmRSS and VmHWM (KiB) in a thread until stopped."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.pid = pid
        self.every = every
        self.rss_max = 0
        self.hwm = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss, hwm = hostile.memory_kib(self.pid)
            except (OSError, KeyError):
                return
            self.rss_max, self.hwm = max(self.rss_max, rss), max(self.hwm, hwm)
            self._stop.wait(self.every)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def honest_sync(tmp: Path, node: RunNode, tag: str, timeout: float = 30) -> float:
    """A fresh honest device syncs both ways with the node; returns its seconds."""
    folder = tmp / f"honest-{tag}"
    folder.mkdir()
    mine = f"honest-{tag}.txt"
    (folder / mine).write_bytes(f"from honest {tag}\n".encode())
    started = time.monotonic()
    r = sync(folder, tmp / f"cfg-honest-{tag}", node.address, timeout=timeout)
    took = time.monotonic() - started
    assert r.returncode == 0, f"honest sync failed:\n{r.stderr}\nnode:\n{node.log()}"
    assert (folder / "from-node.txt").read_bytes() == NODE_FILE
    assert (node.folder / mine).read_bytes() == f"from honest {tag}\n".encode()
    return took


@pytest.fixture
def node(tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    (share / "from-node.txt").write_bytes(NODE_FILE)
    (share / "big.bin").write_bytes(random.Random(1).randbytes(8 * MIB))
    n = start_run(share, tmp_path / "cfg-node")
    yield n
    assert n.stop() == 0, n.log()
    assert "Traceback" not in n.log(), n.log()


# --- 1. a flood of block requests -------------------------------------------------------
def _flood_frames(big: bytes) -> list[bytes]:
    """Request frames of 4,096 items: valid blocks of big.bin, and all kinds of junk."""
    blocks = [(i * BLOCK_SIZE, block_hash(big[i * BLOCK_SIZE:(i + 1) * BLOCK_SIZE]))
              for i in range(len(big) // BLOCK_SIZE)]
    valid = [[n, "big.bin", off, BLOCK_SIZE, h] for n, (off, h) in enumerate(blocks)]
    junk = ([[n, "big.bin", off, BLOCK_SIZE, b"\1" * 32] for n, (off, _) in enumerate(blocks)]
            + [[n, f"nothing-{n}.bin", 0, BLOCK_SIZE, b"\2" * 32] for n in range(64)]
            + [[n, "big.bin", 2**40, BLOCK_SIZE, b"\3" * 32] for n in range(64)]
            + [[n, "x" * 5000, 0, 10, b"\4" * 32] for n in range(8)]
            + [["bad", 1, 2] for _ in range(8)])
    mixed = (valid + junk) * (4096 // len(valid + junk) + 1)
    return [hostile.req_frame((valid * 64)[:4096]), hostile.req_frame(junk[:4096]),
            hostile.req_frame(mixed[:4096])]


async def _flooder(port: int, ident, frames: list[bytes], seconds: float,
                   reads: bool) -> tuple[int, int]:
    """One member's flood: (frames sent, bytes it got back)."""
    s = await hostile.connect(port, ident, name="reading" if reads else "deaf", pump=False)
    await s.send_start()
    got = [0]
    sink = asyncio.create_task(hostile.discard(s.reader, got)) if reads else None
    sent = await hostile.flood_frames(s.writer, frames, seconds)
    if sink is not None:
        sink.cancel()
        await asyncio.gather(sink, return_exceptions=True)
    hostile.close(s.writer)
    return sent, got[0]


@pytest.mark.slow
def test_a_request_flood_keeps_memory_bounded_and_honest_peers_served(tmp_path, node):
    big = (node.folder / "big.bin").read_bytes()
    frames = _flood_frames(big)
    pings = [framing.encode_message({"t": "ping"}) * 10_000]  # each answered by a pong
    seconds = 20.0
    before = hostile.memory_kib(node.proc.pid)

    async def attack() -> tuple:
        floods = [asyncio.create_task(_flooder(node.port, hostile.new_identity(tmp_path),
                                                f, seconds, reads))
                  for f, reads in ((frames, False), (frames, True), (pings, False))]
        await asyncio.sleep(3)  # the floods are well under way
        took = await asyncio.to_thread(honest_sync, tmp_path, node, "during-flood")
        results = await asyncio.gather(*floods)
        return took, results

    with Sampler(node.proc.pid) as sampler:
        took, results = run(attack())
    after = hostile.memory_kib(node.proc.pid)
    print(f"\nrequest flood ({seconds:.0f} s; a deaf and a reading member send requests, a "
          f"deaf one pings): frames sent {[r[0] for r in results]}, "
          f"{results[1][1] / MIB:.0f} MiB served to the reading one; "
          f"node VmRSS before {before[0] / 1024:.0f} MiB, max {sampler.rss_max / 1024:.0f} MiB, "
          f"after {after[0] / 1024:.0f} MiB; VmHWM {sampler.hwm / 1024:.0f} MiB; "
          f"honest sync meanwhile {took:.1f} s")
    assert sampler.hwm < 150 * 1024, f"peak memory {sampler.hwm / 1024:.0f} MiB"
    assert node.proc.poll() is None, node.log()
    honest_sync(tmp_path, node, "after-flood")


# --- 2. a flood of junk index entries ------------------------------------------------------
def _junk_batches(device: str):
    """What the issue saw, and the same just inside the per-entry limits.

    300 batches of 1,000 deletions of paths nobody has (stored, never acted on: the
    per-device budget, 2,000,000 paths since a million-file share must fit, is held to
    by tests/core/test_remote_limits.py), 20 of 100 entries with vectors of 1,000
    devices (refused one by one), and 30 of 100 files nobody can send, with vectors of
    250 devices (allowed per entry, until the device's byte budget is spent).
    """
    seq = 0
    for b in range(300):
        seq += 1000
        yield [hostile.junk_wire(f"junk/{b:03}/{i:04}.txt", device, seq - 1000 + i + 1)
               for i in range(1000)]
    huge = dict.fromkeys(hostile.junk_devices(1000), 7)
    for b in range(20):
        yield [hostile.junk_wire(f"huge/{b:02}/{i:03}.txt", device, i + 1, huge)
               for i in range(100)]
    wide = dict.fromkeys(hostile.junk_devices(250, "W"), 9)
    for b in range(30):
        yield [hostile.junk_wire(f"wide/{b:02}/{i:03}.bin", device, i + 1, wide,
                                 deleted=False, size=3 * BLOCK_SIZE) for i in range(100)]


@pytest.mark.slow
def test_a_junk_index_flood_is_bounded_and_does_not_spread(tmp_path, node):
    before_took = honest_sync(tmp_path, node, "before")
    before_mem = hostile.memory_kib(node.proc.pid)
    before_db = hostile.index_bytes(node.config)

    async def attack():
        s = await hostile.connect(node.port, hostile.new_identity(tmp_path), name="junker")
        await s.send_start()
        started = time.monotonic()
        sent = await hostile.send_index_batches(s, _junk_batches(s.device))
        # a second member: 40,000 small files it cannot send, twice what is planned at once
        s2 = await hostile.connect(node.port, hostile.new_identity(tmp_path), name="liar")
        await s2.send_start()
        sent += await hostile.send_index_batches(s2, (
            [hostile.junk_wire(f"lies/{b:02}/{i:04}.txt", s2.device, b * 1000 + i + 1,
                               deleted=False, size=100) for i in range(1000)]
            for b in range(40)))
        # the node has taken it all once it answers a ping sent after the last batch
        for m in (s, s2):
            await m.send({"t": "ping"})
            await m.wait_for(lambda m=m: m.types().count("pong") >= 1, 120)
        took = time.monotonic() - started
        await s2.wait_for(lambda: len(s2.requests) >= 1000, 30)  # it tries them...
        # an honest device syncs while both are still connected
        honest = await asyncio.to_thread(honest_sync, tmp_path, node, "during-junk")
        third = tmp_path / "honest-during-junk"
        for m in (s, s2):
            await m.close()
        return sent, took, honest, third

    with Sampler(node.proc.pid) as sampler:
        sent, took, during_took, third = run(attack())
    db = hostile.index_bytes(node.config)
    third_db = hostile.index_bytes(tmp_path / "cfg-honest-during-junk")
    print(f"\njunk index flood: {sent:,} entries sent in {took:.1f} s; node VmRSS before "
          f"{before_mem[0] / 1024:.0f} MiB, max {sampler.rss_max / 1024:.0f} MiB, VmHWM "
          f"{sampler.hwm / 1024:.0f} MiB; index {before_db / MIB:.1f} -> {db / MIB:.1f} MiB; "
          f"honest sync {before_took:.1f} s before, {during_took:.1f} s during; "
          f"third device's index {third_db / MIB:.1f} MiB; node log "
          f"{sum(len(line) + 1 for line in node.lines) // 1024} KiB")
    log = node.log()
    assert "junker announced a version vector of 1,000 devices (at most 256): refused" in log
    assert sum("junker announced" in line for line in node.lines) == 1, log
    assert sampler.hwm < 200 * 1024, f"peak memory {sampler.hwm / 1024:.0f} MiB"
    assert db < 200 * MIB, f"index {db / MIB:.0f} MiB"
    # nothing of it reached the honest device, on disk or in its index
    assert sorted(p.name for p in third.iterdir()) == [
        ".p2psync", "big.bin", "from-node.txt", "honest-before.txt", "honest-during-junk.txt"], \
        sorted(p.name for p in third.iterdir())
    assert third_db < 2 * MIB
    assert node.proc.poll() is None, log
    honest_sync(tmp_path, node, "after-junk")


def test_a_member_that_never_sends_what_it_announced_freezes_nobody(tmp_path, node):
    """Files announced and then never sent held the node's pull round for ever."""
    async def attack():
        s = await hostile.connect(node.port, hostile.new_identity(tmp_path), name="mute")
        s.silent = True
        await s.send_start()
        await s.announce([hostile.file_entry(f"mute/{i:03}.bin", bytes([i % 256]) * (100 + i),
                                             s.device) for i in range(600)]
                         # not all zeros: a file of zero blocks needs no bytes from anyone
                         + [hostile.file_entry(f"mute/big{i}.bin",
                                               bytes([i + 1]) * 3 * BLOCK_SIZE, s.device)
                            for i in range(8)])
        await s.wait_for(lambda: len(s.requests) >= 500, 10)
        took = await asyncio.to_thread(honest_sync, tmp_path, node, "beside-mute")
        asked = len(s.requests)
        await s.close()
        return took, asked

    took, asked = run(attack())
    print(f"\nhonest sync beside a member that never answers {asked} requests: {took:.1f} s")
    node.wait_for_log(r"mute has answered none of \d+ block request\(s\) for 10 s: "
                      r"not asking it for 30 s")
    landed = sorted(p.name for p in (node.folder / "mute").iterdir())
    assert not [n for n in landed if n.endswith(".bin")], landed



def test_a_member_that_never_finishes_its_index_holds_no_deletion_back(tmp_path, node):
    """One full index batch and no `state` after it made every deletion wait for ever."""
    honest = tmp_path / "honest-deleter"
    r = sync(honest, tmp_path / "cfg-deleter", node.address)
    assert r.returncode == 0, r.stderr

    async def attack() -> subprocess.CompletedProcess:
        s = await hostile.connect(node.port, hostile.new_identity(tmp_path), name="endless")
        await s.send_start()
        await hostile.send_index_batches(  # "more follows", and nothing ever does
            s, [[hostile.junk_wire(f"j/{i:04}", s.device, i + 1) for i in range(1000)]])
        await s.send({"t": "ping"})
        await s.wait_for(lambda: "pong" in s.types(), 10)
        (honest / "from-node.txt").unlink()
        r = await asyncio.to_thread(sync, honest, tmp_path / "cfg-deleter", node.address,
                                    timeout=20)
        await s.close()
        return r

    r = run(attack())
    assert r.returncode == 0, f"{r.stderr}\nnode:\n{node.log()}"
    assert not (node.folder / "from-node.txt").exists()


# --- 3. a huge file of one repeated block, and the temp files of abandoned transfers -------
@pytest.fixture
def small_disk(tmp_path):
    """A 30 MiB tmpfs for the node's folder; skips where mounting is refused."""
    with tmpfs(tmp_path / "small", "30m") as mnt:
        yield mnt


def _status(node: RunNode) -> dict:
    r = subprocess.run(p2psync_cmd("status", "--folder", str(node.folder), "--config-dir",
                                   str(node.config), "--json"),
                       capture_output=True, text=True, env=env(), timeout=30)
    assert r.returncode == 0, r.stderr
    return {f["path"]: f for f in json.loads(r.stdout)["files"]}


def test_a_huge_file_of_one_repeated_block_is_refused_before_a_byte_is_written(
        tmp_path, small_disk):
    share = small_disk / "share"
    share.mkdir()
    (share / "from-node.txt").write_bytes(NODE_FILE)
    node = start_run(share, tmp_path / "cfg-node")
    block = random.Random(3).randbytes(BLOCK_SIZE)
    total = os.statvfs(small_disk).f_blocks * os.statvfs(small_disk).f_frsize
    reserve = diskio.reserve_for(total)
    try:
        async def attack():
            s = await hostile.connect(node.port, hostile.new_identity(tmp_path), name="filler")
            await s.send_start()
            # one block it sends, then 1 GiB of that block: every block is here already
            await s.announce([hostile.file_entry("seed.bin", block, s.device)],
                             {"seed.bin": block})
            await s.wait_for(lambda: (share / "seed.bin").exists(), 10)
            before = shutil.disk_usage(small_disk).free
            # 1 GiB; 37.5 MiB (more than the whole disk); 12.5 MiB, which fits
            await s.announce([hostile.repeated_entry("fill.bin", block, 8192, s.device),
                              hostile.repeated_entry("sub/fill2.bin", block, 300, s.device),
                              hostile.repeated_entry("sub/fits.bin", block, 100, s.device)])
            lowest = shutil.disk_usage(small_disk).free
            def settled() -> bool:
                return (share / "sub" / "fits.bin").exists() and all(
                    re.search(rf"could not sync {p}: no space left here", node.log())
                    for p in ("fill.bin", "sub/fill2.bin"))

            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not settled():
                lowest = min(lowest, shutil.disk_usage(small_disk).free)
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.5)  # anything still on its way
            lowest = min(lowest, shutil.disk_usage(small_disk).free)
            served = sum(r[3] for r in s.requests)
            await s.close()
            return before, lowest, served

        before, lowest, served = run(attack())
        print(f"\nrepeated-block fill on a {total / MIB:.0f} MiB disk: {served // 1024} KiB "
              f"served; free space {before / MIB:.1f} MiB before, at the lowest "
              f"{lowest / MIB:.1f} MiB (reserve {reserve / MIB:.2f} MiB)")
        assert (share / "seed.bin").read_bytes() == block
        assert served == BLOCK_SIZE, "the node asked for more than the one block it lacked"
        assert (share / "sub" / "fits.bin").stat().st_size == 100 * BLOCK_SIZE
        # nothing of the two that do not fit was written: only the one that fits
        assert lowest >= reserve and lowest >= before - 100 * BLOCK_SIZE - MIB, lowest
        assert not (share / "fill.bin").exists() and not (share / "sub" / "fill2.bin").exists()
        node.wait_for_log(r"could not sync fill\.bin: no space left here: 1\.0 GB needed")
        rows = _status(node)
        assert rows["fill.bin"]["state"] == "error", rows["fill.bin"]
        assert rows["fill.bin"]["why"].startswith("no space left here"), rows["fill.bin"]
        assert hostile.temp_files(share) == []
    finally:
        assert node.stop() == 0, node.log()
    assert hostile.temp_files(share) == []


def test_temp_files_of_abandoned_transfers_are_removed(tmp_path, node):
    """Superseded, then waiting a day for a peer that left: the temp files go."""
    rnd = random.Random(4)
    v1, v2 = rnd.randbytes(3 * BLOCK_SIZE), rnd.randbytes(3 * BLOCK_SIZE)

    async def attack() -> tuple[str, str]:
        s = await hostile.connect(node.port, hostile.new_identity(tmp_path), name="quitter")
        await s.send_start()
        e1 = hostile.file_entry("part.bin", v1, s.device, 1)
        t1 = paths.temp_name_for("part.bin", e1.hash)
        await s.announce([e1], {"part.bin": v1[:BLOCK_SIZE]})  # it has only the first block
        assert await s.wait_for(lambda: (node.folder / t1).exists(), 10), node.log()
        e2 = hostile.file_entry("part.bin", v2, s.device, 2)
        t2 = paths.temp_name_for("part.bin", e2.hash)
        await s.announce([e2], {"part.bin": v2[:BLOCK_SIZE]})  # a new version, as partial
        assert await s.wait_for(lambda: (node.folder / t2).exists()
                                and not (node.folder / t1).exists(), 10), \
            (hostile.temp_files(node.folder), node.log())
        await s.close()
        return t1, t2

    t1, t2 = run(attack())
    assert hostile.temp_files(node.folder) == [t2]  # the superseded one went at once
    honest_sync(tmp_path, node, "soon-after")  # a round runs: its peer left just now
    assert hostile.temp_files(node.folder) == [t2], "a fresh partial transfer must wait"
    day_ago = time.time() - 25 * 3600
    os.utime(node.folder / t2, (day_ago, day_ago))
    honest_sync(tmp_path, node, "a-day-later")
    assert hostile.temp_files(node.folder) == [], node.log()


def test_a_temp_file_its_user_moved_with_a_directory_goes_without_a_full_scan(tmp_path, node):
    """A transfer into d/ is cut off and the user renames d/: its temp file, now under
    r/, is resumed by nothing (its name hashes the old path), so it must go as soon as
    the watcher's scan of r/ passes it, not after the next full scan (found by
    scripts/fuzz_live.py --nodes 3: it stayed in a folder that had converged)."""
    data = random.Random(6).randbytes(3 * BLOCK_SIZE)

    async def announce_and_leave() -> str:
        s = await hostile.connect(node.port, hostile.new_identity(tmp_path), name="leaver")
        await s.send_start()
        e = hostile.file_entry("d/waiting.bin", data, s.device)
        await s.announce([e], {"d/waiting.bin": data[:BLOCK_SIZE]})  # one block of three
        temp = paths.temp_name_for("d/waiting.bin", e.hash)
        assert await s.wait_for(lambda: (node.folder / temp).exists(), 10), node.log()
        await s.close()
        return temp

    temp = run(announce_and_leave())
    (node.folder / "d" / "mine.txt").write_bytes(b"the user's own file\n")
    wait_indexed(node, "d/mine.txt")
    (node.folder / "d").rename(node.folder / "r")
    moved = "r/" + temp.rpartition("/")[2]
    assert hostile.temp_files(node.folder) == [moved]
    wait_indexed(node, "r/mine.txt", "d/mine.txt")
    wait_until(lambda: hostile.temp_files(node.folder) == [], 10,
               msg="the temp file moved with its directory stayed")
    assert (node.folder / "r" / "mine.txt").read_bytes() == b"the user's own file\n"


def test_leftover_temp_files_go_and_a_resumable_one_stays_when_the_node_stops(tmp_path):
    """Leftovers of a crash go even while a transfer waits for its peer; that one stays."""
    share = tmp_path / "share"
    (share / "d").mkdir(parents=True)
    (share / "keep.txt").write_bytes(b"a user's file\n")
    node = start_run(share, tmp_path / "cfg")
    data = random.Random(5).randbytes(3 * BLOCK_SIZE)

    async def announce_and_leave() -> str:
        s = await hostile.connect(node.port, hostile.new_identity(tmp_path), name="leaver")
        await s.send_start()
        e = hostile.file_entry("waiting.bin", data, s.device)
        await s.announce([e])  # and sends none of it
        temp = paths.temp_name_for("waiting.bin", e.hash)
        assert await s.wait_for(lambda: (share / temp).exists(), 10), node.log()
        await s.close()
        return temp

    waiting = run(announce_and_leave())
    assert node.stop() == 0, node.log()
    assert hostile.temp_files(share) == [waiting]  # its peer may come back: a resume
    leftovers = [".p2psync-0123456789abcdef.tmp", "d/.p2psync-fedcba9876543210.tmp"]
    for rel in leftovers:
        (share / rel).write_bytes(b"a crashed transfer's remains" * 1000)
    node = start_run(share, tmp_path / "cfg")
    assert node.stop() == 0, node.log()
    assert hostile.temp_files(share) == [waiting]
    assert (share / "keep.txt").read_bytes() == b"a user's file\n"


# --- 4. an ignore file that ignores more --------------------------------------------------
def test_a_pushed_ignore_everything_is_shown_and_status_says_why(tmp_path, node):
    for i in range(20):
        (node.folder / f"docs/{i:02}.txt").parent.mkdir(exist_ok=True)
        (node.folder / f"docs/{i:02}.txt").write_text(f"doc {i}\n")
    wait_indexed(node, *(f"docs/{i:02}.txt" for i in range(20)))  # once settled

    async def push() -> str:
        s = await hostile.connect(node.port, hostile.new_identity(tmp_path), name="laptop")
        await s.send_start()
        await s.announce([hostile.file_entry(".p2psyncignore", b"*\n", s.device)],
                         {".p2psyncignore": b"*\n"})
        await s.wait_for(lambda: (node.folder / ".p2psyncignore").exists(), 10)
        short = s.device[:7]
        await s.close()
        return short

    short = run(push())
    line = node.wait_for_log(r"laptop \(\w+\)'s ignore file now ignores .*").group(0)
    assert line == (f"laptop ({short})'s ignore file now ignores 22 of 23 files (before: 0); "
                    "those are no longer synced (.p2psyncignore: *)"), line

    def ignored_rows() -> dict:
        return {p: r for p, r in _status(node).items() if r["state"] == "ignored"}

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "docs/00.txt" not in ignored_rows():
        time.sleep(0.1)
    rows = _status(node)
    assert rows["docs/00.txt"]["state"] == "ignored", rows["docs/00.txt"]
    assert rows["docs/00.txt"]["why"] == "ignored by `*` in .p2psyncignore"
    assert rows[".p2psyncignore"]["state"] != "ignored"


def test_a_sync_that_brings_an_ignore_everything_says_so(tmp_path, node):
    """`sync` used to exit 0 without a word once a peer's `*` stopped all syncing."""
    laptop = tmp_path / "laptop"
    r = sync(laptop, tmp_path / "cfg-laptop", node.address, extra=("--name", "laptop"))
    assert r.returncode == 0, r.stderr
    (node.folder / ".p2psyncignore").write_text("# nothing syncs any more\n*\n")
    node.wait_for_log(r"this device's ignore file now ignores 2 of 3 files \(before: 0\)")
    r = sync(laptop, tmp_path / "cfg-laptop", node.address, extra=("--name", "laptop"))
    assert r.returncode == 0, r.stderr
    assert re.search(r"vm \(\w{7}\)'s ignore file now ignores 2 of 3 files \(before: 0\); "
                     r"those are no longer synced", r.stderr), r.stderr
