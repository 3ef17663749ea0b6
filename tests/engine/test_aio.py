"""cancel_and_wait ends a task even when it swallows a cancellation (Python 3.11's
asyncio.wait_for can, and the app once hung on SIGTERM that way)."""

from __future__ import annotations

import asyncio
import threading

from app.aio import Pulse, cancel_and_wait, opened_in_thread, unless_stopped


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


def test_a_pulse_that_came_while_a_task_looked_is_not_missed():
    async def main() -> bool:
        pulse = Pulse()
        seen = pulse.count
        await asyncio.sleep(0)  # the look (a read in a worker thread, say)...
        pulse.set()  # ...during which a change comes in
        try:
            await asyncio.wait_for(pulse.wait_beyond(seen), 1.0)
        except TimeoutError:
            return False
        seen = pulse.count
        waiter = asyncio.create_task(pulse.wait_beyond(seen))
        await asyncio.sleep(0.01)
        assert not waiter.done()  # nothing new: it waits
        pulse.set()
        await asyncio.wait_for(waiter, 1.0)
        return True

    assert asyncio.run(main())


def test_what_a_thread_opens_for_a_cancelled_wait_is_closed_once_open():
    closed: list[str] = []
    release = threading.Event()

    def opener() -> str:
        release.wait(5)  # still opening when the wait is cancelled
        return "thing"

    async def main() -> None:
        waiter = asyncio.create_task(opened_in_thread(None, opener, closed.append))
        await asyncio.sleep(0.05)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        assert closed == []  # not open yet: nothing to close
        release.set()
        for _ in range(100):
            if closed:
                break
            await asyncio.sleep(0.01)
        assert closed == ["thing"]
        assert await opened_in_thread(None, lambda: "kept", closed.append) == "kept"
        assert closed == ["thing"]  # a wait that ends keeps what was opened

    asyncio.run(main())


def test_unless_stopped_ends_long_work_at_a_stop_and_passes_on_its_failure():
    """A start that waits for ever (an index on a full disk) ends at a stop, its
    cleanup run; a start that fails first raises its own error, not a False."""
    cleaned = []

    async def waits_for_ever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append(True)

    async def fails() -> None:
        raise ValueError("boom")

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, stop.set)
        assert await asyncio.wait_for(unless_stopped(waits_for_ever(), stop), 5) is False
        assert cleaned == [True]
        assert await unless_stopped(asyncio.sleep(0), asyncio.Event()) is True
        try:
            await unless_stopped(fails(), asyncio.Event())
        except ValueError as e:
            assert str(e) == "boom"
        else:
            raise AssertionError("the failure was swallowed")

    asyncio.run(main())
