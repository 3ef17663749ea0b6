"""One authenticated peer connection: a small state machine over frames.

After the handshake the only message allowed is `start` (which says how much of our
index the peer already holds); then the session is READY. A message out of turn,
of an unknown type or with malformed fields closes the connection with a logged
reason; the node itself keeps running.

Block requests are batched: every `request_block` made during one turn of the event
loop goes out in one `req` frame, so 10,000 small files cost a few hundred frames,
not 10,000 round trips.

The peer's requests wait in a bounded `RequestQueue` until the node serves them. When
it is full, reading from that peer stops until the node has served some: its next
frames stay in the socket buffers and TCP slows it down. A member that asks faster
than it reads costs a bounded queue, never memory without end, and is not dropped.

Our own requests never wait for ever either: a peer that answers none of them for
REQUEST_STALL seconds (while it answers pings) is taken to have nothing to send.
Its pending requests resolve to None, and new ones do at once for a back-off that
doubles each time, so a member that announces files and never sends them cannot
hold a pull round, and every other peer's files behind it, for ever.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable

from app.core.model import BLOCK_SIZE, HASH_LEN
from app.net import framing
from app.net.handshake import PeerInfo
from app.net.stream import FrameStream

log = logging.getLogger(__name__)

PING_INTERVAL = 1.5
DEAD_AFTER = 6.0
CLOSE_WAIT = 1.0  # seconds a closing connection waits for its last frames to be read
MAX_REQ_ITEMS = 4096
MAX_DATA_BYTES = 1024 * 1024  # per `data` frame: small enough to keep the pipeline moving
# What one peer may have waiting to be served. An honest puller keeps at most a few
# hundred blocks in flight (puller.MAX_INFLIGHT_BLOCKS plus its small-file batches), so
# only a peer that asks far faster than it reads ever meets these.
MAX_QUEUED_ITEMS = 4 * MAX_REQ_ITEMS
MAX_QUEUED_BYTES = 4 * 1024 * 1024  # the requests themselves (paths, hashes), not the blocks
MAX_REQ_PATH = 4096  # characters; no path we share is longer (app.core.paths)
_ITEM_COST = 128  # bytes an item costs beyond its path and hash (list, ints, bookkeeping)
PONG_UNLESS_BUFFERED = 256 * 1024  # bytes we sent and the peer has not read yet
# Seconds a connection may spend on its queued frames before the loop's other work gets a
# turn: a frame already read is handed out without a wait, so a peer that floods pings
# or requests held the loop for 1.3-2.4 s at a time, and the other peers with it.
TURN = 0.005
REQUEST_STALL = 10.0  # seconds without any answer to pending requests: not answering
STALL_BACKOFF = (30.0, 600.0)  # not asked again for this long, doubling up to the second


class ProtocolError(Exception):
    """The peer broke the protocol; the connection closes with this reason."""


class LocalFailure(Exception):
    """This side cannot take what the peer sent (its index on a full disk, say): the
    connection closes with this reason, told to the peer too. What was not stored is
    sent again on the next connection."""


Handler = Callable[["PeerConnection", dict], Awaitable[None]]


def well_formed_request(item: object) -> bool:
    """A block request as the protocol has it: [rid, path, offset, size, hash]."""
    return (isinstance(item, list) and len(item) == 5 and type(item[0]) is int
            and isinstance(item[1], str) and len(item[1]) <= MAX_REQ_PATH
            and type(item[2]) is int and item[2] >= 0
            and type(item[3]) is int and 0 < item[3] <= BLOCK_SIZE
            and isinstance(item[4], bytes) and len(item[4]) == HASH_LEN)


class RequestQueue:
    """The block requests of one peer that wait to be served, bounded in items and bytes.

    `put` waits while the queue is full (one batch always fits an empty queue), so
    the reader that calls it stops reading from the peer; `get` hands the oldest
    batch to the node's serving task. A malformed item is kept as `[rid]` only (it
    is answered with None), so junk inside a request frame is not kept either.
    After `close` (the connection ended) put drops its batch and get returns None.
    """

    def __init__(self, max_items: int = MAX_QUEUED_ITEMS,
                 max_bytes: int = MAX_QUEUED_BYTES) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.items = 0
        self.bytes = 0
        self.waiting = False  # a put waits for room: the peer is not being read
        self.closed = False
        self._batches: collections.deque[tuple[list, int]] = collections.deque()
        self._room = asyncio.Event()
        self._ready = asyncio.Event()

    async def put(self, items: list, on_wait: Callable[[], None] = lambda: None,
                  on_room: Callable[[], None] = lambda: None) -> None:
        """Queue one request frame's items; wait while they do not fit.

        `on_wait` is called before waiting and `on_room` once there is room again
        (the connection stops and resumes reading the socket there).
        """
        batch = [i if well_formed_request(i) else [_rid_of(i)] for i in items]
        cost = sum(_ITEM_COST + (len(i[1]) + len(i[4]) if len(i) == 5 else 0) for i in batch)
        if self._must_wait(len(batch), cost):
            on_wait()
            self.waiting = True
            try:
                while self._must_wait(len(batch), cost):
                    self._room.clear()
                    await self._room.wait()
            finally:
                self.waiting = False
                on_room()
        if self.closed:
            return
        self._batches.append((batch, cost))
        self.items += len(batch)
        self.bytes += cost
        self._ready.set()

    def _must_wait(self, n: int, cost: int) -> bool:
        return not self.closed and bool(self._batches) and (
            self.items + n > self.max_items or self.bytes + cost > self.max_bytes)

    async def get(self) -> list | None:
        """The next batch; None once the connection has ended."""
        while not self._batches:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        batch, cost = self._batches.popleft()
        self.items -= len(batch)
        self.bytes -= cost
        self._room.set()
        return batch

    def close(self) -> None:
        self.closed = True
        self._batches.clear()
        self.items = self.bytes = 0
        self._room.set()
        self._ready.set()


_DATA_PREFIX = framing.encode_message({"t": "data", "items": []})[4:12]  # {"t": "data", ...}


def _rid_of(item: object) -> int:
    return item[0] if isinstance(item, list) and item and type(item[0]) is int else 0


class PeerConnection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        info: PeerInfo,
        *,
        outgoing: bool,
        address: str,
    ) -> None:
        self.stream = FrameStream.take_over(reader, writer)
        self.info = info
        self.outgoing = outgoing
        self.address = address
        self.state = "WAIT_START"
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.bytes_in = 0
        self.bytes_out = 0
        self._rids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._req_batch: list[list] = []
        self._last_seen = time.monotonic()
        self._last_answer = time.monotonic()  # the last data frame, or the first request
        self._stalled_until = 0.0  # requests fail at once until then (monotonic)
        self._backoff = STALL_BACKOFF[0]
        self.on_answering: Callable[[], None] = lambda: None  # asked again after a stall
        self.requests = RequestQueue()  # the peer's block requests, for the node to serve
        self._paused_for_requests = False
        self.stream.lost.add_done_callback(lambda _: self.requests.close())
        self.stream.urgent = self._urgent

    @property
    def device_id(self) -> str:
        return self.info.device_id

    # --- sending ---------------------------------------------------------------------
    def send_nowait(self, msg: dict) -> None:
        self.send_frame_nowait(framing.encode_frame(msg))

    def send_frame_nowait(self, frame: tuple[bytes, bytes]) -> None:
        """A frame encoded already (`framing.encode_frame`): whoever built a large one
        need not keep what it was built from while it is sent."""
        # Closing: the connection was lost while frames it brought are still handled.
        if self.closed.is_set() or self.stream.transport.is_closing():
            return
        header, body = frame
        self.bytes_out += len(header) + len(body)
        self.stream.write_frame(header, body)

    async def send(self, msg: dict) -> None:
        self.send_nowait(msg)
        await self.drain()

    async def drain(self) -> None:
        """Wait while the transport holds more than its high-water mark of our frames."""
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.stream.drain()

    @property
    def resting(self) -> bool:
        """Not asked for blocks now: it left every request of ours unanswered (`_stalled`)."""
        return time.monotonic() < self._stalled_until

    def request_block(self, path: str, offset: int, size: int, h: bytes) -> asyncio.Future:
        """Ask for one block; resolves to its bytes, or None if the peer lacks it."""
        fut = asyncio.get_running_loop().create_future()
        if self.closed.is_set() or self.resting:
            fut.set_result(None)
            return fut
        if not self._pending:
            self._last_answer = time.monotonic()  # the wait for an answer starts now
        rid = next(self._rids)
        self._pending[rid] = fut
        if not self._req_batch:
            asyncio.get_running_loop().call_soon(self._flush_requests)
        self._req_batch.append([rid, path, offset, size, h])
        return fut

    def _flush_requests(self) -> None:
        batch, self._req_batch = self._req_batch, []
        for i in range(0, len(batch), MAX_REQ_ITEMS):
            self.send_nowait({"t": "req", "items": batch[i : i + MAX_REQ_ITEMS]})

    # --- receiving -------------------------------------------------------------------
    async def run(self, handler: Handler) -> None:
        """Read until the peer goes away or breaks the protocol; then close."""
        pinger = asyncio.create_task(self._keepalive())
        try:
            turn_began = time.monotonic()
            while True:
                msg = await self.stream.read_message()
                self._last_seen = time.monotonic()
                await self._dispatch(msg, handler)
                if self._last_seen - turn_began > TURN:
                    await asyncio.sleep(0)
                    turn_began = time.monotonic()
        except EOFError:
            self.close_reason = self.close_reason or "the peer closed the connection"
        except framing.FrameError as e:
            self.close_reason = f"bad frame: {e}"
        except ProtocolError as e:
            self.close_reason = f"protocol error: {e}"
            with contextlib.suppress(Exception):
                await self.send({"t": "error", "code": "protocol", "msg": str(e)})
        except LocalFailure as e:
            self.close_reason = str(e)
            await self.fail(str(e))
        except (ConnectionError, OSError) as e:
            self.close_reason = self.close_reason or f"connection lost: {e}"
        finally:
            pinger.cancel()
            await self.close(self.close_reason)

    async def _dispatch(self, msg: dict, handler: Handler) -> None:
        t = msg["t"]
        if t == "ping":
            # Not when much of what we sent is still unread: the peer then has frames of
            # ours to see us by, and a ping flood from a peer that reads nothing cannot
            # pile pongs up in our memory.
            transport = self.stream.transport
            if not transport.is_closing() and \
                    transport.get_write_buffer_size() < PONG_UNLESS_BUFFERED:
                self.send_nowait({"t": "pong"})
            return
        if t == "pong":
            return
        if t == "error":
            self.close_reason = f"the peer closed: {msg.get('msg', msg.get('code'))}"
            raise EOFError
        if t == "bye":
            self.close_reason = "the peer left"
            raise EOFError
        if self.state == "WAIT_START":
            if t != "start":
                raise ProtocolError(f"expected 'start', got {t!r}")
            self.state = "READY"
        elif t == "start":
            raise ProtocolError("'start' sent twice")
        elif t == "data":
            self._on_data(msg)
            return
        elif t == "req":
            await self._queue_requests(msg)
            return
        elif t not in ("index", "state", "role", "links"):
            raise ProtocolError(f"unknown message type {t!r}")
        await handler(self, msg)

    def _urgent(self, body: bytes | bytearray) -> bool:
        """Block data is taken as it arrives, ahead of the frames queued before it.

        Answers only resolve our requests, in any order; queued behind a peer's index
        (which comes faster than it is stored) they waited so long that the peer was
        taken for stalled. Anything not plainly a well-formed `data` frame is left to
        the queue, whose reader says what is wrong with it.
        """
        if self.state != "READY" or not body.startswith(_DATA_PREFIX):
            return False
        try:
            msg = framing.decode_body(body)
            if msg.get("t") != "data":
                return False
            self._on_data(msg)
        except (framing.FrameError, ProtocolError):
            return False
        self._last_seen = time.monotonic()
        return True

    def _on_data(self, msg: dict) -> None:
        items = msg.get("items")
        if not isinstance(items, list):
            raise ProtocolError("malformed 'data'")
        self._last_answer = time.monotonic()
        self._backoff = STALL_BACKOFF[0]
        for item in items:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], int)
                    and (item[1] is None or isinstance(item[1], bytes))):
                raise ProtocolError("malformed 'data' item")
            fut = self._pending.pop(item[0], None)
            if fut is not None and not fut.done():
                if item[1] is not None:
                    self.bytes_in += len(item[1])
                fut.set_result(item[1])

    async def _queue_requests(self, msg: dict) -> None:
        """Queue the peer's block requests; while the queue is full, read nothing more."""
        items = msg.get("items")
        if not isinstance(items, list) or len(items) > MAX_REQ_ITEMS:
            raise ProtocolError("malformed 'req'")
        await self.requests.put(items, self._pause_reading, self._resume_reading)
        self._last_seen = time.monotonic()  # its pongs waited behind the requests

    def _pause_reading(self) -> None:
        """Take nothing more in from the socket now, not once the stream's buffer is full."""
        transport = self.stream.transport
        if not transport.is_closing() and transport.is_reading():
            transport.pause_reading()
            self._paused_for_requests = True

    def _resume_reading(self) -> None:
        """Undo _pause_reading (the stream pauses again itself if its buffer is full)."""
        transport = self.stream.transport
        if self._paused_for_requests and not transport.is_closing() \
                and not transport.is_reading():
            transport.resume_reading()
        self._paused_for_requests = False

    async def _keepalive(self) -> None:
        while not self.closed.is_set():
            await asyncio.sleep(PING_INTERVAL)
            if self.requests.waiting:
                continue  # we are the ones not reading: its silence proves nothing
            if self._pending and time.monotonic() - self._last_answer > REQUEST_STALL:
                self._stalled()
            if time.monotonic() - self._last_seen > DEAD_AFTER:
                self.close_reason = f"no answer for {DEAD_AFTER:.0f} s"
                self.stream.transport.abort()
                return
            with contextlib.suppress(Exception):
                self.send_nowait({"t": "ping"})

    def stalled_elsewhere(self) -> None:
        """A data link to this peer went unanswered as long (app/engine/linkfetch.py): the
        peer is taken to have nothing to send here either."""
        if not self.resting:
            self._stalled(f"{self.info.name} has answered nothing over a data link for "
                          f"{REQUEST_STALL:.0f} s")

    def _stalled(self, why: str = "") -> None:
        """The peer answers pings but none of our block requests: stop waiting for it."""
        wait = self._backoff
        self._backoff = min(self._backoff * 2, STALL_BACKOFF[1])
        self._stalled_until = time.monotonic() + wait
        log.warning("%s: not asking it for %.0f s", why or f"{self.info.name} has answered "
                    f"none of {len(self._pending)} block request(s) for {REQUEST_STALL:.0f} s",
                    wait)
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_result(None)
        asyncio.get_running_loop().call_later(wait, self._answering_again)

    def _answering_again(self) -> None:
        if not self.closed.is_set():
            self.on_answering()

    async def close(self, reason: str = "") -> None:
        if self.closed.is_set():
            return
        self.close_reason = self.close_reason or reason
        self.closed.set()
        self.requests.close()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_result(None)
        self._pending.clear()
        self.stream.transport.close()  # after what is buffered is sent...
        try:
            await asyncio.wait_for(asyncio.shield(self.stream.lost), CLOSE_WAIT)
        except TimeoutError:  # ...which a peer that reads nothing never lets happen
            self.stream.transport.abort()
        except Exception:  # noqa: BLE001 - lost with an error: closed all the same
            pass

    async def fail(self, reason: str) -> None:
        """Close over a failure of ours, telling the peer why (it logs it, as a `sync`
        that ends on it says it), at most CLOSE_WAIT for a peer that reads nothing."""
        if self.closed.is_set():
            return
        self.close_reason = self.close_reason or reason
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.send({"t": "error", "code": "local", "msg": reason}),
                                   CLOSE_WAIT)
        await self.close(reason)

    async def leave(self) -> None:
        """Close politely: the peer logs that we left, not that we vanished.

        The bye waits for room in the send buffer at most CLOSE_WAIT: a peer that sends
        but reads nothing (hostile, or frozen) never makes room, and held the node's
        stop for good.
        """
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.send({"t": "bye"}), CLOSE_WAIT)
        await self.close("we left")
