"""The loop-lag probe's developer aid (P2PSYNC_STALL_STACKS): it names what held the
loop, and falls silent when the probe ends (in a test run, the thread that ran the
loop goes on to run the next test, which is no stall of anyone's)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from app.engine.looplag import LoopLag


def _hold_the_loop() -> None:
    time.sleep(0.3)


def _probe_around(lag: LoopLag, busy: Callable[[], object]) -> None:
    """Run the probe in a loop of its own while `busy` holds that loop, then end it."""

    async def main() -> None:
        probe = asyncio.create_task(lag.run())
        await asyncio.sleep(0.05)
        busy()
        await asyncio.sleep(0.05)
        probe.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probe

    asyncio.run(main())


def test_the_stall_aid_names_what_held_the_loop_and_ends_with_the_probe(monkeypatch, caplog):
    monkeypatch.setenv("P2PSYNC_STALL_STACKS", "1")
    lag = LoopLag()
    with caplog.at_level(logging.WARNING, logger="app.engine.looplag"):
        _probe_around(lag, _hold_the_loop)
        during = [r.getMessage() for r in caplog.records]
        caplog.clear()
        time.sleep(0.4)  # the same thread, busy with no loop: nothing to report
        after = [r.getMessage() for r in caplog.records]
    assert any("event loop busy" in m and "_hold_the_loop" in m for m in during), during
    assert lag.stalls == 1
    assert after == []


def test_the_stall_aid_logs_long_garbage_collections_while_the_probe_runs(monkeypatch, caplog):
    """A collection holds the GIL, so the stack watcher cannot see one: it is logged."""
    import gc

    from app.engine import looplag

    monkeypatch.setenv("P2PSYNC_STALL_STACKS", "1")
    monkeypatch.setattr(looplag, "GC_LOGGED", 0.0)
    lag = LoopLag()
    with caplog.at_level(logging.WARNING, logger="app.engine.looplag"):
        _probe_around(lag, gc.collect)
        during = [r.getMessage() for r in caplog.records]
        caplog.clear()
        gc.collect()
        after = [r.getMessage() for r in caplog.records]
    assert any("garbage collection of generation 2 took" in m for m in during), during
    assert after == []
