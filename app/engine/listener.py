"""Accepting peers: plain TCP first, the gate's verdict, then TLS and the handshake.

asyncio.start_server(ssl=...) starts TLS on every connection it accepts, before our
code sees it: each one that never finishes costs a descriptor and about 300 KiB (the
SSL protocol's 256 KiB read buffer, OpenSSL's state, a task) for 60 s, with no bound
on how many; and when descriptors run out, its accept loop logs a traceback per try.
So this module runs its own accept loop on a non-blocking socket:

1. accept, ask the gate (app/net/gate.py); a refused connection is closed at once,
   after a 7-byte TLS alert that tells an honest client why (access_denied: locked out
   after failed attempts; user_canceled: too many at once), with no TLS work done;
2. an admitted one waits, as a bare socket (no buffers, no SSL object), for its first
   bytes; only then does TLS start (a data link's preamble, app/net/datalink.py, sends
   it to a thread of its own for TLS and its token instead: the gate judges it the same);
3. TLS and the handshake together must end within HANDSHAKE_TIMEOUT; the outcome is
   charged to the source (wrong key, junk) and the refusal reported: per address as
   the gate says, and at most REPORTS_PER_MINUTE lines in all, then one count;
4. out of descriptors: the reserve descriptor is given up to accept and close one
   waiting connection, and one line a minute says so (never a traceback); the soft
   descriptor limit is raised to the hard one at start, and the gate's caps keep the
   connections we hold far below it.

After a flood (many connections, none pending any more) freed memory is handed back
to the kernel (malloc.trim): app/engine/malloc.py keeps freed buffers on purpose for
block transfers, which would otherwise keep a flood's memory for good.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import os
import socket
import ssl
import sys
import time
from asyncio import sslproto
from collections.abc import Awaitable, Callable

from app.engine import malloc
from app.net import datalink
from app.net import gate as g
from app.net.handshake import HANDSHAKE_MAX_FRAME, HandshakeError
from app.net.peertext import shown_address, shown_name

log = logging.getLogger(__name__)

BACKLOG = 1024  # absorbs a burst while the accept loop refuses connections
ACCEPT_BATCH = 64  # connections accepted per wake-up before others get the loop
TICK = 1.0  # how often refusals are summarised and a flood's end is looked for
TRIM_AFTER = 256  # connections accepted since the last trim that make a flood
SHUTDOWN_TIMEOUT = 5.0  # how long a closing TLS connection waits for the peer's reply
FD_LIMIT_CAP = 65536  # raise the soft descriptor limit this far at most
FD_KEEP = 128  # descriptors kept for everything but unfinished handshakes
NO_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
QUIET_EVERY = 60.0
REPORTS_PER_MINUTE = 30  # refusal lines (and events) a minute, over all addresses

# TLS alert records (content type 21, TLS 1.2 record version, 2 bytes: fatal, code)
ALERT_ACCESS_DENIED = bytes([21, 3, 3, 0, 2, 2, 49])  # locked out after failed attempts
ALERT_USER_CANCELED = bytes([21, 3, 3, 0, 2, 2, 90])  # too many handshakes at once
ALERTS = {g.THROTTLED: ALERT_ACCESS_DENIED, g.BUSY: ALERT_USER_CANCELED}

# (reader, writer, timeout, on_reject): the handshake; on_reject(error) is called with
# a verdict of ours before the peer is told of it
Authenticate = Callable[[asyncio.StreamReader, asyncio.StreamWriter, float,
                         Callable[[HandshakeError], None]], Awaitable[object]]
Adopt = Callable[[asyncio.StreamReader, asyncio.StreamWriter, object, str], Awaitable[None]]
# A data link (app/net/datalink.py): (socket, timeout) -> whose it is, or HandshakeError;
# the socket is the link's from then on. Then (that, address): put it to work.
AcceptLink = Callable[[socket.socket, float], Awaitable[object]]
AdoptLink = Callable[[object, str], Awaitable[None]]
Emit = Callable[[str, dict], None]

OUTCOMES = {"auth": g.WRONG_KEY, "timeout": g.TIMEOUT, "closed": g.CLOSED}


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE towards the hard one; returns (soft, hard) after.

    A node holds few descriptors (the gate caps the strangers), but files, the index and
    the peers all need some; a desktop's 1,024 is a low ceiling. Capped at FD_LIMIT_CAP.
    (watchdog's inotify observer uses select(), which fails on a descriptor numbered
    1,024 or more: the gate keeps the numbers low, whatever the limit.)
    """
    if sys.platform == "win32":  # no such limit to raise there
        return (0, 0)
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = FD_LIMIT_CAP if hard == resource.RLIM_INFINITY else min(hard, FD_LIMIT_CAP)
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
    return (soft, hard)


def _fd_limit() -> int:
    if sys.platform == "win32":
        return 0
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class _Quiet:
    """At most one log line per key per QUIET_EVERY seconds, with the count in between."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int]] = {}

    def warn(self, key: str, text: str) -> None:
        now = time.monotonic()
        last, skipped = self._last.get(key, (float("-inf"), 0))
        if now - last < QUIET_EVERY:
            self._last[key] = (last, skipped + 1)
            return
        more = f" ({skipped} more since the last such line)" if skipped else ""
        log.warning("%s%s", text, more)
        self._last[key] = (now, 0)


class Listener:
    def __init__(self, ctx: ssl.SSLContext, authenticate: Authenticate, adopt: Adopt,
                 emit: Emit, gate: g.Gate | None = None, accept_link: AcceptLink | None = None,
                 adopt_link: AdoptLink | None = None) -> None:
        self.ctx = ctx
        self.authenticate = authenticate
        self.adopt = adopt
        self.accept_link = accept_link
        self.adopt_link = adopt_link
        self.emit = emit
        self.gate = gate or g.Gate()
        self.address: tuple[str, int] | None = None
        self._sock: socket.socket | None = None
        self._reserve: int | None = None
        self._tasks: set[asyncio.Task] = set()
        self._ticker: asyncio.Task | None = None
        self._quiet = _Quiet()
        self._accepted_since_trim = 0
        self._paused = False
        self._shown = 0  # notices reported in this minute
        self._hidden: collections.Counter = collections.Counter()  # source -> refusals
        self._names: dict[str, str] = {}  # refused source -> the name its hello claimed

    # --- lifecycle ---------------------------------------------------------------------
    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on host:port; raises OSError as socket.bind/listen do."""
        soft = raise_fd_limit()[0]
        if soft:  # a low limit that cannot be raised: hold fewer strangers at once
            self.gate.max_pending = max(4, min(self.gate.max_pending, (soft - FD_KEEP) // 2))
        infos = await asyncio.get_running_loop().getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        infos.sort(key=lambda info: info[0] != socket.AF_INET)  # a name: its IPv4 first
        family, type_, proto, _, addr = infos[0]
        sock = socket.socket(family, type_, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._take_reserve()
        self.address = sock.getsockname()[:2]
        self._resume()
        self._ticker = asyncio.create_task(self._tick())
        return self.address

    def close(self) -> None:
        """Stop accepting and end every handshake in progress."""
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._ticker is not None:
            self._ticker.cancel()
        for slot in list(self.gate.pending):
            self.gate.release(slot)
            if callable(slot.cancel):
                slot.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None

    async def wait_closed(self) -> None:
        for task in [*self._tasks, *([self._ticker] if self._ticker else [])]:
            with contextlib.suppress(BaseException):
                await task

    # --- accepting -----------------------------------------------------------------------
    def _resume(self) -> None:
        self._paused = False
        if self._sock is not None:
            asyncio.get_running_loop().add_reader(self._sock.fileno(), self._on_readable)

    def _pause(self, seconds: float) -> None:
        if self._sock is not None and not self._paused:
            self._paused = True
            loop = asyncio.get_running_loop()
            loop.remove_reader(self._sock.fileno())
            loop.call_later(seconds, self._resume)

    def _on_readable(self) -> None:
        for _ in range(ACCEPT_BATCH):
            if self._sock is None:
                return
            try:
                conn, addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in NO_FDS:
                    self._out_of_fds(e)
                elif e.errno not in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    self._quiet.warn("accept", f"cannot accept connections: {e}")
                    self._pause(1.0)
                return
            self._accepted_since_trim += 1
            self._admit(conn, addr)

    def _admit(self, conn: socket.socket, addr: tuple) -> None:
        conn.setblocking(False)
        host, port = addr[0], addr[1]
        now = time.monotonic()
        verdict = self.gate.admit(host, now)
        if verdict.slot is None:
            _turn_away(conn, ALERTS.get(verdict.reason))
            self._report(verdict.notice, shown_address(host, port), "")
            return
        if verdict.victim is not None:
            self._evict(verdict.victim, now)
        pending = _Pending(conn, shown_address(host, port))
        verdict.slot.cancel, verdict.slot.peer = pending.end, pending.address
        pending.task = asyncio.create_task(self._serve(pending, verdict.slot))
        self._tasks.add(pending.task)
        pending.task.add_done_callback(self._tasks.discard)

    def _evict(self, victim: g.Slot, now: float) -> None:
        """End a pending handshake to make room; charged and reported here, at once."""
        self.gate.evict(victim)
        notice = self.gate.finish(victim, g.EVICTED, now)
        if callable(victim.cancel):
            victim.cancel()
        self._report(notice, victim.peer, "")

    def _out_of_fds(self, e: OSError) -> None:
        """Make room for the next connection, and say so quietly (one line a minute).

        The handshake stalled the longest is ended, so a new peer (perhaps an honest
        one) can come in; with none pending, the reserve descriptor is given up to accept
        and close one waiting connection, so that it fails at once instead of timing out.
        """
        soft = _fd_limit()
        self._quiet.warn("fds", f"out of file descriptors ({e.strerror}; limit {soft}): "
                         "unfinished connections are closed to make room")
        victim = self.gate.stalled(time.monotonic())
        if victim is not None:
            self._evict(victim, time.monotonic())
            self._pause(0.05)  # its descriptor is closed when its task next runs
            return
        if self._reserve is None or self._sock is None:
            self._pause(1.0)
            return
        os.close(self._reserve)
        self._reserve = None
        try:
            conn, _ = self._sock.accept()
            conn.close()
        except OSError:
            self._pause(1.0)
        self._take_reserve()

    def _take_reserve(self) -> None:
        if self._reserve is None:
            with contextlib.suppress(OSError):
                self._reserve = os.open(os.devnull, os.O_RDONLY)

    # --- one admitted connection ------------------------------------------------------
    async def _serve(self, pending: _Pending, slot: g.Slot) -> None:
        pending.started = True
        conn, address = pending.conn, pending.address
        writer: asyncio.StreamWriter | None = None
        judged: list[tuple[str, str, g.Notice | None]] = []
        name = ""  # what the peer's hello called it, for the report

        def judge(e: HandshakeError) -> None:
            """Our verdict is charged before the peer hears it: its next try sees it."""
            nonlocal name
            outcome = OUTCOMES.get(e.code, g.PROTOCOL)
            name = shown_name(e.peer.name) if getattr(e, "peer", None) is not None else ""
            judged.append((outcome, str(e), self.gate.finish(slot, outcome, time.monotonic())))

        outcome, detail = g.TIMEOUT, ""
        result = None
        link = False
        try:
            async with asyncio.timeout(g.HANDSHAKE_TIMEOUT):
                await _readable(conn)
                slot.advance(g.TLS, time.monotonic())
                if self.accept_link is not None and await _is_link(conn):
                    raw, conn, link = conn, None, True  # the link's thread owns it now
                    result = await self.accept_link(raw, g.HANDSHAKE_TIMEOUT)
                else:
                    reader, writer = await self._start_tls(conn)
                    conn = None
                    slot.advance(g.HANDSHAKE, time.monotonic())
                    result = await self.authenticate(reader, writer, g.HANDSHAKE_TIMEOUT,
                                                     judge)
            outcome = g.OK
        except HandshakeError as e:
            outcome, detail = OUTCOMES.get(e.code, g.PROTOCOL), str(e)
        except TimeoutError:
            outcome = g.TIMEOUT
            detail = f"did not finish the handshake within {g.HANDSHAKE_TIMEOUT:g} s"
        except asyncio.CancelledError:
            _discard(conn, writer)
            if not slot.evicted:  # the node stops: no verdict on the peer
                self.gate.release(slot)
                raise
            asyncio.current_task().uncancel()  # made room: charged and reported already
            return
        except (ConnectionError, EOFError):
            outcome, detail = g.CLOSED, "hung up before TLS was set up"
        except (ssl.SSLError, OSError) as e:
            outcome, detail = g.PROTOCOL, f"TLS failed ({_ssl_reason(e)})"
        except Exception as e:  # noqa: BLE001 - a stranger must never crash the node
            outcome, detail = g.PROTOCOL, f"the connection failed ({e!r})"
        if judged:
            outcome, detail, notice = judged[0]
        else:
            notice = self.gate.finish(slot, outcome, time.monotonic())
        if outcome != g.OK:
            _discard(conn, writer)
            if name:
                self._names.pop(slot.source, None)
                self._names[slot.source] = name
                while len(self._names) > g.MAX_SOURCES:
                    del self._names[next(iter(self._names))]
            self._report(notice, address, detail, name)
            return
        if link:
            await self.adopt_link(result, address)
        else:
            await self.adopt(reader, writer, result, address)

    async def _start_tls(self, conn: socket.socket):
        """TLS on an accepted socket, as streams; the read buffer grows only once it is up."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=HANDSHAKE_MAX_FRAME, loop=loop)
        protocol = _StreamProtocol(reader, loop=loop)
        done = loop.create_future()
        tls = _LeanSSLProtocol(loop, protocol, self.ctx, done, server_side=True,
                               ssl_handshake_timeout=g.HANDSHAKE_TIMEOUT + 1,
                               ssl_shutdown_timeout=SHUTDOWN_TIMEOUT)
        raw, _ = await loop.connect_accepted_socket(lambda: tls, conn)
        try:
            await done
        except BaseException:
            raw.abort()
            raise
        writer = asyncio.StreamWriter(protocol.transport, protocol, reader, loop)
        return reader, writer

    # --- telling the user ------------------------------------------------------------------
    def recent(self, now: float) -> list[dict]:
        """The gate's recently refused sources, each with the name its device claimed."""
        return [{**r, "name": self._names.get(r["address"], "")} for r in self.gate.recent(now)]

    def _report(self, notice: g.Notice | None, address: str, detail: str,
                name: str = "") -> None:
        """Log and emit a notice; past REPORTS_PER_MINUTE, only count it (a flood from
        many addresses would otherwise still make a line per address)."""
        if notice is None:
            return
        if self._shown >= REPORTS_PER_MINUTE:
            self._hidden[notice.source] += notice.count
            return
        self._shown += 1
        log.warning("%s", notice.text(address, detail, name))
        self.emit("auth_refused", notice.event(name))

    def _report_hidden(self) -> None:
        if self._hidden:
            count, sources = sum(self._hidden.values()), len(self._hidden)
            text = (f"refused {count} more connection(s) from {sources} other address(es) "
                    "in the last minute (not listed one by one: too many)")
            log.warning("%s", text)
            self.emit("auth_refused", {"address": "", "reason": "many", "count": count,
                                       "locked_for": 0, "text": text})
        self._shown, self._hidden = 0, collections.Counter()

    async def _tick(self) -> None:
        window = time.monotonic()
        while True:
            await asyncio.sleep(TICK)
            if time.monotonic() - window >= g.REPORT_EVERY:
                window = time.monotonic()
                self._report_hidden()
            for notice in self.gate.due(time.monotonic()):
                self._report(notice, "", "")
            if not self.gate.pending and self._accepted_since_trim >= TRIM_AFTER:
                log.debug("a flood of %d connections is over: trimming freed memory",
                          self._accepted_since_trim)
                self._accepted_since_trim = 0
                await asyncio.to_thread(malloc.trim)


class _Pending:
    """One admitted connection until its handshake ends; `end` is the gate slot's cancel."""

    def __init__(self, conn: socket.socket, address: str) -> None:
        self.conn = conn
        self.address = address
        self.task: asyncio.Task | None = None
        self.started = False

    def end(self) -> None:
        """Stop the handshake. A task that has not run yet never will, and never closes
        its socket: that is done here (nothing is registered with the loop for it yet)."""
        if self.task is not None:
            self.task.cancel()
        if not self.started:
            self.conn.close()


class _LeanSSLProtocol(sslproto.SSLProtocol):
    """asyncio's TLS protocol, with a small read buffer until the peer has finished TLS.

    asyncio gives every TLS connection a 256 KiB read buffer from the start: most of
    what a stranger's unfinished handshake costs us. A handshake needs one record at a
    time (16 KiB at most); the full buffer, which the block transfers want, comes once
    TLS is up.
    """

    max_size = 17 * 1024  # one TLS record and its header

    def _on_handshake_complete(self, handshake_exc) -> None:
        if handshake_exc is None:
            self.max_size = sslproto.SSLProtocol.max_size  # get_buffer grows it on next read
        super()._on_handshake_complete(handshake_exc)


class _StreamProtocol(asyncio.StreamReaderProtocol):
    """Keeps the TLS transport it is given, to build the StreamWriter on."""

    transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        super().connection_made(transport)


async def _readable(conn: socket.socket) -> None:
    """Until the peer sends its first bytes (or hangs up): no buffer is made before."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    fd = conn.fileno()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def _is_link(conn: socket.socket) -> bool:
    """Whether the connection starts with a data link's preamble (looked at, not read)."""
    while True:
        try:
            peeked = conn.recv(len(datalink.PREAMBLE), socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            peeked = b"?"  # nothing after all: not a link's preamble
        except OSError:
            return False
        if not peeked:
            return False  # hung up: TLS will say so
        state = datalink.preamble_state(peeked)
        if state is not None:
            return state
        await asyncio.sleep(0.01)  # a preamble cut in two: the rest is on its way


def _turn_away(conn: socket.socket, alert: bytes | None) -> None:
    """Close a refused connection; the alert first, so an honest client can say why."""
    with contextlib.suppress(OSError):
        if alert is not None:
            with contextlib.suppress(BlockingIOError):
                conn.recv(4096)  # a ClientHello already here would turn our close into a reset
            conn.send(alert)
    conn.close()


def _discard(conn: socket.socket | None, writer: asyncio.StreamWriter | None) -> None:
    """Drop an unauthenticated connection now: no TLS goodbye that could keep it alive."""
    if writer is not None:
        writer.transport.abort()
    if conn is not None:
        conn.close()


def _ssl_reason(e: BaseException) -> str:
    if isinstance(e, ssl.SSLError):
        return e.reason or str(e)
    return getattr(e, "strerror", None) or str(e) or type(e).__name__
