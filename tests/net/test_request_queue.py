"""The bounded queue of a peer's block requests (app.net.connection.RequestQueue)."""

from __future__ import annotations

import asyncio

from app.net.connection import RequestQueue

H = b"h" * 32


def _items(n: int, path: str = "f") -> list[list]:
    return [[i, path, 0, 10, H] for i in range(n)]


def test_a_full_queue_makes_put_wait_until_a_batch_is_served():
    async def go():
        q = RequestQueue(max_items=10, max_bytes=1 << 20)
        calls: list[str] = []
        await q.put(_items(6), lambda: calls.append("wait"), lambda: calls.append("room"))
        assert calls == []  # it fitted: the socket is read on
        waiter = asyncio.create_task(q.put(_items(6), lambda: calls.append("wait"),
                                           lambda: calls.append("room")))  # 12 > 10
        await asyncio.sleep(0.05)
        assert not waiter.done() and q.waiting and q.items == 6 and calls == ["wait"]
        assert len(await q.get()) == 6
        await asyncio.wait_for(waiter, 1)
        assert not q.waiting and q.items == 6 and calls == ["wait", "room"]

    asyncio.run(go())


def test_bytes_count_too_and_one_batch_always_fits_an_empty_queue():
    async def go():
        q = RequestQueue(max_items=10_000, max_bytes=4096)
        await asyncio.wait_for(q.put(_items(3, "p" * 3000)), 1)  # alone: over, but taken
        waiter = asyncio.create_task(q.put(_items(1)))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await q.get()
        await asyncio.wait_for(waiter, 1)

    asyncio.run(go())


def test_malformed_items_keep_only_their_request_id():
    async def go():
        q = RequestQueue()
        await q.put([[7, "f", 0, 10, H], [8, "x" * 100_000, 0, 10, H], ["junk"], 5,
                     [9, "f", 0, 0, H], [10, "f", 0, 10, b"short"]])
        batch = await q.get()
        assert batch == [[7, "f", 0, 10, H], [8], [0], [0], [9], [10]]

    asyncio.run(go())


def test_close_wakes_a_waiting_put_and_the_server():
    async def go():
        q = RequestQueue(max_items=4)
        await q.put(_items(4))
        waiter = asyncio.create_task(q.put(_items(4)))
        await asyncio.sleep(0.02)
        q.close()
        await asyncio.wait_for(waiter, 1)
        assert await asyncio.wait_for(q.get(), 1) is None
        assert q.items == 0 and q.bytes == 0

    asyncio.run(go())
