"""lstat of a scan's listed entries in a thread of its own, ahead of the scan.

Why: a scan of a big unchanged folder is an lstat per entry and a little Python
around each (the lstat was half of a no-op `sync`'s scan thread at 300,000 files,
py-spy). The system call lets go of the GIL, so a second thread makes the calls while
the scan compares. The scan never waits for it: an entry whose result is not there
yet when the scan comes to it is stat'ed by the scan itself, as without this module.

Work goes newest first: the scan visits a directory's entries right after it listed
them (a depth-first walk in path order), so the latest listing is what it needs next,
and a listing of 10,000 subdirectories waits at the bottom until the thread is idle.
A batch the scan overtook is skipped, not stat'ed for nothing.
"""

from __future__ import annotations

import os
import threading

BATCH = 64  # entries per unit of work


class Batch:
    """Paths whose lstat results (an os.stat_result or the OSError) come in `results`."""

    __slots__ = ("paths", "results", "overtaken")

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self.results: list[os.stat_result | OSError] | None = None
        self.overtaken = False


class StatAhead:
    """One thread that stats submitted paths, newest batches first (see the module)."""

    def __init__(self) -> None:
        self._stack: list[Batch] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True,
                                         name="p2psync-stat-ahead")
        self._thread.start()

    def submit(self, paths: list[str]) -> list[Batch]:
        """Batches of `paths` in order; path k is in batch k // BATCH at k % BATCH."""
        batches = [Batch(paths[i:i + BATCH]) for i in range(0, len(paths), BATCH)]
        with self._cond:
            self._stack.extend(reversed(batches))  # the first batch on top
            self._cond.notify()
        return batches

    def lstat(self, batch: Batch, k: int, path: str) -> os.stat_result:
        """The lstat of `path` (slot k of batch): from the thread when it is there,
        else now, here. Raises the OSError the call raised."""
        results = batch.results
        if results is None or batch.paths[k] != path:
            batch.overtaken = True
            return os.lstat(path)
        got = results[k]
        if isinstance(got, OSError):
            raise got
        return got

    def close(self) -> None:
        """Stop the thread (what it holds is dropped); waits for its current batch."""
        with self._cond:
            self._closed = True
            self._stack.clear()
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stack and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                batch = self._stack.pop()
            if batch.overtaken:
                continue
            results: list[os.stat_result | OSError] = []
            for path in batch.paths:
                try:
                    results.append(os.lstat(path))
                except OSError as e:
                    results.append(e)
            batch.results = results
