"""The index on a disk that is full: a transaction the disk refused leaves nothing behind.

A small tmpfs holds the database (skips where mounting is refused). SQLite writes a
transaction's pages to its WAL at COMMIT, so on a full disk it is the COMMIT that
fails, after SQLite rolled the transaction back itself.
"""

from __future__ import annotations

import os
import sqlite3

import pytest

from app.core.index import Index
from app.core.model import FileEntry
from tests.procs import fill, tmpfs

ME = "AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"
X = "XXXXXXX-XXXXXXX-XXXXXXX-XXXXXXX-XXXXXXX"
Y = "YYYYYYY-YYYYYYY-YYYYYYY-YYYYYYY-YYYYYYY"


def _entries(device: str, prefix: str, count: int) -> list[FileEntry]:
    out = []
    for i in range(count):
        e = FileEntry(f"{prefix}{i}", blocks=os.urandom(32), hash=os.urandom(32),
                      version={device: i + 1}, modified_by=device)
        e.seq = i + 1
        out.append(e)
    return out


def test_a_commit_the_full_disk_refused_forgets_the_device_numbers_made_in_it(tmp_path):
    with tmpfs(tmp_path / "disk", "2m") as disk, Index(disk / "index.db", ME) as ix:
        ix.put_remote(ME, b"seed", _entries(ME, "seed", 1), 1)
        ix._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the next commit must grow it
        filler = fill(disk)
        x = _entries(X, "x", 40)
        with pytest.raises(sqlite3.OperationalError, match="full"):
            ix.put_remote(X, b"id-x", x, len(x))
        assert not ix._db.in_transaction
        filler.unlink()
        # X's number was made in the refused transaction; Y is the next device stored
        ix.put_remote(Y, b"id-y", _entries(Y, "y", 1), 1)
        ix.put_remote(X, b"id-x", x, len(x))
        assert ix.remote_get(Y, "y0").version == {Y: 1}
        assert ix.remote_get(X, "x0").version == {X: 1}
        assert ix.remote_get(X, "x0").modified_by == X
        assert ix.remote_devices() == sorted([ME, X, Y])
