"""Large files over data links (app/net/datalink.py), and over the peer connection when not.

Real `run` and `sync` processes on loopback: a large file moves over the extra TLS
links both ways (the dialling side fetching, and the accepting side fetching over
links it asked for); where links cannot be made (a proxy that lets only the first
connection through, like a firewall with one port forwarded, or an older peer), or
break mid-way, the peer connection carries the blocks and the file arrives all the
same. A member that sends wrong blocks over a link is refused as on the peer
connection, and a link with a wrong token never gets in.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from app.core.hashing import block_hash
from app.core.model import BLOCK_SIZE
from app.net import datalink, framing
from tests import hostile
from tests.hostile import file_entry
from tests.procs import SECRET, RunNode, env, p2psync_cmd, start_run, sync, wait_until

MIB = 1024 * 1024
LINKS_UP = r"fetching from .+ over (\d) data link\(s\)"


def write_random(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def received(stderr: str) -> int:
    m = re.search(r"traffic with .*: (\d+) block bytes received", stderr)
    assert m, stderr
    return int(m.group(1))


def temp_files(root: Path) -> list[str]:
    return hostile.temp_files(root)


@pytest.fixture
def node(tmp_path):
    """node(NAME) -> a `run` node on tmp_path/NAME, started once its files are in place."""
    nodes: list[RunNode] = []

    def start(name: str = "A") -> RunNode:
        n = start_run(tmp_path / name, tmp_path / f"cfg{name}")
        nodes.append(n)
        return n

    yield start
    for n in nodes:
        assert n.stop() == 0, n.log()


class Proxy:
    """A TCP forwarder on 127.0.0.1 to the node: the first connection goes through.

    Every later one (the data links) is closed at once (`cut_after` None: a firewall
    that lets one connection through), or forwarded and cut once that many bytes came
    back from the node (a link that breaks mid-transfer).
    """

    def __init__(self, port: int, cut_after: int | None = None) -> None:
        self.upstream = port
        self.cut_after = cut_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                down, _ = self.listener.accept()
                self.accepted += 1
                if self.accepted > 1 and self.cut_after is None:
                    down.close()
                    continue
                up = socket.create_connection(("127.0.0.1", self.upstream))
                self.socks += [down, up]
                limit = None if self.accepted == 1 else self.cut_after
                threading.Thread(target=self._pump, args=(down, up, None), daemon=True).start()
                threading.Thread(target=self._pump, args=(up, down, limit), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        moved = 0
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
                moved += len(data)
                if limit is not None and moved >= limit:
                    break
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
        for s in self.socks:
            s.close()


def test_large_files_come_over_data_links_both_ways(tmp_path, node):
    a_data = write_random(tmp_path / "A" / "from-a.bin", 24 * MIB + 777)
    a = node("A")
    b_data = write_random(tmp_path / "B" / "from-b.bin", 12 * MIB + 5)

    r = sync(tmp_path / "B", tmp_path / "cfgB", a.address)

    assert r.returncode == 0, f"{r.stderr}\n{a.log()}"
    assert (tmp_path / "B" / "from-a.bin").read_bytes() == a_data
    assert (tmp_path / "A" / "from-b.bin").read_bytes() == b_data
    # B dialled A: it fetched over links it dialled; A asked B to dial links for it
    assert re.search(LINKS_UP.replace(r"(\d)", "3"), r.stderr), r.stderr
    assert received(r.stderr) == len(a_data), "links count their blocks as received too"
    a.wait_for_log(LINKS_UP.replace(r"(\d)", "3"))
    assert "refused a connection" not in a.log(), "links must not crowd the gate"
    assert temp_files(tmp_path / "A") == [] and temp_files(tmp_path / "B") == []


def test_without_links_the_peer_connection_carries_the_blocks(tmp_path, node):
    """Only the first connection gets through (say, one port forwarded): links fail."""
    data = write_random(tmp_path / "A" / "big.bin", 10 * MIB + 3)
    a = node("A")
    proxy = Proxy(a.port)
    try:
        r = sync(tmp_path / "B", tmp_path / "cfgB", proxy.address)
    finally:
        proxy.close()

    assert r.returncode == 0, f"{r.stderr}\n{a.log()}"
    assert (tmp_path / "B" / "big.bin").read_bytes() == data
    assert proxy.accepted > 1, "no link was even tried"
    assert re.search(r"could not open 3 of 3 data link\(s\) to .*: ", r.stderr), r.stderr
    assert "blocks come over the peer connection" in r.stderr, r.stderr
    assert received(r.stderr) == len(data)
    assert "Traceback" not in r.stderr + a.log()


def test_links_that_break_mid_transfer_leave_the_rest_to_the_peer_connection(tmp_path, node):
    data = write_random(tmp_path / "A" / "big.bin", 40 * MIB + 9)
    a = node("A")
    proxy = Proxy(a.port, cut_after=3 * MIB)  # each link dies after about 3 MiB
    try:
        r = sync(tmp_path / "B", tmp_path / "cfgB", proxy.address)
    finally:
        proxy.close()

    assert r.returncode == 0, f"{r.stderr}\n{a.log()}"
    assert (tmp_path / "B" / "big.bin").read_bytes() == data
    assert re.search(LINKS_UP, r.stderr), r.stderr
    assert re.search(r"a data link to .* closed: ", r.stderr), r.stderr
    assert temp_files(tmp_path / "B") == []
    assert "Traceback" not in r.stderr + a.log()


def run(coro):
    return asyncio.run(coro)


def test_an_older_peer_without_links_is_fetched_from_over_the_peer_connection(tmp_path, node):
    a = node("A")
    data = os.urandom(5 * MIB + 11)

    async def old_peer() -> list[str]:
        s = await hostile.connect(a.port, hostile.new_identity(tmp_path), name="old")
        await s.send_start()  # no "links" in it, as before this version
        await s.announce([file_entry("old.bin", data, s.device)], {"old.bin": data})
        await s.wait_for(lambda: (a.folder / "old.bin").exists(), 20)
        await s.close()
        return s.types()

    types = run(old_peer())
    assert (a.folder / "old.bin").read_bytes() == data, a.log()
    assert "links" not in types, "the node asked an older peer for links it cannot have"
    assert "data link" not in a.log(), "nothing to say of links a peer never had"


@pytest.mark.parametrize("bad_blocks", [[20], list(range(20, 40))],
                         ids=["one block", "more than a link's worth"])
def test_wrong_blocks_over_a_link_are_refused_as_on_the_peer_connection(tmp_path, node,
                                                                      bad_blocks):
    a = node("A")
    real = os.urandom(6 * MIB + 100)
    served = bytearray(real)
    for i in bad_blocks:
        served[i * BLOCK_SIZE + 5] ^= 0xFF  # one byte of the block is wrong
    offsets = {i * BLOCK_SIZE for i in bad_blocks}

    async def corrupter() -> tuple[list, list]:
        s = await hostile.connect(a.port, hostile.new_identity(tmp_path), name="corrupter")
        s.links = 2
        await s.send_start()
        entry = file_entry("victim.bin", real, s.device, mtime_ns=10**18)
        await s.announce([entry], {"victim.bin": bytes(served)})
        await s.wait_for(lambda: offsets <= {r[2] for r in s.link_requests}, 20)
        # A second round while we are still connected (our index again, stored during
        # the first round or after it): it resumes the temp file, which lacks only the
        # wrong blocks, and must not ask us for them either
        await s.announce([entry])
        await asyncio.sleep(1.0)  # what the node does next
        await s.close()
        return s.link_requests, s.requests

    over_links, over_conn = run(corrupter())
    a.wait_for_log(r"fetching from corrupter over 2 data link\(s\)")
    a.wait_for_log(r"corrupter sent a block of victim.bin that does not match its hash")
    assert offsets <= {r[2] for r in over_links if r[1] == "victim.bin"}
    assert not os.path.lexists(a.folder / "victim.bin"), "a file with a wrong block landed"
    # refused: that peer is not asked for those blocks again, over links or the
    # connection, in that round or a later one
    asked = [r[2] for r in over_links if r[2] in offsets]
    assert sorted(asked) == sorted(offsets), asked
    assert not [r for r in over_conn if r[1] == "victim.bin"], over_conn
    assert a.proc.poll() is None

    honest = tmp_path / "honest"
    honest.mkdir()
    (honest / "victim.bin").write_bytes(real)
    r = sync(honest, tmp_path / "cfg-honest", a.address, timeout=30)
    assert r.returncode == 0, f"{r.stderr}\n{a.log()}"
    assert (a.folder / "victim.bin").read_bytes() == real
    assert temp_files(a.folder) == []


def test_a_member_that_never_answers_over_its_links_freezes_nobody(tmp_path, node):
    a = node("A")
    mine = os.urandom(4 * MIB)

    async def mute() -> tuple[int, float]:
        s = await hostile.connect(a.port, hostile.new_identity(tmp_path), name="mute")
        s.links, s.silent = 2, True
        await s.send_start()
        await s.announce([file_entry("mute.bin", os.urandom(6 * MIB), s.device)])
        assert await s.wait_for(lambda: len(s.link_requests) > 0, 20), a.log()
        honest = tmp_path / "honest"
        honest.mkdir()
        (honest / "mine.bin").write_bytes(mine)
        r = await asyncio.to_thread(sync, honest, tmp_path / "cfg-honest", a.address,
                                    timeout=60)
        assert r.returncode == 0, f"{r.stderr}\n{a.log()}"
        asked = len(s.link_requests)
        await s.close()
        return asked

    asked = run(mute())
    assert asked
    assert (a.folder / "mine.bin").read_bytes() == mine
    assert not os.path.lexists(a.folder / "mute.bin")
    a.wait_for_log(r"a data link to mute closed: no answer for 10 s")  # given up on
    assert a.proc.poll() is None


def test_a_link_needs_the_token_of_a_live_connection_and_serves_only_what_is_shared(
        tmp_path, node):
    shared = os.urandom(3 * BLOCK_SIZE)
    (tmp_path / "A").mkdir()
    (tmp_path / "A" / "shared.bin").write_bytes(shared)
    a = node("A")

    async def member() -> tuple[str, list, str]:
        s = await hostile.connect(a.port, hostile.new_identity(tmp_path), name="member")
        s.links = 1
        await s.send_start()
        assert await s.wait_for(lambda: s.node_token() is not None)
        with pytest.raises((OSError, EOFError, datalink.LinkError, framing.FrameError)):
            await asyncio.to_thread(s.dial_link, a.port, True, os.urandom(32))
        wrong_token = a.wait_for_log(r"refused a connection from .*: a data link with a "
                                     r"token none of our connections gave").group(0)
        link = await asyncio.to_thread(s.dial_link, a.port, True)
        items = [[1, "shared.bin", BLOCK_SIZE, BLOCK_SIZE,
                  block_hash(shared[BLOCK_SIZE:2 * BLOCK_SIZE])],
                 [2, "shared.bin", 0, BLOCK_SIZE, b"\1" * 32],  # a hash we never had
                 [3, ".p2psync/../../escape", 0, 10, b"\2" * 32],
                 [4, "nothing.bin", 0, 10, b"\3" * 32]]
        got = await asyncio.to_thread(_ask, link, items)
        # junk on the link closes that link only
        await asyncio.to_thread(datalink.send_message, link, {"t": "req", "items": [["x"]]})
        closed = await asyncio.to_thread(_closed, link)
        await s.close()
        return wrong_token, got, closed

    wrong_token, got, closed = run(member())
    assert wrong_token
    assert got == [shared[BLOCK_SIZE:2 * BLOCK_SIZE], None, None, None]
    assert closed
    assert a.proc.poll() is None, a.log()
    r = sync(tmp_path / "B", tmp_path / "cfgB", a.address, timeout=30)
    assert r.returncode == 0, f"{r.stderr}\n{a.log()}"
    assert (tmp_path / "B" / "shared.bin").read_bytes() == shared


def test_a_strangers_link_preamble_is_judged_by_the_gate_like_any_connection(tmp_path, node):
    a = node("A")
    junk = socket.create_connection(("127.0.0.1", a.port))
    junk.sendall(datalink.PREAMBLE + b"this is no TLS at all" * 100)
    silent = socket.create_connection(("127.0.0.1", a.port))
    silent.sendall(datalink.PREAMBLE[:3])  # and then nothing
    try:
        a.wait_for_log(r"refused a connection from 127\.0\.0\.1:\d+: a data link failed")
        silent.settimeout(15)
        with contextlib.suppress(ConnectionResetError):
            assert silent.recv(1) == b"", "a half preamble was let hang on"
    finally:
        junk.close()
        silent.close()
    assert a.proc.poll() is None
    r = sync(tmp_path / "B", tmp_path / "cfgB", a.address, timeout=30)
    assert r.returncode == 0, f"{r.stderr}\n{a.log()}"


def _ask(link: datalink.TLSLink, items: list[list]) -> list[bytes | None]:
    datalink.send_request(link, items)
    out = []
    for size in datalink.read_answer(link, items):
        if size is None:
            out.append(None)
            continue
        buf = bytearray(size)
        datalink.recv_exact(link, memoryview(buf))
        out.append(bytes(buf))
    return out


def _closed(link: datalink.TLSLink) -> bool:
    link.settimeout(5)
    try:
        return link.recv_into(memoryview(bytearray(1))) == 0
    except OSError:
        return True


def test_an_interrupted_large_transfer_resumes_from_its_temp_file(tmp_path, node):
    size = 300 * MIB
    data = write_random(tmp_path / "A" / "big.bin", size)
    a = node("A")
    b = tmp_path / "B"
    b.mkdir()

    def written() -> int:
        temps = [b / t for t in temp_files(b)]
        return max((t.stat().st_blocks * 512 for t in temps), default=0)

    for _ in range(5):  # on a loaded machine this may look too late: then again
        bg = subprocess.Popen(
            p2psync_cmd("sync", "--folder", str(b), "--config-dir", str(tmp_path / "cfgB"),
                        "--no-discovery", "--secret", SECRET, "--peer", a.address),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env())
        try:
            wait_until(lambda bg=bg: written() >= 32 * MIB or bg.poll() is not None, 60, 0.002)
            bg.kill()
        finally:
            bg.communicate(timeout=30)
        if written() >= 32 * MIB and not (b / "big.bin").exists():
            break
    kept = written()
    assert 32 * MIB <= kept < size, "the transfer was never caught half-way"

    r = sync(b, tmp_path / "cfgB", a.address, timeout=60)

    assert r.returncode == 0, f"{r.stderr}\n{a.log()}"
    assert (b / "big.bin").read_bytes() == data
    fetched = int(re.search(r"pulled \d+ change\(s\) in [\d.]+ s \((\d+) bytes fetched",
                            r.stderr).group(1))
    print(f"\nresume: {kept // MIB} MiB were in the temp file, {fetched // MIB} MiB fetched after")
    assert fetched <= size - kept + 8 * MIB, (fetched, kept)  # the temp file's blocks stayed
    assert temp_files(b) == []
