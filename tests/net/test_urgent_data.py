"""Block answers are taken as they arrive, not behind the index frames queued before them.

A peer's million-file index comes faster than it is stored; with every frame read in
order, the answers to our block requests waited behind megabytes of it for over 10 s
and the peer was taken for stalled. Real connections on loopback: the sender queues
index frames, then answers a request; the answer resolves while no index frame has
been read yet.
"""

from __future__ import annotations

import asyncio

from tests.net.pairs import connected_pair

H = b"h" * 32


def test_an_answer_overtakes_the_index_frames_queued_before_it():
    async def main():
        us, them = await connected_pair()
        handled: list[str] = []

        async def slow_handler(conn, msg):  # storing an index batch takes a while
            handled.append(msg["t"])
            await asyncio.sleep(0.5)

        reading = asyncio.create_task(us.run(slow_handler))
        them.send_nowait({"t": "start"})
        us.send_nowait({"t": "start"})
        await asyncio.sleep(0.1)
        answer = us.request_block("f", 0, 10, H)
        for i in range(6):  # 3 s of index work queued ahead of the answer
            them.send_nowait({"t": "index", "entries": [["x" * 50, i]] * 100})
        them.send_nowait({"t": "data", "items": [[1, b"0123456789"]]})
        data = await asyncio.wait_for(answer, 1.0)
        assert data == b"0123456789"
        assert handled.count("index") <= 1  # the answer came first
        reading.cancel()
        await us.close()
        await them.close()

    asyncio.run(main())


def test_a_malformed_data_frame_still_ends_the_connection():
    async def main():
        us, them = await connected_pair()

        async def handler(conn, msg):
            pass

        reading = asyncio.create_task(us.run(handler))
        them.send_nowait({"t": "start"})
        await asyncio.sleep(0.1)
        them.send_nowait({"t": "data", "items": [["not a rid", b"x"]]})
        await asyncio.wait_for(reading, 2.0)
        assert "malformed 'data' item" in us.close_reason
        await them.close()

    asyncio.run(main())
