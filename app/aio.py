"""Small asyncio helpers the engine, the network code and the window's worker share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import TypeVar

T = TypeVar("T")


async def cancel_and_wait(task: asyncio.Task) -> None:
    """Cancel task and wait until it has ended, whatever it makes of the cancellation.

    On Python 3.11, `asyncio.wait_for` can swallow a cancellation that arrives just as
    its inner awaitable completes (fixed in 3.12): a loop built on it then runs on,
    and a plain `task.cancel(); await task` waits for ever (the app once hung on
    SIGTERM this way). So the task is cancelled again until it has ended.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    with contextlib.suppress(BaseException):
        task.result()  # retrieved: never "exception was never retrieved"


async def unless_stopped(work: Awaitable[object], stop: asyncio.Event) -> bool:
    """Await work unless stop is set first: True when work ended first (its failure is
    raised here), False when stop came first (work is cancelled and waited for).

    A node's start may be long (a big folder's first scan) or wait for ever (an index on
    a full disk waits for space): a stop must end it all the same.
    """
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ended = task.done()
        await cancel_and_wait(stopping)
        if not ended:
            await cancel_and_wait(task)
    if ended:
        task.result()
    return ended


class Pulse:
    """A counted event: a task that reads `count`, then looks at what changed (awaiting
    meanwhile), then waits with `wait_beyond(count)`, cannot miss a change that came
    while it looked. (An Event cleared after the look loses that one: a peer was then
    never sent our newest entries, and its sync timed out.)
    """

    def __init__(self) -> None:
        self.count = 0
        self._event = asyncio.Event()

    def set(self) -> None:
        self.count += 1
        self._event.set()  # wakes whoever waits now; later waiters get a fresh event
        self._event = asyncio.Event()

    async def wait_beyond(self, count: int) -> None:
        while self.count == count:
            await self._event.wait()


async def opened_in_thread(executor: Executor | None, opener: Callable[[], T],
                           close: Callable[[T], object]) -> T:
    """opener() in a worker thread, and what it opened; if the wait is cancelled, that
    is closed once the thread is done (a thread cannot be stopped half-way, and what it
    opens would otherwise be left open: descriptors, a watcher's threads)."""
    opening = asyncio.get_running_loop().run_in_executor(executor, opener)
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(
            lambda f: f.cancelled() or f.exception() is not None or close(f.result()))
        raise
