"""A malicious peer attacks a real `run` node over the real wire protocol.

The attacker is written with the project's own identity / framing / handshake modules
(tests/hostile.py) and holds a fresh identity. For every attack we check that
(a) nothing is written outside the node's folder: the folder sits in
    world/parent/share next to world/parent/sentinel, and everything under world/
    except the folder itself must stay byte-for-byte unchanged (plus absolute paths
    under /tmp the attacker aims at);
(b) the node process survives, and an honest `p2psync sync` still works;
(c) the node's log names the reason where one is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import pytest

from app.core.hashing import block_hash
from app.core.model import BLOCK_SIZE
from app.engine.node import PAGE_ROWS
from app.net import framing, gate
from app.net.handshake import HandshakeError, handshake
from tests import hostile
from tests.hostile import dir_entry, file_entry, link_entry
from tests.procs import RunNode, start_run, sync, wait_until

NODE_FILE = b"content the node shares\n" * 10


@dataclass
class World:
    tmp: Path
    outer: Path  # snapshot root: everything here but `share` must never change
    share: Path  # the node's folder: world/parent/share
    sentinel: Path  # world/parent/sentinel
    node: RunNode
    before: dict = field(default_factory=dict)
    abs_targets: list[Path] = field(default_factory=list)

    def abs_target(self) -> Path:
        p = Path(f"/tmp/p2psync-abs-escape-{uuid.uuid4().hex}.txt")
        self.abs_targets.append(p)
        return p

    def assert_no_escape(self) -> None:
        after = hostile.snapshot(self.outer, self.share)
        changed = {k for k in set(self.before) | set(after)
                   if self.before.get(k) != after.get(k)}
        assert not changed, f"written outside the folder: {sorted(changed)}\n{self.node.log()}"
        for p in self.abs_targets:
            assert not os.path.lexists(p), f"{p} was created"

    def assert_alive(self) -> None:
        assert self.node.proc.poll() is None, f"node died:\n{self.node.log()}"

    def honest_sync(self, tag: str) -> float:
        """A fresh honest device syncs with the node both ways; returns the seconds."""
        folder = self.tmp / f"honest-{tag}"
        folder.mkdir()
        mine = f"honest-{tag}.txt"
        (folder / mine).write_bytes(f"from honest {tag}\n".encode())
        started = time.monotonic()
        r = sync(folder, self.tmp / f"cfg-honest-{tag}", self.node.address, timeout=20)
        took = time.monotonic() - started
        assert r.returncode == 0, f"honest sync failed:\n{r.stderr}\nnode:\n{self.node.log()}"
        assert (folder / "from-node.txt").read_bytes() == NODE_FILE
        assert (self.share / mine).read_bytes() == f"from honest {tag}\n".encode()
        self.assert_alive()
        return took

    def log_has(self, pattern: str, timeout: float = 5.0) -> str:
        return self.node.wait_for_log(pattern, timeout).group(0)


@pytest.fixture
def world(tmp_path):
    """world(prepare) -> a World whose node runs on world/parent/share; always stopped."""
    made: list[World] = []

    def make(prepare=None) -> World:
        outer = tmp_path / "world"
        share, sentinel = outer / "parent" / "share", outer / "parent" / "sentinel"
        share.mkdir(parents=True)
        sentinel.mkdir()
        (sentinel / "keep.txt").write_bytes(b"sentinel content")
        (share / "from-node.txt").write_bytes(NODE_FILE)
        if prepare is not None:
            prepare(share, sentinel)
        before = hostile.snapshot(outer, share)
        node = start_run(share, tmp_path / "cfg-node")
        w = World(tmp_path, outer, share, sentinel, node, before)
        made.append(w)
        return w

    yield make
    for w in made:
        w.node.stop()
        for p in w.abs_targets:
            if os.path.lexists(p):
                os.unlink(p)


def run(coro):
    return asyncio.run(coro)


async def poll_no_escape(w: World, done, timeout: float = 3.0) -> None:
    """Up to `timeout` s: fail as soon as anything escapes; stop early once done()."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        w.assert_no_escape()
        if done():
            break
        await asyncio.sleep(0.05)
    w.assert_no_escape()


def has_file(path: Path, data: bytes):
    return lambda: path.is_file() and path.read_bytes() == data


# --- 1. wrong share key ---------------------------------------------------------------
def test_wrong_share_key_is_refused_before_anything_about_files(world):
    w = world()

    async def attack():
        ident = hostile.new_identity(w.tmp)
        reader, writer = await hostile.open_tls(w.node.port, ident)
        addr = hostile.local_address(writer)
        with pytest.raises(HandshakeError) as e:
            await handshake(reader, writer, ident, "not-the-share-key", "evil", initiator=True)
        after = await hostile.drain_frames(reader)
        hostile.close(writer)
        return e.value, addr, after

    err, addr, after = run(attack())
    assert err.code == "auth", err
    # the node's own verdict may still be in flight: at most one error frame, then EOF
    assert [f["t"] for f in after] in ([], ["error"]), after
    assert all(f.get("code") == "auth" for f in after), after
    w.log_has(rf"refused a connection from evil at {addr}: .*share key")
    w.assert_alive()
    w.assert_no_escape()
    w.honest_sync("after-wrong-key")


# --- 2. garbage on the wire --------------------------------------------------------------
async def garbage_attacks(w: World) -> dict[str, str]:
    """Each garbage attack on its own connection; returns label -> our local address.

    Each comes from its own source address: the node logs the first refusal of an
    address at once and the others as a count a minute later.
    """
    addrs: dict[str, str] = {}
    pid = w.node.proc.pid

    # plain TCP junk where a TLS ClientHello should be
    for junk in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\0" * 4096,
                 b"\x16\x03\x01\xff\xff" + b"\xaa" * 512):  # the last: a fake TLS record
        reader, writer = await asyncio.open_connection(hostile.HOST, w.node.port,
                                                       local_addr=(hostile.new_source(), 0))
        writer.write(junk)
        await writer.drain()
        await hostile.read_until_eof(reader, 5.0)  # the node must hang up
        hostile.close(writer)

    ident = hostile.new_identity(w.tmp)

    async def tls_send(label: str, data: bytes, expect_error: str | None = None) -> list:
        reader, writer = await hostile.open_tls(w.node.port, ident, hostile.new_source())
        addrs[label] = hostile.local_address(writer)
        writer.write(data)
        await writer.drain()
        frames = await hostile.drain_frames(reader, 5.0)
        hostile.close(writer)
        # the node sends its hello first; nothing else but an error may follow
        types = [f["t"] for f in frames if isinstance(f, dict)]
        assert types[:1] == ["hello"] and set(types[1:]) <= {"error"}, (label, frames)
        if expect_error:
            errors = [f for f in frames if isinstance(f, dict) and f["t"] == "error"]
            assert errors and errors[0]["code"] == expect_error, (label, frames)
        return frames

    await tls_send("tls-garbage", b"\x00\x00\x00\x08" + b"\xc1" * 8 + os.urandom(256))
    await tls_send("tls-random", b"\xff\xfe\xfd\xfc" + os.urandom(1024))
    await tls_send("huge-prefix", (2**31).to_bytes(4, "big") + b"\x81" * 4096)
    assert hostile.rss_kib(pid) < 150 * 1024
    await tls_send("not-a-map", _raw_frame(msgpack.packb([1, 2, 3])))
    await tls_send("no-type", _frame({"x": 1}))
    await tls_send("nested-bomb", _raw_frame(b"\x91" * 60000 + b"\xc0"))
    bad_hello = {"t": "hello", "magic": "notp2psync", "v": 1, "device": ident.device_id,
                 "name": "evil", "cert": ident.cert_der, "spake": b"x" * 33}
    await tls_send("wrong-magic", _frame(bad_hello), expect_error="protocol")
    await tls_send("wrong-version", _frame({**bad_hello, "magic": "p2psync", "v": 99}),
                   expect_error="protocol")
    await tls_send("auth-first", _frame({"t": "auth", "proof": b"", "sig": b""}),
                   expect_error="protocol")

    # the same after a correct handshake, where frames may be up to MAX_FRAME
    for label, data in (("ready-huge-prefix", (2**31).to_bytes(4, "big") + b"\x81" * 4096),
                        ("ready-max-plus-one", (framing.MAX_FRAME + 1).to_bytes(4, "big")),
                        ("ready-not-a-map", _raw_frame(msgpack.packb("just a string"))),
                        ("ready-garbage", _raw_frame(b"\xc1" * 16))):
        s = await hostile.connect(w.node.port, hostile.new_identity(w.tmp), name=label)
        await s.send_start()
        await s.send_raw(data)
        await s.wait_for(lambda s=s: s.ended.is_set(), 5.0)
        assert s.ended.is_set(), f"{label}: the node kept the connection open"
        await s.close()
        assert hostile.rss_kib(pid) < 150 * 1024
    return addrs


def _raw_frame(body: bytes) -> bytes:
    return framing._HEADER.pack(len(body)) + body


def _frame(msg: dict) -> bytes:
    return _raw_frame(msgpack.packb(msg, use_bin_type=True))


def test_garbage_and_oversized_frames_are_dropped(world):
    w = world()
    addrs = run(garbage_attacks(w))
    for label, reason in (("tls-garbage", "malformed frame"),
                          ("huge-prefix", r"frame too large \(2147483648 bytes\)"),
                          ("not-a-map", "message is not a map"),
                          ("no-type", 'message has no string "t"'),
                          ("nested-bomb", "malformed frame"),
                          ("wrong-magic", "wrong magic"),
                          ("wrong-version", "protocol version 99"),
                          ("auth-first", "instead of 'hello'")):
        w.log_has(rf"refused a connection from {addrs[label]}: .*{reason}")
    for label, reason in (("ready-huge-prefix", r"bad frame: frame too large \(2147483648"),
                          ("ready-max-plus-one", r"bad frame: frame too large"),
                          ("ready-not-a-map", "bad frame: message is not a map"),
                          ("ready-garbage", "bad frame: malformed frame")):
        w.log_has(rf"disconnected from {label}: {reason}")
    assert hostile.rss_kib(w.node.proc.pid) < 150 * 1024
    w.assert_alive()
    w.assert_no_escape()
    w.honest_sync("after-garbage")


# --- 3. messages out of turn / malformed after a correct handshake -------------------------
async def protocol_attack(w: World, name: str, msgs: list[dict], start: bool) -> list[dict]:
    s = await hostile.connect(w.node.port, hostile.new_identity(w.tmp), name=name)
    if start:
        await s.send_start()
    for m in msgs:
        await s.send(m)
    await s.wait_for(lambda: s.ended.is_set(), 5.0)
    ended = s.ended.is_set()
    types = s.types()
    await s.close()
    assert ended, f"{name}: the node kept the connection open; got {types}"
    return [m for m in s.received if m["t"] == "error"]


def _index(entries: list, **kw) -> dict:
    return {"t": "index", "index_id": b"\x01" * 16, "entries": entries, "max_seq": 1, **kw}


def test_messages_out_of_turn_close_with_a_reason(world):
    w = world()
    dev = "EVILDEV"
    good = file_entry("early.txt", b"early", dev).to_wire()
    cases = [
        ("index-before-start", [_index([good])], False, r"expected 'start', got 'index'"),
        ("req-before-start", [{"t": "req", "items": [[1, "from-node.txt", 0, 10, b""]]}],
         False, r"expected 'start', got 'req'"),
        ("start-twice", [{"t": "start", "index_id": b"\0" * 16, "have": 0}], True,
         r"'start' sent twice"),
        ("hello-again", [{"t": "hello", "magic": "p2psync"}], True,
         r"unknown message type 'hello'"),
        ("auth-again", [{"t": "auth", "proof": b"", "sig": b""}], True,
         r"unknown message type 'auth'"),
        ("bad-start", [{"t": "start", "index_id": "text", "have": "x"}], False,
         r"malformed 'start'"),
    ]

    async def attack():
        out = {}
        for name, msgs, start, _ in cases:
            out[name] = await protocol_attack(w, name, msgs, start)
        return out

    errors = run(attack())
    for name, _, _, reason in cases:
        assert errors[name] and errors[name][0]["code"] == "protocol", (name, errors[name])
        w.log_has(rf"disconnected from {name}: protocol error: {reason}")
    assert not (w.share / "early.txt").exists()
    w.assert_alive()
    w.assert_no_escape()
    w.honest_sync("after-out-of-turn")


def test_malformed_fields_close_with_a_reason(world):
    w = world()
    dev = "EVILDEV"
    ok = file_entry("fine.txt", b"fine", dev).to_wire()
    cases = [
        ("entries-not-list", [_index("nope")], r"malformed 'index'"),
        ("entry-not-list", [_index([42])], r"malformed file entry"),
        ("entry-short", [_index([ok[:5]])], r"malformed file entry"),
        ("entry-bad-kind", [_index([[*ok[:1], 9, *ok[2:]]])], r"malformed file entry"),
        ("entry-neg-size", [_index([[ok[0], 0, -1, *ok[3:]]])], r"malformed file entry"),
        ("entry-bad-blocks", [_index([[*ok[:6], b"xyz", *ok[7:]]])], r"malformed file entry"),
        ("entry-neg-version", [_index([[*ok[:8], {dev: -1}, *ok[9:]]])],
         r"malformed file entry"),
        ("too-many-entries", [_index([ok] * (PAGE_ROWS + 1))], r"malformed 'index'"),
        ("bad-state", [{"t": "state", "seq": "1", "seen": 0, "need": 0}], r"malformed 'state'"),
        ("bad-req", [{"t": "req", "items": "all"}], r"malformed 'req'"),
        ("req-too-many", [{"t": "req", "items": [[1, "x", 0, 1, b""]] * 4097}],
         r"malformed 'req'"),
        ("bad-data", [{"t": "data", "items": [["rid", b""]]}], r"malformed 'data' item"),
        ("unknown-type", [{"t": "gimme-files"}], r"unknown message type 'gimme-files'"),
    ]

    async def attack():
        out = {}
        for name, msgs, _ in cases:
            out[name] = await protocol_attack(w, name, msgs, True)
        return out

    errors = run(attack())
    for name, _, reason in cases:
        assert errors[name] and errors[name][0]["code"] == "protocol", (name, errors[name])
        w.log_has(rf"disconnected from {name}: protocol error: {reason}")
    assert not (w.share / "fine.txt").exists()
    w.assert_alive()
    w.assert_no_escape()
    w.honest_sync("after-malformed")


# --- 4. index entries that aim outside the folder ---------------------------------------
def test_index_paths_that_escape_are_refused(world):
    w = world()
    abs_target = w.abs_target()
    payload = b"evil payload\n"
    refused = ["../escape.txt", str(abs_target), "a/../../x", "sub\\..\\x",
               ".p2psync/versions/evil", "x\x00y", "", ".", "..", "ok-dir/../../../y",
               ".P2PSYNC/x"]

    async def attack():
        s = await hostile.connect(w.node.port, hostile.new_identity(w.tmp), name="escaper")
        dev = s.device
        await s.send_start()
        entries = [file_entry(p, payload, dev) for p in refused]
        entries += [link_entry("link", "/etc", dev), link_entry("link2", "../../outside", dev),
                    link_entry("deep/link3", "../../x", dev),
                    link_entry("link4", "sub/../../x", dev),
                    file_entry("ok.txt", b"control\n", dev)]
        await s.announce(entries, {e.path: payload for e in entries} | {"ok.txt": b"control\n"})
        await poll_no_escape(w, has_file(w.share / "ok.txt", b"control\n"))
        await asyncio.sleep(0.3)  # the rest of that pull round
        w.assert_no_escape()
        asked = {r[1] for r in s.requests}
        await s.close()
        return asked

    asked = run(attack())
    assert (w.share / "ok.txt").read_bytes() == b"control\n", w.node.log()
    assert asked == {"ok.txt"}, asked  # the node never even asked for a refused path
    for name in ("link", "link2", "deep/link3", "link4", "sub\\..\\x", "x"):
        assert not os.path.lexists(w.share / name), name
    assert not os.path.lexists(w.share / ".p2psync" / "versions" / "evil")
    for p in refused:
        w.log_has(rf"escaper announced a path we refuse \({re.escape(repr(p))}\)")
    w.assert_alive()
    w.assert_no_escape()
    w.honest_sync("after-escape")


def test_symlinked_directory_on_disk_is_not_written_through(world):
    def prepare(share: Path, sentinel: Path) -> None:
        (sentinel / "sub").mkdir()
        os.symlink(sentinel, share / "dirlink")  # the user's own links to outside dirs
        os.symlink("../sentinel", share / "dirlink2")
        os.symlink(sentinel / "sub", share / "dirlink3")

    w = world(prepare)
    payload = b"written through a symlink\n"

    async def attack():
        s = await hostile.connect(w.node.port, hostile.new_identity(w.tmp), name="linker")
        dev = s.device
        await s.send_start()
        entries = [dir_entry("dirlink", dev), file_entry("dirlink/evil.txt", payload, dev),
                   file_entry("dirlink/keep.txt", payload, dev),
                   file_entry("dirlink2/evil2.txt", payload, dev),
                   dir_entry("dirlink3/deeper", dev),
                   file_entry("dirlink3/deeper/evil3.txt", payload, dev),
                   file_entry("ok.txt", b"control\n", dev)]
        await s.announce(entries, {e.path: payload for e in entries} | {"ok.txt": b"control\n"})
        await poll_no_escape(w, has_file(w.share / "ok.txt", b"control\n"))
        await asyncio.sleep(0.5)
        w.assert_no_escape()
        await s.close()

    run(attack())
    assert (w.share / "ok.txt").read_bytes() == b"control\n", w.node.log()
    for rel in ("dirlink/evil.txt", "dirlink2/evil2.txt", "dirlink3/deeper/evil3.txt"):
        p = w.share / rel
        if os.path.lexists(p):  # allowed only in a real directory the node made itself
            assert not os.path.islink(p.parent) and p.parent.resolve().is_relative_to(
                w.share.resolve()), rel
    w.log_has(r"could not sync dirlink2/evil2\.txt: .*symlink")
    w.assert_alive()
    w.assert_no_escape()
    w.honest_sync("after-symlinked-dir")


# --- 5. blocks that do not match their hashes ------------------------------------------
def test_wrong_block_data_never_reaches_the_final_path(world):
    w = world()
    real = b"the real content, block one\n" * 5000 + b"tail"  # 2 blocks
    assert len(real) > BLOCK_SIZE
    wrong_second = real[:BLOCK_SIZE] + b"X" * (len(real) - BLOCK_SIZE)
    small = b"small real file\n"
    liar_data = b"consistent blocks, lying file hash\n"
    old_ns = 1_000_000_000 * 10**9  # 2001: an honest peer's copy will win later

    async def attack():
        s = await hostile.connect(w.node.port, hostile.new_identity(w.tmp), name="corrupter")
        dev = s.device
        await s.send_start()
        entries = [file_entry("victim.txt", real, dev, mtime_ns=old_ns),
                   file_entry("small.txt", small, dev, mtime_ns=old_ns),
                   file_entry("short.txt", small, dev, mtime_ns=old_ns),
                   file_entry("liar.txt", liar_data, dev, hash=b"\x07" * 32),
                   file_entry("ok.txt", b"control\n", dev)]
        serve = {"victim.txt": wrong_second, "small.txt": b"S" * len(small),
                 "short.txt": small[:3], "liar.txt": liar_data, "ok.txt": b"control\n"}
        await s.announce(entries, serve)

        def asked() -> set[str]:
            return {r[1] for r in s.requests}

        await poll_no_escape(w, lambda: has_file(w.share / "ok.txt", b"control\n")()
                             and {"victim.txt", "small.txt", "short.txt"} <= asked())
        await asyncio.sleep(0.5)
        first = len(s.requests)
        await s.announce(entries)  # later rounds, while we stay connected
        await asyncio.sleep(1.5)
        await s.close()
        return asked(), s.requests[first:]

    asked, later = run(attack())
    assert {"victim.txt", "small.txt", "short.txt"} <= asked, asked
    wrong = {("victim.txt", BLOCK_SIZE), ("small.txt", 0), ("short.txt", 0)}
    assert [r for r in later if (r[1], r[2]) in wrong] == [], \
        "a block that came wrong was asked of that peer again"
    w.log_has(r"corrupter sent a block of \w+\.txt that does not match its hash")
    assert "liar.txt" not in asked, "a block list that contradicts its hash is refused unread"
    for name in ("victim.txt", "small.txt", "short.txt", "liar.txt"):
        assert not os.path.lexists(w.share / name), f"{name} was put in place\n{w.node.log()}"
    w.log_has(r"could not sync liar\.txt: .*does not match its file hash")
    w.assert_alive()
    w.assert_no_escape()

    # an honest device with the real content: the node ends up with exactly that
    honest = w.tmp / "honest-real"
    honest.mkdir()
    (honest / "victim.txt").write_bytes(real)
    (honest / "small.txt").write_bytes(small)
    r = sync(honest, w.tmp / "cfg-honest-real", w.node.address, timeout=20)
    assert r.returncode == 0, f"{r.stderr}\n{w.node.log()}"
    assert (w.share / "victim.txt").read_bytes() == real
    assert (w.share / "small.txt").read_bytes() == small
    w.assert_alive()
    w.honest_sync("after-corrupt")


# --- 6. asking the node for what it does not share --------------------------------------
def test_requests_for_unshared_data_get_nothing(world):
    shared = bytes(range(256)) * 1024  # 256 KiB, 2 blocks
    marker = b"TOP-SECRET-MARKER"

    def prepare(share: Path, sentinel: Path) -> None:
        (share / "shared.txt").write_bytes(shared)
        (share / ".p2psyncignore").write_text("secret.txt\nprivate/\n")
        (share / "secret.txt").write_bytes(marker + b" ignored file")
        (share / "private").mkdir()
        (share / "private" / "p.txt").write_bytes(marker + b" ignored dir")
        (share / ".p2psync" / "versions").mkdir(parents=True)
        (share / ".p2psync" / "versions" / "old.txt").write_bytes(marker + b" meta dir")
        (sentinel / "keep.txt").write_bytes(marker + b" outside")
        os.symlink(sentinel / "keep.txt", share / "link-out")
        (share / "swap.txt").write_bytes(b"s" * 64)
        (share / "swapdir").mkdir()
        (share / "swapdir" / "keep.txt").write_bytes(b"k" * 64)

    w = world(prepare)
    outside = str(w.sentinel / "keep.txt")
    big = len(shared)
    denied = [("../../etc/passwd", 0, 100), ("/etc/passwd", 0, 100), (outside, 0, 10),
              ("../sentinel/keep.txt", 0, 10), (".p2psync/versions/old.txt", 0, 10),
              ("secret.txt", 0, 10), ("private/p.txt", 0, 10), ("link-out", 0, 10),
              ("shared.txt", big + 10, 10), ("shared.txt", big - 5, 10),
              ("shared.txt", 0, BLOCK_SIZE + 1), ("shared.txt", -1, 10),
              ("shared.txt", 0, BLOCK_SIZE),  # a real block, asked with the wrong hash
              ("shared.txt", 0, 0), ("shared.txt", 0, -10), ("", 0, 10), (".", 0, 10),
              ("swapdir", 0, 10), ("nonexistent.txt", 0, 10), ("shared.txt\x00x", 0, 10),
              ("swap.txt", 0, 10), ("swapdir/keep.txt", 0, 10)]
    allowed = [("shared.txt", 0, 16), ("shared.txt", BLOCK_SIZE, BLOCK_SIZE)]

    async def attack():
        s = await hostile.connect(w.node.port, hostile.new_identity(w.tmp), name="reader")
        await s.send_start()
        # swap indexed paths for links to outside after the node indexed them
        os.unlink(w.share / "swap.txt")
        os.symlink(w.sentinel / "keep.txt", w.share / "swap.txt")
        os.rename(w.share / "swapdir", w.share / "swapdir.moved")
        os.symlink(w.sentinel, w.share / "swapdir")
        right = {item: block_hash(shared[item[1]: item[1] + item[2]]) for item in allowed}
        asked = await s.request(denied + allowed, right)
        # malformed items get a None too (or the connection is closed), never bytes
        await s.send({"t": "req", "items": [[900, 5, 0, 10, b""], [901, "shared.txt", "0", 10,
                                            b""], [902, "shared.txt", 0, 10]]})
        await s.wait_for(lambda: set(asked) | {900, 901, 902} <= set(s.answers), 5.0)
        await s.close()
        return asked, s.answers, s.received

    asked, answers, received = run(attack())
    for rid, item in asked.items():
        assert rid in answers, (item, "no answer")
        if item in allowed:
            path, off, size = item
            assert answers[rid] == shared[off : off + size], item
        else:
            assert answers[rid] is None, (item, answers[rid][:40])
    for rid in (900, 901, 902):
        assert answers.get(rid) is None
    for m in received:
        if m["t"] == "data":
            for _, data in m["items"]:
                assert data is None or marker not in data
    w.assert_alive()
    w.assert_no_escape()
    w.honest_sync("after-reads")


# --- 7. many connections that never say hello --------------------------------------------
def test_silent_connections_do_not_block_honest_peers(world):
    w = world()
    ident = hostile.new_identity(w.tmp)

    async def flood():
        async def silent_tls(i: int):
            try:  # each from its own address: the node holds only a few per address
                reader, writer = await hostile.open_tls(w.node.port, ident, hostile.new_source())
            except (ssl.SSLError, OSError):  # turned away: the node holds enough of them
                return None
            if i % 2:  # half of them start a frame and never finish it
                writer.write(framing._HEADER.pack(60_000) + b"\x85")
                await writer.drain()
            return reader, writer

        tls = [c for c in await asyncio.gather(*(silent_tls(i) for i in range(50))) if c]
        raw = await asyncio.gather(*(asyncio.open_connection(
            hostile.HOST, w.node.port, local_addr=(hostile.new_source(), 0)) for _ in range(20)))
        took = await asyncio.to_thread(w.honest_sync, "during-flood")
        # the node held a bounded number of them, and the honest sync did not wait for them
        still_open = sum(not r.at_eof() for r, _ in tls)
        for _, writer in [*tls, *raw]:
            hostile.close(writer)
        return took, still_open

    took, still_open = run(flood())
    assert took < 9.5, f"honest sync took {took:.1f} s under the flood"
    assert still_open <= gate.MAX_PENDING
    w.assert_alive()
    w.assert_no_escape()
    assert hostile.rss_kib(w.node.proc.pid) < 150 * 1024


# --- beyond the list: a link's leftover temp file redirects a later fetch ----------------
def test_leftover_link_temp_does_not_redirect_a_fetch(world):
    """A failed link leaves its temp symlink; a fetch with the same temp name follows it.

    Round 1 makes a non-empty directory "d". Round 2 turns "d" into a symlink whose
    target stays inside the folder on paper ("docs/target.txt"), but "docs" is the
    user's own link to a directory outside: the temp symlink is made, then replacing
    the non-empty directory fails, and the temp is left behind. Round 3 turns "d" into
    a file whose announced hash equals the link's hash, so its temp file has the same
    name: opening it follows the symlink, and the fetched bytes land outside.
    """
    def prepare(share: Path, sentinel: Path) -> None:
        (sentinel / "target.txt").write_bytes(b"precious outside file\n")
        os.symlink(sentinel, share / "docs")

    w = world(prepare)
    evil = b"OVERWRITTEN BY A PEER\n"

    async def attack():
        s = await hostile.connect(w.node.port, hostile.new_identity(w.tmp), name="tempy")
        dev = s.device
        await s.send_start()
        await s.announce([dir_entry("d", dev, 1), file_entry("d/x", b"x", dev, 1)],
                         {"d/x": b"x"})
        await poll_no_escape(w, has_file(w.share / "d" / "x", b"x"))
        link = link_entry("d", "docs/target.txt", dev, 2)
        await s.announce([link])
        # wait (without failing: only the escape is under test) until the link was tried
        await s.wait_for(lambda: any(re.search("could not sync d: ", line)
                                     for line in w.node.lines), 5.0)
        w.assert_no_escape()
        await s.announce([file_entry("d", evil, dev, 3, hash=link.hash)], {"d": evil})
        await s.wait_for(lambda: any(r[1] == "d" for r in s.requests), 3.0)
        await asyncio.sleep(0.5)
        await s.close()

    run(attack())
    target = (w.sentinel / "target.txt").read_bytes()
    assert target == b"precious outside file\n", f"outside file now holds {target!r}"
    w.assert_no_escape()
    w.assert_alive()
    w.honest_sync("after-temp")


# --- beyond the list: integers too large for the index -------------------------------
def test_out_of_range_integers_close_with_a_reason(world):
    w = world()
    cases = {"huge-size": (2, 2**63), "huge-mtime": (3, 2**63), "huge-seq": (11, 2**64 - 1),
             "huge-max-seq": (None, 2**63)}

    async def attack():
        out = {}
        for name, (field_no, value) in cases.items():
            ident = hostile.new_identity(w.tmp)
            wire = file_entry(f"{name}.txt", b"x", ident.device_id).to_wire()
            max_seq = 1
            if field_no is None:
                max_seq = value
            else:
                wire[field_no] = value
            out[name] = await protocol_attack(w, name, [_index([wire], max_seq=max_seq)], True)
        return out

    errors = run(attack())
    w.assert_alive()
    w.assert_no_escape()
    w.honest_sync("after-huge-ints")
    for name in cases:
        reason = w.node.wait_for_log(rf"disconnected from {name}: (.*)$").group(1)
        assert reason.startswith("protocol error: "), (name, reason)
        assert errors[name] and errors[name][0]["code"] == "protocol", (name, errors[name])


# --- beyond the list: a version counter at the top of the wire's range -----------------
def test_huge_version_counter_is_refused(world):
    """A counter no real history reaches (it would overflow the next local bump)."""
    w = world()
    data = b"file with a maxed-out version counter\n"

    async def attack():
        s = await hostile.connect(w.node.port, hostile.new_identity(w.tmp), name="maxver")
        await s.send_start()
        entry = file_entry("maxed.txt", data, s.device, 2**64 - 1)
        await s.announce([entry], {"maxed.txt": data})
        await asyncio.sleep(1.0)
        await s.close()

    run(attack())
    assert not (w.share / "maxed.txt").exists()
    reason = w.node.wait_for_log(r"disconnected from maxver: (.*)$").group(1)
    assert reason.startswith("protocol error: "), reason
    # the node still picks up local edits and syncs
    seen = len(w.node.lines)
    (w.share / "local.txt").write_bytes(b"edited by the user\n")
    wait_until(lambda: any("scan:" in line for line in w.node.lines[seen:]), 5.0,
               msg=f"the node never rescanned:\n{w.node.log()}")
    assert not any("Traceback" in line for line in w.node.lines), w.node.log()
    w.assert_alive()
    w.honest_sync("after-maxed")


# --- a peer that stops reading does not hold the node's stop -----------------------------
def test_a_peer_that_never_reads_does_not_keep_the_node_from_stopping(world):
    """Saying bye waits for room in the connection's buffer; a peer that reads nothing
    never makes any, and the node must stop anyway (a service stop, a quit)."""
    big = os.urandom(BLOCK_SIZE * 128)  # 16 MiB: more than every buffer on the way

    def prepare(share: Path, sentinel: Path) -> None:
        (share / "big.bin").write_bytes(big)

    w = world(prepare)

    async def clog():
        s = await hostile.connect(w.node.port, hostile.new_identity(w.tmp), name="clog",
                                  pump=False)  # reads nothing, ever
        await s.send_start()
        items = [("big.bin", i * BLOCK_SIZE, BLOCK_SIZE) for i in range(128)]
        hashes = {it: block_hash(big[it[1]: it[1] + it[2]]) for it in items}
        for k in range(0, 128, 16):
            await s.request(items[k: k + 16], hashes)
        async def pings():  # it seems alive: the node hears from it, all along
            with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
                while True:
                    await s.send({"t": "ping"})
                    await asyncio.sleep(0.5)

        pinger = asyncio.create_task(pings())
        await asyncio.sleep(2.0)  # the node answers until its buffers are full
        started = time.monotonic()
        rc = await asyncio.to_thread(w.node.stop)
        took = time.monotonic() - started
        pinger.cancel()
        await s.close()
        return rc, took

    rc, took = run(clog())
    assert rc == 0, w.node.log()
    assert took < 8, w.node.log()
