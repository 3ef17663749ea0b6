"""How much of this device's files each peer still lacks: the peers view's completion.

A peer is complete when it holds our version (or a later one) of every file we have:
what it announced is in our index (`remote_files`), so this is read from there, with
no question on the wire. Our file counts when the peer has no entry for it, or one
that our version beats or conflicts with; a file it changed after seeing ours is ours
to fetch, not its. Ignored files, files in error and directories do not count.

Kept current at little cost, like app.gui.filestates: the first call reads every file
once, later calls only the paths whose local entry, or whose entry that peer
announced, changed since (found by sequence numbers). Qt-free; run in a worker thread
on a connection of its own (WAL: a reader never blocks the engine's writer).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from app.core import versions
from app.core.model import Kind
from app.gui.filestates import KNOWN_SCHEMAS  # the schemas whose columns these queries read

log = logging.getLogger(__name__)

BATCH = 500

# a peer holding exactly our version has a `remote_same` row; one holding another version
# we do not dominate, a `remote_files` row; one holding a version ours beats, no row
_NEED_SQL = f"""
SELECT f.path, f.size, f.version,
  CASE WHEN EXISTS (SELECT 1 FROM remote_same s WHERE s.path = f.path AND s.device = :dev)
    THEN f.version ELSE r.version END
FROM files f LEFT JOIN remote_files r ON r.device = :dev AND r.path = f.path
WHERE NOT f.deleted AND f.kind != {int(Kind.DIR)} AND f.error = ''
  AND f.path NOT IN (SELECT path FROM ignored)
"""
_TOTAL_SQL = f"""
SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files
WHERE NOT deleted AND kind != {int(Kind.DIR)} AND error = ''
  AND path NOT IN (SELECT path FROM ignored)
"""


@dataclass(frozen=True)
class Need:
    """What one peer lacks of ours: files and bytes, out of everything we have."""

    files: int
    bytes: int
    total_files: int
    total_bytes: int

    @property
    def fraction(self) -> float:
        """0..1 of ours it holds: by bytes, by files when what it lacks is empty files."""
        if self.files == 0:
            return 1.0
        if self.total_bytes and self.bytes:
            return max(0.0, 1.0 - self.bytes / self.total_bytes)
        return max(0.0, 1.0 - self.files / self.total_files) if self.total_files else 0.0


@dataclass
class _Peer:
    index_id: bytes
    seq: int
    need: dict[str, int] = field(default_factory=dict)  # path -> size


def _lacks(ours: bytes, theirs: bytes | None) -> bool:
    if theirs is None:
        return True
    if bytes(ours) == bytes(theirs):
        return False
    order = versions.compare(versions.decode(bytes(ours)), versions.decode(bytes(theirs)))
    return order in (versions.Order.NEWER, versions.Order.CONCURRENT)


class Completion:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._peers: dict[str, _Peer] = {}
        self._local_seq = -1
        self._totals = (0, 0)

    @classmethod
    def open(cls, db_path: Path) -> Completion | None:
        """On a connection of its own; None (no completion shown) for an unknown schema."""
        try:
            db = sqlite3.connect(os.fspath(db_path), check_same_thread=False, timeout=30)
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.Error as e:
            log.info("no completion of the peers (%s)", e)
            return None
        if row is None or int(row[0]) not in KNOWN_SCHEMAS:
            db.close()
            log.info("index schema %s: no completion of the peers", row)
            return None
        return cls(db)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()

    def needs(self, devices: Iterable[str]) -> dict[str, Need]:
        """device -> what it lacks of ours now (devices we know nothing of lack it all)."""
        devices = list(devices)
        local_seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM files").fetchone()[0]
        remotes = {r[0]: (bytes(r[1]), r[2]) for r in self._db.execute(
            "SELECT device, index_id, max_seq FROM remotes")}
        changed: set[str] = set()
        if local_seq != self._local_seq:
            self._totals = tuple(self._db.execute(_TOTAL_SQL).fetchone())
            if self._local_seq >= 0:
                changed = {r[0] for r in self._db.execute(
                    "SELECT path FROM files WHERE seq > ?", (self._local_seq,))}
        for device in devices:
            index_id, max_seq = remotes.get(device, (b"", 0))
            peer = self._peers.get(device)
            if peer is None or peer.index_id != index_id or self._local_seq < 0:
                peer = self._peers[device] = _Peer(index_id, max_seq)
                self._evaluate(device, peer, None)
                continue
            todo = set(changed)
            if max_seq != peer.seq:
                todo.update(r[0] for r in self._db.execute(
                    "SELECT path FROM remote_files WHERE device = :dev AND seq > :seq "
                    "UNION SELECT path FROM remote_same WHERE device = :dev AND seq > :seq",
                    {"dev": self._ref(device), "seq": peer.seq}))
                peer.seq = max_seq
            if todo:
                self._evaluate(device, peer, sorted(todo))
        for device in set(self._peers) - set(devices):
            del self._peers[device]
        self._local_seq = local_seq
        files, nbytes = self._totals
        return {d: Need(len(p.need), sum(p.need.values()), files, nbytes)
                for d, p in self._peers.items()}

    def _ref(self, device: str) -> int:
        """The number the index stores the device as (-1: it never named it)."""
        row = self._db.execute("SELECT id FROM devices WHERE device = ?", (device,)).fetchone()
        return -1 if row is None else row[0]

    def _evaluate(self, device: str, peer: _Peer, paths: list[str] | None) -> None:
        dev = {"dev": self._ref(device)}
        if paths is None:
            peer.need = {path: size for path, size, ours, theirs
                         in self._db.execute(_NEED_SQL, dev) if _lacks(ours, theirs)}
            return
        for i in range(0, len(paths), BATCH):
            chunk = paths[i : i + BATCH]
            for path in chunk:
                peer.need.pop(path, None)
            marks = ", ".join(f":p{i}" for i in range(len(chunk)))
            args = {**dev, **{f"p{i}": p for i, p in enumerate(chunk)}}
            for path, size, ours, theirs in self._db.execute(
                    _NEED_SQL + f" AND f.path IN ({marks})", args):
                if _lacks(ours, theirs):
                    peer.need[path] = size
