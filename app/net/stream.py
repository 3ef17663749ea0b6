"""The data path of an authenticated connection: frames read straight into buffers.

After the handshake (done on asyncio streams, where clarity matters more than speed)
the connection's transport is handed to a `FrameStream`, an `asyncio.BufferedProtocol`:
TLS decrypts small frames into one reused staging buffer, and a large frame (a batch
of file blocks) straight into a buffer of its exact size, so a block is copied once
less on its way from the socket to the disk than through a StreamReader. Frame rules
are the same as `framing.read_message`: the length is checked before anything is
allocated for the body.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

from app.net import framing

STAGING = 256 * 1024
# Stop reading the socket past this much unread. Small: what waits here delays every
# frame behind it (block data excepted, see `urgent`), and a peer's index comes
# faster than it is stored: at 16 MiB, a million-file index kept block answers
# waiting over 10 s.
MAX_QUEUED_BYTES = 2 * 1024 * 1024
# Outgoing frames buffered before `drain` waits: room for the next batch of blocks
# while the last is sent. asyncio's TLS layers hold up to four copies of it (app data,
# records, the transport's buffer): at 8 MiB that was 33 MB of a run node's peak while
# it sent a renamed directory's index, and 10,000 small files went no faster
# (bench_sync.py --only small_files, four runs each, alternated: median 3.3 s at 8 MiB,
# 3.2 s at 2).
WRITE_BUFFER = 2 * 1024 * 1024
# A larger frame goes to the TLS layer in pieces of this size (`write_frame`): whole,
# asyncio's TLS layer held the frame joined to its header, its records in the memory
# BIO, the records read out of it and the transport's buffer at once (four copies of
# a 25 MiB page naming a 100 GiB file: 264 MB of peak).
PIECE = 1024 * 1024


class FrameStream(asyncio.BufferedProtocol):
    def __init__(self, transport: asyncio.Transport, max_size: int = framing.MAX_FRAME) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_BUFFER, low=WRITE_BUFFER // 4)
        self.max_size = max_size
        self._stage = bytearray(STAGING)
        self._fill = 0
        self._direct: bytearray | None = None
        self._dpos = 0
        self._frames: collections.deque = collections.deque()
        self._queued = 0
        self._end: BaseException | None = None
        self._waiter: asyncio.Future | None = None
        self._write_paused = False
        self._drainers: list[asyncio.Future] = []
        self.lost = asyncio.get_running_loop().create_future()
        # the owner's taker of frames that must not wait behind the queued ones: called
        # with each body as it arrives; True: taken, it is not queued
        self.urgent: Callable[[bytes | bytearray], bool] | None = None

    # --- taking over from a StreamReader ------------------------------------------------
    @classmethod
    def take_over(cls, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> FrameStream:
        """Move a connection from streams to a FrameStream, keeping what was read ahead."""
        transport = writer.transport
        stream = cls(transport)
        stream._streams = (reader, writer)  # a collected StreamWriter closes its transport
        leftover = bytes(reader._buffer)  # frames the peer sent right after the handshake
        at_eof = reader.at_eof() or reader._eof
        transport.set_protocol(stream)
        if leftover:
            stream.feed(leftover)
        if at_eof:
            stream.eof_received()
        elif not transport.is_reading():
            transport.resume_reading()
        return stream

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self._end is None:
            buf = self.get_buffer(len(view))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            self.buffer_updated(n)
            view = view[n:]

    # --- protocol callbacks ------------------------------------------------------------
    def get_buffer(self, sizehint: int) -> memoryview:
        if self._direct is not None:
            return memoryview(self._direct)[self._dpos :]
        return memoryview(self._stage)[self._fill :]

    def buffer_updated(self, nbytes: int) -> None:
        if self._end is not None:
            return
        if self._direct is not None:
            self._dpos += nbytes
            if self._dpos == len(self._direct):
                self._push(self._direct)
                self._direct = None
            return
        self._fill += nbytes
        self._parse()

    def eof_received(self) -> bool:
        if self._fill or self._direct is not None:
            self._finish(framing.FrameError("connection closed mid-frame"))
        else:
            self._finish(EOFError("connection closed"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(ConnectionError(str(exc)) if exc else EOFError("connection closed"))
        self._write_paused = False
        self._wake_drainers()
        if not self.lost.done():
            self.lost.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drainers()

    # --- parsing -------------------------------------------------------------------------
    def _parse(self) -> None:
        buf, start, fill = self._stage, 0, self._fill
        while fill - start >= 4:
            size = int.from_bytes(buf[start : start + 4], "big")
            if size > self.max_size:
                self._fail(framing.FrameError(f"frame too large ({size} bytes)"))
                return
            if size == 0:
                self._fail(framing.FrameError("malformed frame"))
                return
            if fill - start - 4 >= size:
                self._push(bytes(buf[start + 4 : start + 4 + size]))
                start += 4 + size
            elif size > len(buf) - 4:  # larger than staging: read the rest straight in
                have = fill - start - 4
                body = bytearray(size)
                body[:have] = buf[start + 4 : fill]
                self._direct, self._dpos = body, have
                start = fill
                break
            else:
                break
        if start:
            rest = fill - start
            buf[:rest] = buf[start:fill]
            self._fill = rest

    def _push(self, body: bytes | bytearray) -> None:
        if self.urgent is not None and self.urgent(body):
            return
        self._frames.append(body)
        self._queued += len(body)
        if self._queued > MAX_QUEUED_BYTES and self.transport.is_reading():
            self.transport.pause_reading()
        self._wake()

    def _fail(self, error: BaseException) -> None:
        self._finish(error)
        self.transport.abort()

    def _finish(self, error: BaseException) -> None:
        if self._end is None:
            self._end = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _wake_drainers(self) -> None:
        for fut in self._drainers:
            if not fut.done():
                fut.set_result(None)
        self._drainers.clear()

    # --- the API PeerConnection uses -------------------------------------------------------
    async def read_message(self) -> dict:
        """The next message; EOFError at a clean end, FrameError on a broken frame."""
        while not self._frames:
            if self._end is not None:
                raise self._end
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        body = self._frames.popleft()
        self._queued -= len(body)
        if self._queued <= MAX_QUEUED_BYTES // 2 and self._end is None \
                and not self.transport.is_reading() and not self.transport.is_closing():
            self.transport.resume_reading()
        return framing.decode_body(body)

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def write_frame(self, header: bytes, body: bytes) -> None:
        """One frame, a large body in pieces: each is encrypted and handed on before the
        next, so only the body and the transport's buffer of records are held at once.
        All in one call: no other frame can come between the pieces."""
        if len(body) <= PIECE:
            self.transport.write(header + body)
            return
        self.transport.write(header)
        view = memoryview(body)
        for at in range(0, len(view), PIECE):
            self.transport.write(view[at : at + PIECE])

    async def drain(self) -> None:
        if self._end is not None and isinstance(self._end, ConnectionError):
            raise self._end
        if self._write_paused and not self.transport.is_closing():
            fut = asyncio.get_running_loop().create_future()
            self._drainers.append(fut)
            await fut
