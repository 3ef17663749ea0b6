"""A connection's backlog of frames gives the event loop turns, and is answered only
while the connection lasts.

A frame already read is handed out without a wait: a member that flooded a node with
pings held its event loop for 1.3-2.4 s at a time, and every other peer with it (an
honest sync beside the flood took 13 s, or timed out on a busy machine). Real
connections on loopback: the frames are all read and queued before the connection
handles any.
"""

from __future__ import annotations

import asyncio

from app.net import framing
from tests.net.pairs import connected_pair

N = 100_000


async def _queued(conn, frames: int) -> None:
    """Wait until conn has read `frames` frames and handled none (its `run` not started)."""
    while len(conn.stream._frames) < frames:
        await asyncio.sleep(0.01)


def test_a_backlog_of_frames_gives_the_loop_turns_while_it_is_handled():
    async def main():
        us, them = await connected_pair()
        handled = 0

        async def handler(conn, msg):  # returns at once, as a state message's does
            nonlocal handled
            handled += 1

        them.send_nowait({"t": "start"})
        them.stream.write(framing.encode_message({"t": "state"}) * N)
        await _queued(us, N + 1)
        seen: list[int] = []

        async def other_work():
            while handled < N:
                seen.append(handled)
                await asyncio.sleep(0)

        other = asyncio.create_task(other_work())
        reading = asyncio.create_task(us.run(handler))
        await asyncio.wait_for(other, 60)
        assert [n for n in seen if 0 < n < N], f"no turn while {N:,} frames were handled"
        reading.cancel()
        await us.close()
        await them.close()

    asyncio.run(main())


def test_pings_left_after_the_connection_is_lost_are_not_answered():
    """Handled after the loss (a turn let the loss in first), nothing is written: over
    TLS a pong to a closed transport raised, and each write was logged."""
    async def main():
        us, them = await connected_pair()
        them.send_nowait({"t": "start"})
        them.stream.write(framing.encode_message({"t": "ping"}) * 20_000)
        await _queued(us, 20_001)
        them.stream.transport.abort()
        await asyncio.wait_for(asyncio.shield(us.stream.lost), 10)
        sent = us.bytes_out

        async def handler(conn, msg):  # pings never reach it
            assert msg["t"] == "start", msg

        await asyncio.wait_for(us.run(handler), 30)  # ends by itself, with the backlog
        assert us.bytes_out == sent
        assert us.close_reason == "the peer closed the connection", us.close_reason

    asyncio.run(main())
