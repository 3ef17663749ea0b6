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


# --- setting a link up ---------------------------------------------------------------
def dial(host: str, port: int, ctx: ssl.SSLContext, cert_der: bytes, token: bytes,
         pull: bool, timeout: float) -> ssl.SSLSocket:
    """Open a link to the peer that authenticated with cert_der (blocking).

    Raises OSError (ssl.SSLError included), EOFError or LinkError.
    """
    raw = socket.create_connection((host, port), timeout)
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.sendall(PREAMBLE)
        sock = ctx.wrap_socket(raw, server_hostname=None)
    except BaseException:
        raw.close()
        raise
    try:
        if sock.getpeercert(binary_form=True) != cert_der:
            raise LinkError("the certificate there is not the peer's")
        send_message(sock, {"t": "link", "token": token, "pull": pull})
        reply = read_message(sock)
        if reply["t"] != "link_ok":
            raise LinkError(f"the peer refused the link ({reply.get('msg', reply['t'])!s:.100})")
        sock.settimeout(None)
        return sock
    except BaseException:
        sock.close()
        raise


def accept(raw: socket.socket, ctx: ssl.SSLContext, timeout: float
           ) -> tuple[ssl.SSLSocket, bytes, bool]:
    """The listening side, after the preamble: TLS, then the link hello (blocking).

    Returns the socket, the token and `pull`; the caller checks the token, then says
    `confirm` (or closes). Raises OSError, EOFError, framing.FrameError or LinkError.
    """
    raw.setblocking(True)
    raw.settimeout(timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    preamble = bytearray(len(PREAMBLE))
    recv_exact(raw, memoryview(preamble))
    if preamble != PREAMBLE:
        raise LinkError("not a link")
    sock = ctx.wrap_socket(raw, server_side=True)
    try:
        hello = read_message(sock)
        token, pull = hello.get("token"), hello.get("pull")
        if hello["t"] != "link" or not isinstance(token, bytes) or len(token) != TOKEN_LEN \
                or not isinstance(pull, bool):
            raise LinkError("a malformed link hello")
        return sock, token, pull
    except BaseException:
        sock.close()
        raise


def confirm(sock: ssl.SSLSocket) -> None:
    send_message(sock, {"t": "link_ok"})
    sock.settimeout(None)


def preamble_state(peeked: bytes) -> bool | None:
    """True: a link's preamble; False: anything else (TLS); None: too little to tell."""
    n = min(len(peeked), len(PREAMBLE))
    if peeked[:n] != PREAMBLE[:n]:
        return False
    return True if n == len(PREAMBLE) else None


# --- requests and answers ------------------------------------------------------------
def send_request(sock: ssl.SSLSocket, items: list[list]) -> None:
    send_message(sock, {"t": "req", "items": items})


def read_request(sock: ssl.SSLSocket) -> list[list] | None:
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


def send_answer(sock: ssl.SSLSocket, sizes: list[tuple[int, int | None]],
                data: memoryview) -> None:
    """(rid, size or None) per item asked, in order; data: the present ones' bytes."""
    head = bytearray(_COUNT.pack(len(sizes)))
    for rid, size in sizes:
        head += _ITEM.pack(rid, ABSENT if size is None else size)
    sock.sendall(head)
    if data:
        sock.sendall(data)


def read_answer(sock: ssl.SSLSocket, items: list[list]) -> list[int | None]:
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
def send_message(sock: socket.socket, msg: dict) -> None:
    sock.sendall(framing.encode_message(msg))


def read_message(sock: socket.socket, max_size: int = MAX_FRAME) -> dict:
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


def recv_exact(sock: socket.socket, view: memoryview) -> None:
    """Fill view from the socket, or raise EOFError (the link closed mid-way)."""
    got, total = 0, len(view)
    while got < total:
        n = sock.recv_into(view[got:])
        if not n:
            raise EOFError("the link closed mid-frame")
        got += n
