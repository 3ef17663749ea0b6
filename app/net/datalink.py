"""Data links: extra TLS connections that carry file blocks beside a peer connection.

Why: a peer connection's TLS runs in the event loop's thread (asyncio), so one core
encrypts, decrypts and frames a whole transfer while everything else the node does
waits behind it; a 1 GiB file moved at half of rsync's speed. A data link is a
blocking TLS socket driven by a thread of its own (OpenSSL and BLAKE3 let go of the
GIL), so a few of them spread a large file's crypto, hashing and disk writes over the
cores. This module is the wire format and the blocking socket work; app/engine/links.py
runs the threads.

How a link proves it belongs to an authenticated peer connection:

- the accepting side of the connection sends a random token (TOKEN_LEN bytes) in its
  `start`, inside that connection's TLS, after both sides were authenticated;
- only the dialling side dials links, to the address it dialled. It sends PREAMBLE in
  the clear first, so the listener tells a link from a peer before any TLS work and
  keeps its gate in charge (app/engine/listener.py); then TLS, where it checks that the
  server's certificate is exactly the one that peer authenticated with, so the token
  never goes to anyone else; then `{"t": "link", "token": ..., "pull": bool}`, and it
  waits for `{"t": "link_ok"}`;
- the listener takes a link only with the token of one of its connections that is up,
  and at most a few per direction; they all close with that connection.

`pull` says who asks for blocks: True, the dialling side (the listener serves); False,
the listening side, which asked for such links with a `links` message.

On a link the fetching side sends `req` frames, `{"t": "req", "items": [[rid, path,
offset, size, hash], ...]}` (at most RUN_BLOCKS items, RUN_BYTES of blocks in all),
and the serving side answers each one, in order: a header (the item count, then
each item's rid and its size, or ABSENT), then the bytes of the items it has, back to
back. The bytes are no msgpack: the fetching side reads them straight into the
buffer it hashes them in and writes them to the disk from.
"""

from __future__ import annotations

import socket
import ssl
import struct

from app.net import framing
from app.net.connection import well_formed_request

PREAMBLE = b"p2plink1"  # a TLS connection starts with 0x16, never with this
TOKEN_LEN = 32
RUN_BLOCKS = 16
RUN_BYTES = 2 * 1024 * 1024
MAX_FRAME = 256 * 1024  # a link hello, or a req frame of RUN_BLOCKS items and their paths
ABSENT = 0xFFFFFFFF
_COUNT = struct.Struct(">I")
_ITEM = struct.Struct(">QI")  # rid, size or ABSENT


class LinkError(Exception):
    """The other end broke the link protocol (or refused the link); str() says how."""


# --- a TLS socket of our own ---------------------------------------------------------
class TLSLink:
    """TLS over a blocking socket, through memory buffers (ssl.SSLObject).

    An TLSLink reads each 16 KiB record with two system calls and writes it with
    one; here the socket is read and written READ_AHEAD bytes at a time, and a 2 MiB
    answer costs a few dozen calls instead of hundreds (on loopback each call also
    runs the other side's TCP work on our core). Driven by one thread at a time;
    `shutdown` may come from any thread.
    """

    READ_AHEAD = 256 * 1024

    def __init__(self, raw: socket.socket, ctx: ssl.SSLContext, server_side: bool) -> None:
        self.raw = raw
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = ctx.wrap_bio(self._in, self._out, server_side=server_side,
                                 server_hostname=None)
        self._buf = bytearray(self.READ_AHEAD)
        self._view = memoryview(self._buf)
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
        self._flush()

    def peer_cert(self) -> bytes | None:
        return self._tls.getpeercert(binary_form=True)

    def recv_into(self, view: memoryview) -> int:
        """Up to len(view) bytes (one record's worth at most); 0 at the end."""
        while True:
            try:
                return self._tls.read(len(view), view)
            except ssl.SSLWantReadError:
                if not self._fill():
                    return 0
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return 0

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = self._tls.write(view[: self.READ_AHEAD])
            view = view[n:]
            self._flush()

    def _fill(self) -> bool:
        n = self.raw.recv_into(self._buf)
        if not n:
            self._in.write_eof()
            return False
        self._in.write(self._view[:n])
        return True

    def _flush(self) -> None:
        data = self._out.read()
        if data:
            self.raw.sendall(data)

    def settimeout(self, seconds: float | None) -> None:
        self.raw.settimeout(seconds)

    def shutdown(self, how: int) -> None:
        self.raw.shutdown(how)

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> TLSLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- setting a link up ---------------------------------------------------------------
def dial(host: str, port: int, ctx: ssl.SSLContext, cert_der: bytes, token: bytes,
         pull: bool, timeout: float) -> TLSLink:
    """Open a link to the peer that authenticated with cert_der (blocking).

    Raises OSError (ssl.SSLError included), EOFError or LinkError.
    """
    raw = socket.create_connection((host, port), timeout)
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.sendall(PREAMBLE)
        link = TLSLink(raw, ctx, server_side=False)
        if link.peer_cert() != cert_der:
            raise LinkError("the certificate there is not the peer's")
        send_message(link, {"t": "link", "token": token, "pull": pull})
        reply = read_message(link)
        if reply["t"] != "link_ok":
            raise LinkError(f"the peer refused the link ({reply.get('msg', reply['t'])!s:.100})")
        link.settimeout(None)
        return link
    except BaseException:
        raw.close()
        raise


def accept(raw: socket.socket, ctx: ssl.SSLContext, timeout: float
           ) -> tuple[TLSLink, bytes, bool]:
    """The listening side, after the preamble: TLS, then the link hello (blocking).

    Owns raw from the start. Returns the link, the token and `pull`; the caller checks
    the token, then says `confirm` (or closes). Raises OSError, EOFError,
    framing.FrameError or LinkError.
    """
    try:
        raw.setblocking(True)
        raw.settimeout(timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        preamble = bytearray(len(PREAMBLE))
        recv_exact(raw, memoryview(preamble))
        if preamble != PREAMBLE:
            raise LinkError("not a link")
        link = TLSLink(raw, ctx, server_side=True)
        hello = read_message(link)
        token, pull = hello.get("token"), hello.get("pull")
        if hello["t"] != "link" or not isinstance(token, bytes) or len(token) != TOKEN_LEN \
                or not isinstance(pull, bool):
            raise LinkError("a malformed link hello")
        return link, token, pull
    except BaseException:
        raw.close()
        raise


def confirm(sock: TLSLink) -> None:
    send_message(sock, {"t": "link_ok"})
    sock.settimeout(None)


def preamble_state(peeked: bytes) -> bool | None:
    """True: a link's preamble; False: anything else (TLS); None: too little to tell."""
    n = min(len(peeked), len(PREAMBLE))
    if peeked[:n] != PREAMBLE[:n]:
        return False
    return True if n == len(PREAMBLE) else None


# --- requests and answers ------------------------------------------------------------
def send_request(sock: TLSLink, items: list[list]) -> None:
    send_message(sock, {"t": "req", "items": items})


def read_request(sock: TLSLink) -> list[list] | None:
    """The next request's items; None when the other end closed the link cleanly."""
    try:
        msg = read_message(sock)
    except EOFError:
        return None
    items = msg.get("items")
    if msg["t"] != "req" or not isinstance(items, list) or not 0 < len(items) <= RUN_BLOCKS \
            or not all(well_formed_request(i) for i in items) \
            or sum(i[3] for i in items) > RUN_BYTES:
        raise LinkError("a malformed request")
    return items


def send_answer(sock: TLSLink, sizes: list[tuple[int, int | None]],
                data: memoryview) -> None:
    """(rid, size or None) per item asked, in order; data: the present ones' bytes."""
    head = bytearray(_COUNT.pack(len(sizes)))
    for rid, size in sizes:
        head += _ITEM.pack(rid, ABSENT if size is None else size)
    sock.sendall(head)
    if data:
        sock.sendall(data)


def read_answer(sock: TLSLink, items: list[list]) -> list[int | None]:
    """The header of the answer to `items`: each one's size, or None (not there).

    Anything but one entry per item, in order, of the size asked (or ABSENT) is a
    broken link: LinkError.
    """
    head = bytearray(_COUNT.size)
    recv_exact(sock, memoryview(head))
    count = _COUNT.unpack(head)[0]
    if count != len(items):
        raise LinkError(f"an answer of {count} items to a request of {len(items)}")
    raw = bytearray(_ITEM.size * count)
    recv_exact(sock, memoryview(raw))
    sizes: list[int | None] = []
    for k, (rid, size) in enumerate(_ITEM.iter_unpack(raw)):
        if rid != items[k][0] or size not in (items[k][3], ABSENT):
            raise LinkError("an answer that does not match its request")
        sizes.append(None if size == ABSENT else size)
    return sizes


# --- frames over a blocking socket ---------------------------------------------------
def send_message(sock: TLSLink, msg: dict) -> None:
    sock.sendall(framing.encode_message(msg))


def read_message(sock: TLSLink, max_size: int = MAX_FRAME) -> dict:
    """One frame; EOFError at a clean end between frames, FrameError for a bad one."""
    header = bytearray(4)
    view = memoryview(header)
    got = sock.recv_into(view)
    if not got:
        raise EOFError("the link closed")
    if got < 4:
        recv_exact(sock, view[got:])
    size = int.from_bytes(header, "big")
    if not 0 < size <= max_size:
        raise framing.FrameError(f"a frame of {size} bytes")
    body = bytearray(size)
    recv_exact(sock, memoryview(body))
    return framing.decode_body(body)


def recv_exact(sock: TLSLink | socket.socket, view: memoryview) -> None:
    """Fill view from the socket, or raise EOFError (the link closed mid-way)."""
    got, total = 0, len(view)
    while got < total:
        n = sock.recv_into(view[got:])
        if not n:
            raise EOFError("the link closed mid-frame")
        got += n
