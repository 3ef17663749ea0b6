"""How long the event loop keeps a task waiting: the probe behind "no stall over 100 ms".

Everything a node does for its peers (pings, answers, index batches) runs on one
event loop, so a callback that runs for seconds (an O(n) pass over the index, a
long SQL query) makes a peer drop us for "no answer". The probe is a task that
asks to sleep a short while and measures how late it wakes: the worst delay is
about the longest time anything held the loop. It logs the worst of each minute
at debug level (`-v`), one warning when the loop was blocked for over a second,
and a summary when the node stops (what bench/bench_sync.py reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
import threading
import time
import traceback

log = logging.getLogger(__name__)

SWITCH_INTERVAL = 0.001  # seconds a busy thread may keep the GIL from the loop (5 ms default)
TICK = 0.02  # how often the probe asks to be woken
STALL = 0.1  # a delay above this counts as a stall
BLOCKED = 1.0  # a delay above this is worth a warning: peers drop us after 6 s
REPORT_EVERY = 60.0


def keep_loop_responsive() -> None:
    """Let the loop thread have the GIL back sooner from busy worker threads.

    The loop gives the GIL away at every system call (a socket write, an SQLite step);
    a worker thread that is planning or writing keeps it for up to the switch interval
    each time. At the default 5 ms a few hundred such calls in one callback add up
    to a stall peers notice.
    """
    sys.setswitchinterval(float(os.environ.get("P2PSYNC_SWITCH", SWITCH_INTERVAL)))


class LoopLag:
    """Wake-up delays of the running loop: the worst ever, per minute, and the stalls."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.stalls = 0  # delays over STALL
        self._minute_worst = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_report = loop.time() + REPORT_EVERY
        ended = threading.Event()
        if os.environ.get("P2PSYNC_STALL_STACKS"):  # a developer's aid: what blocks the loop
            self._beat = time.monotonic()
            threading.Thread(target=self._watch, args=(threading.get_ident(), ended),
                             daemon=True).start()
            _log_long_collections()
        try:
            while True:
                asked = loop.time()
                await asyncio.sleep(TICK)
                now = loop.time()
                self._beat = time.monotonic()
                self.note(now - asked - TICK)
                if now >= next_report:
                    log.debug("event loop: worst wake-up delay %.0f ms in the last minute",
                              self._minute_worst * 1000)
                    self._minute_worst = 0.0
                    next_report = now + REPORT_EVERY
        finally:
            ended.set()  # the watcher ends with the probe: that thread runs other things then
            with contextlib.suppress(ValueError):
                gc.callbacks.remove(_on_collection)

    def _watch(self, loop_thread: int, ended: threading.Event) -> None:
        """Log the loop thread's stack while it has not ticked for over STALL, and the
        other threads' innermost frames: a loop waiting in `select` is waiting for the
        GIL, and one of them has it."""
        me = threading.get_ident()
        while not ended.wait(STALL / 2):
            held = time.monotonic() - self._beat
            if held > STALL:
                frames = sys._current_frames()
                frame = frames.get(loop_thread)
                if frame is None:
                    continue
                others = "".join(
                    f"  [{tid}] " + "  ".join(traceback.format_stack(f)[-3:]).lstrip()
                    for tid, f in frames.items() if tid not in (loop_thread, me))
                log.warning("event loop busy for %.0f ms so far in:\n%s  other threads:\n%s",
                            held * 1000,
                            "".join(traceback.format_stack(frame)[-12:]), others)

    def note(self, delay: float) -> None:
        """Count one measured delay (seconds)."""
        delay = max(delay, 0.0)
        self.worst = max(self.worst, delay)
        self._minute_worst = max(self._minute_worst, delay)
        if delay > STALL:
            self.stalls += 1
        if delay > BLOCKED:
            log.warning("the event loop was blocked for %.1f s", delay)

    def summary(self) -> str:
        return (f"event loop: worst wake-up delay {self.worst * 1000:.0f} ms, "
                f"{self.stalls} over {STALL * 1000:.0f} ms")


_collection_started: list[float] = []
GC_LOGGED = 0.02  # seconds: collections longer than this are logged by the stall aid


def _log_long_collections() -> None:
    """Log every garbage collection over GC_LOGGED while the probe runs. A collection
    holds the GIL throughout, so the stack watcher cannot run during one: a stall it
    caused shows no stack, only this line."""
    if _on_collection not in gc.callbacks:
        gc.callbacks.append(_on_collection)


def _on_collection(phase: str, info: dict) -> None:
    if phase == "start":
        _collection_started[:] = [time.perf_counter()]
    elif _collection_started:
        took = time.perf_counter() - _collection_started[0]
        if took > GC_LOGGED:
            log.warning("garbage collection of generation %d took %.0f ms (%d collected)",
                        info["generation"], took * 1000, info["collected"])
