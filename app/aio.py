"""Small asyncio helpers the engine, the network code and the window's worker share."""

from __future__ import annotations

import asyncio
import contextlib


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
