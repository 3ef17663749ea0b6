"""A child's own peak RSS, read from /proc while it runs.

Not `ru_maxrss` from `os.wait4`: Linux records the exec'ing mm's high-water mark into
the child's maxrss, and that mm is a copy of (or, with vfork, is) the bench process's,
so every child reported at least the bench's own RSS at spawn time (`/bin/true` spawned
by a 360 MB Python reports 358 MB). `VmHWM` belongs to the new mm alone; it only grows,
so polling it until the process is gone misses at most the last few milliseconds.
"""
from __future__ import annotations

import re
import threading
from pathlib import Path

_HWM = re.compile(rb"^VmHWM:\s+(\d+) kB", re.M)


def vmhwm_kib(pid: int) -> int | None:
    """The process's peak RSS so far, in KiB; None once it is gone (or a zombie)."""
    try:
        m = _HWM.search(Path(f"/proc/{pid}/status").read_bytes())
    except OSError:
        return None
    return int(m.group(1)) if m else None


class PeakRss:
    """Polls /proc/PID/status VmHWM every `every` seconds until the process exits."""

    def __init__(self, pid: int, every: float = 0.005) -> None:
        self._pid = pid
        self._every = every
        self._kib = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._done.is_set():
            kib = vmhwm_kib(self._pid)
            if kib is None:  # exited
                return
            self._kib = max(self._kib, kib)
            self._done.wait(self._every)

    def stop_mib(self) -> float:
        """The peak seen, in MiB; call after the process has exited."""
        self._done.set()
        self._thread.join()
        return self._kib / 1024
