"""A malicious peer for integration tests, built from the project's own net modules.

It holds a fresh device identity, opens TLS connections to a real `run` node, can
complete the handshake (or break it on purpose), announces whatever index entries a
test wants, answers the node's block requests from a path -> bytes map (over the
peer connection, or over data links it dials when the node asks for them), and sends
its own block requests. Everything the node sends is recorded.

On the LAN side it captures discovery packets, replays them from another loopback
address, forges tagged ones, and listens where it announced (a wrong-key handshake
that counts how often a node dials it). Everything stays on 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import ssl
import stat
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from app.core.hashing import block_hash, file_hash_from_blocks, link_hash
from app.core.model import BLOCK_SIZE, FileEntry, Kind
from app.net import datalink, discovery, framing, identity
from app.net.handshake import PeerInfo, handshake
from tests.procs import SECRET

HOST = "127.0.0.1"
# newer than any file a test writes, so the node always wants our version
FUTURE_NS = 4_000_000_000 * 10**9


def new_identity(base: Path) -> identity.Identity:
    return identity.load_or_create(base / f"evil-id-{uuid.uuid4().hex[:8]}")


# --- entries -------------------------------------------------------------------------
def blocks_of(data: bytes) -> bytes:
    return b"".join(block_hash(data[i : i + BLOCK_SIZE]) for i in range(0, len(data), BLOCK_SIZE))


def file_entry(path: str, data: bytes, device: str, counter: int = 1, **kw) -> FileEntry:
    blocks = blocks_of(data)
    kw.setdefault("mtime_ns", FUTURE_NS)
    kw.setdefault("hash", file_hash_from_blocks(blocks))
    kw.setdefault("seq", min(counter, 2**62))
    return FileEntry(path, Kind.FILE, size=len(data), blocks=blocks,
                     version={device: counter}, modified_by=device, **kw)


def dir_entry(path: str, device: str, counter: int = 1) -> FileEntry:
    return FileEntry(path, Kind.DIR, mode=0o755, mtime_ns=FUTURE_NS, version={device: counter},
                     modified_by=device, seq=counter)


def link_entry(path: str, target: str, device: str, counter: int = 1, **kw) -> FileEntry:
    kw.setdefault("hash", link_hash(target))
    return FileEntry(path, Kind.LINK, target=target, mtime_ns=FUTURE_NS,
                     version={device: counter}, modified_by=device, seq=counter, **kw)


# --- raw connections -----------------------------------------------------------------
_sources = itertools.count()


def new_source() -> str:
    """A loopback address (127.1.x.y) no other connection of this process came from.

    The node's gate budgets and reports per source address: an attack that must be
    told apart from the others, or from the honest peers on 127.0.0.1, gets its own.
    """
    n = next(_sources)
    return f"127.1.{n // 254 % 254 + 1}.{n % 254 + 1}"


async def open_tls(port: int, ident: identity.Identity, source: str | None = None):
    return await asyncio.open_connection(HOST, port, ssl=identity.client_context(ident),
                                         server_hostname=None,
                                         local_addr=(source, 0) if source else None)


def local_address(writer: asyncio.StreamWriter) -> str:
    host, port = writer.get_extra_info("sockname")[:2]
    return f"{host}:{port}"


async def drain_frames(reader: asyncio.StreamReader, timeout: float = 3.0) -> list:
    """Every frame the node still sends until it hangs up (or `timeout` passes).

    A frame that does not parse is recorded as the FrameError itself.
    """
    frames: list = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while True:
                try:
                    frames.append(await framing.read_message(reader))
                except framing.FrameError as e:
                    frames.append(e)
                    break
                except (EOFError, ConnectionError, ssl.SSLError, OSError):
                    break
    return frames


async def read_until_eof(reader: asyncio.StreamReader, timeout: float = 3.0) -> bytes:
    """Raw bytes until the node closes; raises TimeoutError if it keeps it open."""
    out = bytearray()
    async with asyncio.timeout(timeout):
        while True:
            try:
                chunk = await reader.read(65536)
            except (ConnectionError, ssl.SSLError, OSError):
                break
            if not chunk:
                break
            out += chunk
    return bytes(out)


def close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.transport.abort()


# --- an authenticated session ---------------------------------------------------------
@dataclass
class Session:
    """One authenticated connection; a background task reads and answers the node."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    ident: identity.Identity
    info: PeerInfo
    name: str
    serve: dict[str, bytes] = field(default_factory=dict)  # what we answer "req" with
    received: list[dict] = field(default_factory=list)
    requests: list[list] = field(default_factory=list)  # every item the node asked for
    answers: dict[int, bytes | None] = field(default_factory=dict)  # our req rid -> data
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end_reason: str = ""
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _rids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _task: asyncio.Task | None = None
    _seq: int = 0
    silent: bool = False  # answer pings but never the node's block requests
    # Data links (app/net/datalink.py): `links` says in our start that we have them, and
    # when the node asks, we dial that many and answer its requests there from `serve`.
    links: int = 0
    link_requests: list[list] = field(default_factory=list)  # items asked over links

    @property
    def device(self) -> str:
        return self.ident.device_id

    def start_pump(self) -> None:
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            while True:
                msg = await framing.read_message(self.reader)
                self.received.append(msg)
                t = msg["t"]
                if t == "ping":
                    await self.send({"t": "pong"})
                elif t == "req" and self.silent:
                    self.requests.extend(msg["items"])
                elif t == "req":
                    await self._answer(msg["items"])
                elif t == "links" and self.links:
                    asyncio.create_task(self._open_links())
                elif t == "data":
                    for rid, data in msg["items"]:
                        self.answers[rid] = data
                self._changed.set()
        except (EOFError, ConnectionError, ssl.SSLError, OSError) as e:
            self.end_reason = f"closed: {e!r}"
        except framing.FrameError as e:
            self.end_reason = f"bad frame from node: {e}"
        finally:
            self.ended.set()
            self._changed.set()

    async def _answer(self, items: list) -> None:
        out = []
        for rid, path, offset, size, _h in items:
            self.requests.append([rid, path, offset, size, _h])
            data = self.serve.get(path)
            out.append([rid, None if data is None else data[offset : offset + size]])
        await self.send({"t": "data", "items": out})

    async def send(self, msg: dict) -> None:
        await framing.write_message(self.writer, msg)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_start(self) -> None:
        links = {"links": 1} if self.links else {}
        await self.send({"t": "start", "index_id": b"\0" * 16, "have": 0, **links})

    def node_token(self) -> bytes | None:
        """The data-link token the node gave us in its start."""
        return next((m.get("token") for m in self.received if m["t"] == "start"), None)

    def dial_link(self, port: int, pull: bool, token: bytes | None = None) -> datalink.TLSLink:
        """A data link to the node (blocking), with its token or the one given."""
        return datalink.dial(HOST, port, identity.client_context(self.ident),
                             self.info.cert_der, token or self.node_token(), pull, 5.0)

    async def _open_links(self) -> None:
        port = self.writer.get_extra_info("peername")[1]
        for _ in range(self.links):
            sock = await asyncio.to_thread(self.dial_link, port, False)
            threading.Thread(target=self._serve_link, args=(sock,), daemon=True).start()
        await self.send({"t": "links", "made": self.links})

    def _serve_link(self, sock: datalink.TLSLink) -> None:
        """Answer the node's requests on one link from `serve`, whatever it holds."""
        with contextlib.suppress(Exception), sock:
            while (items := datalink.read_request(sock)) is not None:
                if self.silent:  # reads every request, answers none
                    self.link_requests.extend(items)
                    continue
                sizes, pieces = [], []
                for rid, path, offset, size, h in items:
                    self.link_requests.append([rid, path, offset, size, h])
                    piece = self.serve.get(path, b"")[offset : offset + size]
                    if len(piece) == size:
                        sizes.append((rid, size))
                        pieces.append(piece)
                    else:
                        sizes.append((rid, None))
                datalink.send_answer(sock, sizes, memoryview(b"".join(pieces)))

    async def announce(self, entries: list[FileEntry], serve: dict[str, bytes] | None = None,
                       index_id: bytes = b"\x01" * 16) -> None:
        self.serve.update(serve or {})
        self._seq = max([self._seq, *(e.seq for e in entries)])
        await self.send({"t": "index", "index_id": index_id,
                         "entries": [e.to_wire() for e in entries],
                         "max_seq": self._seq, "more": False})

    async def request(self, items: list[tuple[str, int, int]],
                      hashes: dict[tuple, bytes] | None = None) -> dict[int, tuple]:
        """Ask the node for (path, offset, size) blocks; rid -> the item asked.

        A request names the hash it expects (the node serves nothing else); `hashes`
        gives it for some items, the others ask with a hash no data has.
        """
        asked = {}
        wire = []
        for path, offset, size in items:
            rid = next(self._rids)
            asked[rid] = (path, offset, size)
            h = (hashes or {}).get((path, offset, size), b"\0" * 32)
            wire.append([rid, path, offset, size, h])
        await self.send({"t": "req", "items": wire})
        return asked

    async def wait_for(self, pred, timeout: float = 5.0) -> bool:
        """Until pred() is true (checked after every message); False on timeout/end."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not pred():
            if self.ended.is_set():
                return bool(pred())
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.1))
        return True

    def types(self) -> list[str]:
        return [m["t"] for m in self.received]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        close(self.writer)


async def connect(port: int, ident: identity.Identity, *, secret: str = SECRET,
                  name: str = "evil", pump: bool = True, source: str | None = None) -> Session:
    reader, writer = await open_tls(port, ident, source)
    info = await handshake(reader, writer, ident, secret, name, initiator=True)
    s = Session(reader, writer, ident, info, name)
    if pump:
        s.start_pump()
    return s


# --- the file system around the node's folder ---------------------------------------
def snapshot(root: Path, skip: Path) -> dict[str, tuple]:
    """Everything under root except `skip`: type, size, mtime, content or link target."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == skip.parent:
            dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            if p == skip:
                continue
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", st.st_mtime_ns, stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("file", st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode),
                            p.read_bytes())
    st = os.lstat(root)
    out["."] = ("dir", st.st_mtime_ns, stat.S_IMODE(st.st_mode))
    return out


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


# --- the LAN: what a stranger can capture, replay and forge ----------------------------
LOOPBACK_BROADCAST = "127.255.255.255"


class Capture:
    """Records every UDP packet sent to a discovery port on this machine, as nodes hear it.

    Bound like a node (SO_REUSEPORT), so it receives the same broadcasts; a stranger on
    the LAN gets exactly these bytes.
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.sock.bind(("0.0.0.0", port))
        self.sock.settimeout(0.2)
        self.packets: list[tuple[bytes, str]] = []  # (bytes, source IP)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65536)
            except (TimeoutError, OSError):
                continue
            self.packets.append((data, addr[0]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


class Replayer:
    """Sends the given packets from `source_ip` to the loopback broadcast, again and again."""

    def __init__(self, port: int, source_ip: str, packets: list[bytes],
                 interval: float = 0.2) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.sock.bind((source_ip, 0))
        self.port, self.packets, self.interval = port, packets, interval
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for p in self.packets:
                with contextlib.suppress(OSError):
                    self.sock.sendto(p, (LOOPBACK_BROADCAST, self.port))
                    self.sent += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def forge_announcement(secret: str, **fields) -> bytes:
    """A well-tagged announcement saying whatever `fields` say (needs the share key)."""
    share_id, tag_key = discovery.share_keys(secret)
    return discovery.encode({"magic": discovery.MAGIC, "share": share_id, **fields}, tag_key)


class FakeListener:
    """A TLS listener at `host` that answers every dial with the handshake, under a wrong
    key: what an attacker runs at the address it announces, to get one online guess per
    dial. Counts the dials (in its own thread and event loop)."""

    def __init__(self, host: str, base: Path, guess: str = "attacker's guess") -> None:
        self.host, self.guess = host, guess
        self.ident = new_identity(base)
        self.dials: list[float] = []  # time.monotonic() of each accepted connection
        self.port = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.host, 0, ssl=identity.server_context(self.ident))
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.dials.append(time.monotonic())
        with contextlib.suppress(Exception):
            await handshake(reader, writer, self.ident, self.guess, "phantom", initiator=False,
                            timeout=5.0)
        close(writer)

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


# --- floods of unauthenticated connections ----------------------------------------------
FLOOD_KINDS = ("raw", "tls-stall", "tls-idle")


async def flood(port: int, count: int, kind: str, sources: list[str], duration: float,
                ident: identity.Identity | None = None, pause: float = 0.5) -> dict:
    """Keep `count` connections of one kind open to the node for `duration` seconds.

    raw: TCP, never a byte; tls-stall: the first 100 bytes of a 512-byte ClientHello
    record, then nothing; tls-idle: TLS set up, then nothing (needs `ident`). Each
    connection the node closes (or refuses) is opened again after `pause` s. Returns
    counts: opened (the node accepted the TCP connection), refused (it turned it away
    before or during TLS) and closed (it closed one we held).
    """
    stats = {"opened": 0, "refused": 0, "closed": 0}
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + duration

    async def hold(i: int) -> None:
        source = sources[i % len(sources)]
        while loop.time() < stop_at:
            writer = None
            try:
                async with asyncio.timeout_at(stop_at):
                    if kind == "tls-idle":
                        reader, writer = await open_tls(port, ident, source)
                    else:
                        reader, writer = await asyncio.open_connection(
                            HOST, port, local_addr=(source, 0))
                        if kind == "tls-stall":
                            writer.write(b"\x16\x03\x01\x02\x00" + b"\x01" * 100)
                    stats["opened"] += 1
                    await reader.read()
                    stats["closed"] += 1
            except TimeoutError:
                break
            except (OSError, ssl.SSLError, EOFError):
                stats["refused"] += 1
            finally:
                if writer is not None:
                    close(writer)
            await asyncio.sleep(pause)

    await asyncio.gather(*(hold(i) for i in range(count)))
    return stats


def raise_fd_limit() -> int:
    """This process's soft descriptor limit raised to its hard one (a flood needs many)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def start_flood(port: int, count: int, kind: str, sources: list[str], duration: float,
                base: Path):
    """A flood in its own process (its own descriptors, its own core); see `flood`.

    Its stdout is one JSON line of the counts once the flood ends.
    """
    import subprocess
    import sys

    from tests.procs import REPO, env

    return subprocess.Popen(
        [sys.executable, "-m", "tests.hostile", "flood", str(port), str(count), kind,
         ",".join(sources), str(duration), str(base)],
        cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def vm_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def _main(argv: list[str]) -> None:
    import json

    if argv[:1] != ["flood"]:
        raise SystemExit("usage: python -m tests.hostile flood PORT COUNT KIND SOURCES S BASE")
    port, count, kind, sources, duration, base = argv[1:7]
    raise_fd_limit()
    ident = new_identity(Path(base)) if kind == "tls-idle" else None
    stats = asyncio.run(flood(int(port), int(count), kind, sources.split(","),
                              float(duration), ident))
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    import sys

    _main(sys.argv[1:])


# --- a member that tries to take the node down (floods, junk) ----------------------------
def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB: its memory now and its peak so far."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found["VmRSS"], found["VmHWM"]


def req_frame(items: list[list]) -> bytes:
    """One encoded `req` frame, built once and sent many times by a flood."""
    return framing.encode_message({"t": "req", "items": items})


async def discard(reader: asyncio.StreamReader, counter: list[int]) -> None:
    """Read and drop whatever the node sends, as fast as it comes; counter[0] += bytes."""
    with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
        while chunk := await reader.read(1 << 20):
            counter[0] += len(chunk)


async def flood_frames(writer: asyncio.StreamWriter, frames: list[bytes],
                       seconds: float) -> int:
    """Send `frames` round and round for `seconds`; returns how many went out.

    A node that stops reading (back-pressure) makes drain() wait: the flood then
    simply sends less, which is what back-pressure is for.
    """
    sent = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError, OSError):
        async with asyncio.timeout(seconds):
            while loop.time() < deadline:
                writer.write(frames[sent % len(frames)])
                await writer.drain()
                sent += 1
    return sent


def junk_devices(n: int, tag: str = "J") -> list[str]:
    """n device IDs no device has, shaped like real ones (39 characters)."""
    return [f"{tag}{i:06d}-AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD"[:39] for i in range(n)]


def junk_wire(path: str, device: str, seq: int, vector: dict[str, int] | None = None,
              deleted: bool = True, size: int = 0) -> list:
    """One junk entry as the wire has it: a deletion (or a file nobody can send)."""
    blocks = b"" if deleted else b"\x05" * 32 * -(-size // BLOCK_SIZE)
    return FileEntry(path, Kind.FILE, size=0 if deleted else size, mtime_ns=FUTURE_NS,
                     hash=b"" if deleted else b"\x06" * 32, blocks=blocks,
                     version=vector or {device: seq}, modified_by=device, deleted=deleted,
                     seq=seq).to_wire()


async def send_index_batches(s: Session, batches, index_id: bytes = b"\x01" * 16) -> int:
    """Send each list of wire entries as one `index` frame; returns the entries sent."""
    sent = 0
    for entries in batches:
        s._seq += len(entries)
        await s.send({"t": "index", "index_id": index_id, "entries": entries,
                      "max_seq": s._seq})
        sent += len(entries)
    return sent


def index_bytes(config: Path) -> int:
    """The size of every index database (with its WAL) under a config dir."""
    return sum(p.stat().st_size for p in config.rglob("*")
               if p.is_file() and (p.suffix == ".db" or p.name.endswith((".db-wal", ".db-shm"))))


def repeated_entry(path: str, block: bytes, count: int, device: str,
                   counter: int = 1) -> FileEntry:
    """A file made of `count` copies of one block, announced without building it."""
    blocks = block_hash(block) * count
    return FileEntry(path, Kind.FILE, size=len(block) * count, mtime_ns=FUTURE_NS,
                     hash=file_hash_from_blocks(blocks), blocks=blocks,
                     version={device: counter}, modified_by=device, seq=counter)


def temp_files(root: Path) -> list[str]:
    """Our temp files anywhere under root (relative paths, sorted)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob(".p2psync-*.tmp"))
