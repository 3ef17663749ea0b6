"""cancel_and_wait ends a task even when it swallows a cancellation (Python 3.11's
asyncio.wait_for can, and the app once hung on SIGTERM that way)."""

from __future__ import annotations

import asyncio

from app.aio import cancel_and_wait


def test_a_task_that_swallows_a_cancellation_still_ends():
    swallowed = []

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if not swallowed:  # what a lost cancellation looks like to the caller
                    swallowed.append(True)
                    continue
                raise

    async def main() -> None:
        task = asyncio.create_task(stubborn())
        await asyncio.sleep(0)
        await asyncio.wait_for(cancel_and_wait(task), 5)
        assert task.cancelled() and swallowed

    asyncio.run(main())


def test_a_task_that_failed_or_finished_is_left_as_it_is():
    async def fails() -> None:
        raise ValueError("boom")

    async def main() -> None:
        task = asyncio.create_task(fails())
        await asyncio.sleep(0)
        await cancel_and_wait(task)  # its exception is retrieved, not raised
        assert isinstance(task.exception(), ValueError)

    asyncio.run(main())
