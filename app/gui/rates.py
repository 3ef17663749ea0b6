"""Transfer speeds as people read them: averaged over a few seconds, zero when idle.

A connection counts the bytes it moved; the window samples those counters often and
shows, per device, what moved over the last WINDOW seconds divided by that time. A
burst shows for WINDOW seconds at most, a steady transfer reads steady, and once
nothing has moved for WINDOW seconds the speed is exactly zero (no decaying average
that still says 94 KB/s five seconds after the end). Below IDLE_BELOW a direction
reads zero: the keep-alives a connection exchanges are not a transfer. Qt-free, clock
passed in.
"""

from __future__ import annotations

from collections import deque

WINDOW = 3.0  # seconds
IDLE_BELOW = 1024.0  # bytes/s: keep-alives and state messages (tens of bytes/s) are no transfer


class RateMeter:
    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self._samples: dict[str, deque[tuple[float, int, int]]] = {}

    def sample(self, key: str, now: float, bytes_in: int, bytes_out: int) -> None:
        q = self._samples.setdefault(key, deque())
        q.append((now, bytes_in, bytes_out))
        # keep one sample at or before the window's start: the baseline of the average
        while len(q) > 2 and q[1][0] <= now - self.window:
            q.popleft()

    def rate(self, key: str, now: float) -> tuple[float, float]:
        """(bytes in, bytes out) per second over the last `window` seconds."""
        q = self._samples.get(key)
        if not q or len(q) < 2:
            return 0.0, 0.0
        base, last = q[0], q[-1]
        span = now - base[0]  # the window, or less for a connection younger than that
        if span <= 0:
            return 0.0, 0.0
        down, up = max(0, last[1] - base[1]) / span, max(0, last[2] - base[2]) / span
        return (down if down >= IDLE_BELOW else 0.0, up if up >= IDLE_BELOW else 0.0)

    def keep_only(self, keys: set[str]) -> None:
        """Forget the devices no longer connected (a new connection counts from zero)."""
        for key in set(self._samples) - keys:
            del self._samples[key]
