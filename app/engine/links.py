"""The data links of one peer connection: who may open them, and the threads that run them.

See app/net/datalink.py for why links exist and how a link proves whose it is. Both
sides say in their `start` that they have links (`"links": VERSION`); the accepting
side adds the token. Links are opened when a large file is to be fetched, never
before (a `sync` with nothing to fetch opens none):

- the dialling side fetches: it dials LINKS links with `pull` True;
- the accepting side fetches: it sends `{"t": "links"}`, the dialling side dials
  LINKS links with `pull` False (it cannot be dialled: a `sync` does not listen) and
  then says how many it made (`{"t": "links", "made": N}`), so the wait ends at once.

Link handshakes go DIALS_AT_ONCE at a time per peer, and are tried again when the
peer's gate turned one away as busy: the gate lets only 4 handshakes of one address
be under way at once.

A peer without links (an older version), or links that cannot be made (a firewall, a
refusal), leave the peer connection to carry the blocks, as before: the puller asks
it for whatever the links did not bring. Every link closes with its connection.

Serving a link is a thread's loop: read a request (at most RUN_BLOCKS blocks), read
each block from a file we share (serving.OpenFiles, as on the peer connection:
every block hashed before it goes out), answer, read the next one. A peer that asks
faster than it reads is slowed down by TCP, and costs one buffer per link.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import mmap
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.core.index import Index
from app.engine.linkfetch import LINKS, RETRY, Fetcher
from app.engine.serving import OpenFiles
from app.net import datalink, framing, identity
from app.net.connection import PeerConnection
from app.net.handshake import HandshakeError

log = logging.getLogger(__name__)

VERSION = 1
DIAL_TIMEOUT = 5.0
WAIT_FOR_LINKS = 5.0  # how long the accepting side waits for the links it asked for
DIALS_AT_ONCE = 2  # link handshakes under way at once, per peer (its gate allows 4)
DIAL_TRIES = 3
BUSY_ALERT = "TLSV1_ALERT_USER_CANCELLED"  # the gate had too many handshakes of ours
LINK_ERRORS = (OSError, EOFError, datalink.LinkError, framing.FrameError)


class LinkHub:
    """The node's side of data links: a PeerLinks per connection, and links that come in."""

    def __init__(self, ident: identity.Identity, root: Path, index: Index,
                 rescan: Callable[[str], None]) -> None:
        self.identity = ident
        self.root = root
        self.index = index
        self.rescan = rescan  # on the loop only
        self.client_ctx = identity.client_context(ident)

    def for_connection(self, conn: PeerConnection) -> PeerLinks:
        loop = asyncio.get_running_loop()

        def rescan(rel: str) -> None:  # from a link's thread
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.rescan, rel)

        return PeerLinks(conn, self.client_ctx,
                         lambda items: OpenFiles(self.root, self.index, rescan, items))

    async def accept(self, raw: socket.socket, ctx: ssl.SSLContext, timeout: float,
                     candidates: list[PeerLinks]) -> tuple[PeerLinks, datalink.TLSLink, bool]:
        """TLS and the hello of a link that came in (on a thread); whose token it has.

        Raises HandshakeError, which the listener's gate counts as for a peer: a wrong
        token as a wrong key.
        """
        guard = raw.dup()  # to end, from here, a handshake the gate gives up on
        try:
            sock, token, pull = await in_thread(datalink.accept, raw, ctx, timeout,
                                                orphan=lambda found: found[0].close())
        except asyncio.CancelledError:
            with contextlib.suppress(OSError):
                guard.shutdown(socket.SHUT_RDWR)
            raise
        except TimeoutError:
            raise
        except (EOFError, ConnectionError) as e:
            raise HandshakeError("closed", "a data link closed before it was set up") from e
        except LINK_ERRORS as e:
            raise HandshakeError("protocol", f"a data link failed ({e})") from e
        finally:
            guard.close()
        for links in candidates:
            if links.owns(token):
                return links, sock, pull
        sock.close()
        raise HandshakeError("auth", "a data link with a token none of our connections gave")

    @staticmethod
    def adopt(found: tuple[PeerLinks, datalink.TLSLink, bool]) -> None:
        links, sock, pull = found
        if not links.accept(sock, pull):
            log.debug("a data link from %s was not wanted", links.conn.info.name)
            sock.close()


class PeerLinks:
    """The links of one peer connection, both ways."""

    def __init__(self, conn: PeerConnection, client_ctx: ssl.SSLContext,
                 open_files: Callable[[list], OpenFiles]) -> None:
        self.conn = conn
        self.client_ctx = client_ctx
        self.open_files = open_files  # safe to call from a link's thread
        self.token = secrets.token_bytes(datalink.TOKEN_LEN) if not conn.outgoing else None
        self.peer_token: bytes | None = None  # the one it gave us (we dialled it)
        self.peer_has_links = False
        self.fetcher = Fetcher(conn.device_id, conn.info.name, self._open, self._received,
                               conn.stalled_elsewhere)
        self._serving: set[datalink.TLSLink] = set()
        self._asked = False  # we asked it to dial links we fetch over, and wait for them
        self._dialled = asyncio.Event()  # it says it dialled them
        self._dial_slots = asyncio.Semaphore(DIALS_AT_ONCE)
        self._dialled_for_it = 0.0  # when we last dialled links it asked for
        self._tasks: set[asyncio.Task] = set()
        self._closed = False

    def start_fields(self) -> dict:
        """What our `start` says of links (an older peer ignores it)."""
        return {"links": VERSION, **({"token": self.token} if self.token else {})}

    def heard_start(self, msg: dict) -> None:
        self.peer_has_links = msg.get("links") == VERSION
        token = msg.get("token")
        if self.conn.outgoing and self.peer_has_links and isinstance(token, bytes) \
                and len(token) == datalink.TOKEN_LEN:
            self.peer_token = token

    def owns(self, token: bytes) -> bool:
        return self.token is not None and hmac.compare_digest(self.token, token)

    # --- fetching ----------------------------------------------------------------------
    async def _open(self) -> None:
        """Open the links we fetch over (Fetcher.ready calls this)."""
        if not self.peer_has_links or self._closed:
            return
        if self.conn.outgoing:
            for sock in await self._dial(pull=True, n=LINKS):
                if not self.fetcher.attach(sock):
                    sock.close()
        else:
            self._asked = True
            self._dialled.clear()
            self.conn.send_nowait({"t": "links"})
            try:
                async with asyncio.timeout(WAIT_FOR_LINKS):
                    await self._dialled.wait()
            except TimeoutError:
                pass
            finally:
                self._asked = False
        if self.fetcher.count:
            log.info("fetching from %s over %d data link(s)", self.conn.info.name,
                     self.fetcher.count)
        else:
            log.info("no data link to %s: blocks come over the peer connection",
                     self.conn.info.name)

    def _received(self, nbytes: int) -> None:
        self.conn.bytes_in += nbytes

    # --- links that come in ----------------------------------------------------------
    def accept(self, sock: datalink.TLSLink, pull: bool) -> bool:
        """A link dialled with our token; False (the caller closes it) when not wanted."""
        if self._closed:
            return False
        if pull:  # it fetches over this one: we serve
            if len(self._serving) >= LINKS:
                return False
            self._serve(sock, confirm=True)
            return True
        return self._asked and self.fetcher.attach(sock, confirm=True)

    # --- serving -----------------------------------------------------------------------
    def on_message(self, msg: dict) -> None:
        """A `links` message: a request from the side that accepted the connection, the
        answer (`made`: how many it dialled) from the side that dialled it."""
        if self.conn.outgoing:
            self._asked_for_links()
        elif isinstance(msg.get("made"), int):
            self._dialled.set()  # those it made are attached already: they came first

    def _asked_for_links(self) -> None:
        """The peer (which accepted our connection) wants links to fetch over: dial them."""
        now = time.monotonic()
        if not self.conn.outgoing or self.peer_token is None or self._closed \
                or len(self._serving) >= LINKS or now < self._dialled_for_it + RETRY / 10:
            return  # at most every 3 s, however often a member asks
        self._dialled_for_it = now
        task = asyncio.create_task(self._dial_to_serve(LINKS - len(self._serving)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dial_to_serve(self, n: int) -> None:
        made = 0
        for sock in await self._dial(pull=False, n=n):
            if self._closed or len(self._serving) >= LINKS:
                sock.close()
            else:
                self._serve(sock, confirm=False)
                made += 1
        self.conn.send_nowait({"t": "links", "made": made})

    def _serve(self, sock: datalink.TLSLink, confirm: bool) -> None:
        self._serving.add(sock)
        loop = asyncio.get_running_loop()

        def run() -> None:
            try:
                serve(sock, self.open_files, confirm,
                      lambda n: loop.call_soon_threadsafe(self._sent, n))
            finally:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._serving.discard, sock)

        threading.Thread(target=run, daemon=True,
                         name=f"p2psync-link-out-{self.conn.info.name}").start()

    def _sent(self, nbytes: int) -> None:
        self.conn.bytes_out += nbytes

    # --- both ----------------------------------------------------------------------------
    async def _dial(self, pull: bool, n: int) -> list[datalink.TLSLink]:
        results = await asyncio.gather(*(self._dial_one(pull) for _ in range(n)),
                                       return_exceptions=True)
        socks = [r for r in results if isinstance(r, datalink.TLSLink)]
        failed = [r for r in results if not isinstance(r, datalink.TLSLink)]
        for r in failed:
            if not isinstance(r, LINK_ERRORS):
                for sock in socks:
                    sock.close()
                raise r  # cancelled, or a bug
        if failed:
            log.info("could not open %d of %d data link(s) to %s at %s: %s", len(failed), n,
                     self.conn.info.name, self.conn.address,
                     str(failed[0]) or type(failed[0]).__name__)
        return socks

    async def _dial_one(self, pull: bool) -> datalink.TLSLink:
        """One link; tried again when the peer's gate was busy (see app/net/gate.py).

        DIALS_AT_ONCE at a time, over both directions: the gate lets only a few
        handshakes of one address be under way at once.
        """
        host, _, port = self.conn.address.rpartition(":")
        attempt = 0
        while True:
            try:
                async with self._dial_slots:
                    return await in_thread(datalink.dial, host, int(port), self.client_ctx,
                                           self.conn.info.cert_der, self.peer_token, pull,
                                           DIAL_TIMEOUT, orphan=lambda link: link.close())
            except (ssl.SSLError, EOFError, ConnectionError) as e:
                attempt += 1
                busy = getattr(e, "reason", None) == BUSY_ALERT or \
                    isinstance(e, EOFError | ConnectionError)  # or it made room for others
                if not busy or attempt == DIAL_TRIES or self._closed:
                    raise
            await asyncio.sleep(0.2 * attempt)

    def close(self) -> None:
        """The connection ended: its links end too (their threads close them)."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        self.fetcher.close()
        for sock in list(self._serving):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def serve(sock: datalink.TLSLink, open_files: Callable[[list], OpenFiles], confirm: bool,
          sent: Callable[[int], None]) -> None:
    """Answer one link's requests until it closes (on the link's own thread)."""
    buf = mmap.mmap(-1, datalink.RUN_BYTES)
    view = memoryview(buf)
    try:
        if confirm:
            datalink.confirm(sock)
        while (items := datalink.read_request(sock)) is not None:
            sizes: list[tuple[int, int | None]] = []
            pos = 0
            with open_files(items) as files:
                for item in items:
                    size = item[3]
                    if files.read_into(item, view[pos : pos + size]):
                        sizes.append((item[0], size))
                        pos += size
                    else:
                        sizes.append((item[0], None))
            datalink.send_answer(sock, sizes, view[:pos])
            sent(pos)
    except LINK_ERRORS as e:
        if not isinstance(e, EOFError | ConnectionError):
            log.info("a data link we served closed: %s", e)
    finally:
        sock.close()


async def in_thread(fn: Callable[..., Any], *args: Any,
                    orphan: Callable[[Any], None]) -> Any:
    """fn(*args) on a thread of its own; what it returns after we gave up goes to orphan
    (to be closed).

    Not the loop's default executor: a stalled link handshake must not hold one of
    the few threads that scans and disk work share.
    """
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if fut.cancelled():
            if error is None:
                orphan(result)
        elif error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)

    def run() -> None:
        result, error = None, None
        try:
            result = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting task
            error = e
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop is closed
            if error is None:
                orphan(result)

    threading.Thread(target=run, daemon=True, name="p2psync-link-setup").start()
    return await fut
