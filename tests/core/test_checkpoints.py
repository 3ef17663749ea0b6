"""The index's WAL is copied into the database by a thread of its own.

SQLite's own checkpoint runs inside the commit that crosses 1,000 pages, in whichever
thread commits, and the engine commits on its event loop: a million renamed files made
42 loop stalls of up to a second that way. Counted, not timed: the writing connection
never checkpoints (below its backstop), the thread does, and closing stops it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from types import SimpleNamespace

from app.core import checkpoints
from app.core.index import Index
from app.core.model import FileEntry, Kind

DEV = "AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"


def _entries(start: int, n: int) -> list[FileEntry]:
    return [FileEntry(f"d/f{i:06}.txt", Kind.FILE, size=10, mtime_ns=i, mode=0o644,
                      hash=b"h" * 32, blocks=b"b" * 32, version={DEV: i + 1},
                      modified_by=DEV) for i in range(start, start + n)]


def _wal_pages(db_path) -> int:
    wal = f"{db_path}-wal"
    return os.path.getsize(wal) // 4096 if os.path.exists(wal) else 0


def test_commits_leave_the_checkpoint_to_a_thread_of_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "GATHER_S", 0.05)
    db_path = tmp_path / "index.db"
    with Index(db_path, DEV) as index:
        pragma = index._main.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert pragma == checkpoints.BACKSTOP_PAGES  # the writer leaves it alone
        for start in range(0, 20_000, 2000):
            index.put_local(_entries(start, 2000))
        assert any(t.name == "p2psync-checkpoint" for t in threading.enumerate())
        deadline = time.monotonic() + 30  # only a checkpoint makes the database file grow
        while os.path.getsize(db_path) < 1_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.getsize(db_path) > 1_000_000, (os.path.getsize(db_path),
                                                      _wal_pages(db_path))
    assert not any(t.name == "p2psync-checkpoint" for t in threading.enumerate())
    with Index(db_path, DEV) as again:
        assert again.get("d/f019999.txt") is not None


def test_without_a_connection_of_its_own_the_writer_checkpoints_itself(tmp_path, monkeypatch):
    """Out of descriptors, the checkpoint thread cannot connect: it ends, and the index
    goes on (its writer checkpoints past the backstop) and closes cleanly."""
    def refuse(*args, **kwargs):
        raise sqlite3.OperationalError("unable to open database file")

    # the checkpoint thread's sqlite3 alone: the index's own connections still open
    monkeypatch.setattr(checkpoints, "sqlite3", SimpleNamespace(connect=refuse,
                                                                Error=sqlite3.Error))
    db_path = tmp_path / "index.db"
    with Index(db_path, DEV) as index:
        index.put_local(_entries(0, 500))
        deadline = time.monotonic() + 10
        while any(t.name == "p2psync-checkpoint" for t in threading.enumerate()) and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(t.name == "p2psync-checkpoint" for t in threading.enumerate())
        index.put_local(_entries(500, 500))  # commits go on, and poke no dead thread
        assert index.get("d/f000999.txt") is not None
    monkeypatch.undo()
    with Index(db_path, DEV) as again:
        assert again.get("d/f000999.txt") is not None


def test_a_stop_as_the_gather_ends_still_ends_the_thread(tmp_path, monkeypatch):
    """`stop` landing between the gather's end and the clearing of the wake-up: its
    wake-up is cleared, and the thread must still see the stop (a node's exit hung here,
    29 times in 2,000 tries with a short gather)."""
    monkeypatch.setattr(checkpoints, "GATHER_S", 0.01)
    db_path = str(tmp_path / "x.db")
    writer = sqlite3.connect(db_path)
    writer.execute("PRAGMA journal_mode=WAL")
    cp = checkpoints.Checkpointer(db_path, writer)
    stopper = threading.Thread(target=cp.stop, daemon=True)

    class StopLandsHere(threading.Event):
        def clear(self) -> None:
            if not stopper.is_alive() and not cp._stop.is_set():
                stopper.start()  # sets the stop, then the wake-up, then joins us
                cp._stop.wait(5)
                time.sleep(0.05)  # its wake-up too
            super().clear()

    cp._wake = StopLandsHere()
    cp.poke()
    stopper_started = time.monotonic()
    while not stopper.is_alive() and time.monotonic() - stopper_started < 5:
        time.sleep(0.01)
    stopper.join(5)
    assert not stopper.is_alive(), "stop() waits for ever for the checkpoint thread"
    writer.close()
