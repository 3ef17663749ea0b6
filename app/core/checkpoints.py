"""Copying the index's write-ahead log into the database, off the writing threads.

SQLite does this by itself at the commit that takes the WAL past 1,000 pages, in the
thread that commits: that commit then copies megabytes and flushes the database file
to the disk, over a second on a busy disk. The engine commits on its event loop (a
peer's index batch, a finished step), so that stalled the loop: 42 stalls of up to
1,053 ms in one sync of a million renamed files. Here a thread of its own, on a
connection of its own, checkpoints in PASSIVE mode (it waits for nobody and nobody
waits for it) a moment after commits; the writing connection only checkpoints
itself past `BACKSTOP_PAGES`, should this thread not keep up or not be running.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger(__name__)

GATHER_S = 0.5  # commits in this long after a first one share its checkpoint
BACKSTOP_PAGES = 16384  # 64 MiB of WAL: the writer's own checkpoint, as a last resort


class Checkpointer:
    """Started by the first commit's `poke`; `stop` before the database is closed."""

    def __init__(self, path: str, writer: sqlite3.Connection) -> None:
        self._path = path
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        writer.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")

    def poke(self) -> None:
        """A commit happened: checkpoint soon."""
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stop.is_set():
                    self._thread = threading.Thread(target=self._run, daemon=True,
                                                    name="p2psync-checkpoint")
                    self._thread.start()
        self._wake.set()

    def stop(self) -> None:
        """Wait for a checkpoint in progress; no other starts."""
        with self._lock:
            self._stop.set()
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None,
                                 timeout=30)
        except sqlite3.Error as e:  # no descriptor left, say: the writer checkpoints
            log.debug("no checkpoint thread (%s): the writer checkpoints itself", e)
            return
        try:
            # Checked at each turn, not only in the gather: a `stop` between the gather's
            # end and the clear below has its wake cleared, and the next wait would be
            # for ever (a node's exit hung on it, 29 times in 2,000 tries).
            while not self._stop.is_set():
                self._wake.wait()
                if self._stop.wait(GATHER_S):
                    return
                self._wake.clear()
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as e:  # a full disk, say: the next commit tries again
                    log.debug("checkpoint failed: %s", e)
        finally:
            db.close()
