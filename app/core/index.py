"""The per-folder SQLite index: our entries, where our blocks are, what peers announced.

One database file per folder. Local entries get a strictly increasing sequence
number on every change, so a peer can ask for "everything after seq N" and resume
an interrupted exchange. The random `index_id` names this particular history: if
the database is ever recreated, peers see a new id and start over instead of
trusting seq numbers of a history that no longer exists.

Versions are stored as `versions.encode` bytes (canonical), so SQL can find paths
whose versions differ without decoding anything in Python.

The connection is shared between the engine's loop thread and a scanner thread:
`check_same_thread=False`, and every public method holds one RLock.

What one peer announced is bounded (`RemoteLimits`): at most so many paths and so
many bytes of entries per device. Beyond that `put_remote` refuses its new paths
(and updates that would grow past the budget): a member cannot make our index, or
the memory that planning over it takes, grow without end. A deletion of a path we
never had is kept but not acted on (see `differing_paths`), so announcing junk
deletions does not make us adopt them and pass them on to the other devices.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from app.core import private, versions
from app.core.model import HASH_LEN, FileEntry, Kind

_ENTRY_COLS = (
    "path, kind, size, mtime_ns, mode, hash, blocks, target, version, modified_by, "
    "deleted, seq, inode, error, ctime_ns"
)
# Small columns first and `blocks` (up to 256 KiB for a 1 GiB file) last, so that
# reading the others never has to walk a row's overflow pages.
_ENTRY_DEF = """
    path TEXT NOT NULL,
    kind INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    version BLOB NOT NULL,
    hash BLOB NOT NULL,
    target TEXT NOT NULL,
    modified_by TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    error TEXT NOT NULL,
    blocks BLOB NOT NULL
"""

# Numbered migrations: MIGRATIONS[i] brings schema_version i to i + 1. Append only;
# never edit one that has shipped. differing_paths names files_path_version and
# remote_files_path (INDEXED BY): later migrations must keep them.
MIGRATIONS: list[str] = [
    f"""
    CREATE TABLE files ({_ENTRY_DEF}, PRIMARY KEY (path));
    CREATE UNIQUE INDEX files_seq ON files (seq);
    CREATE INDEX files_path_version ON files (path, version);
    CREATE TABLE blocks (
        hash BLOB NOT NULL,
        path TEXT NOT NULL,
        idx INTEGER NOT NULL,
        PRIMARY KEY (path, idx)
    ) WITHOUT ROWID;
    CREATE INDEX blocks_hash ON blocks (hash);
    CREATE TABLE remotes (
        device TEXT PRIMARY KEY,
        index_id BLOB NOT NULL,
        max_seq INTEGER NOT NULL
    );
    CREATE TABLE remote_files (device TEXT NOT NULL, {_ENTRY_DEF}, UNIQUE (device, path));
    CREATE INDEX remote_files_path ON remote_files (path, device, version);
    CREATE TABLE ignored (path TEXT PRIMARY KEY) WITHOUT ROWID;
    """,
    # 2: st_ctime_ns of local files, so a rewrite that keeps size, mtime and inode
    # (cp -p, touch -r) is still seen; 0 = unknown, which the next scan re-hashes once.
    """
    ALTER TABLE files ADD COLUMN ctime_ns INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE remote_files ADD COLUMN ctime_ns INTEGER NOT NULL DEFAULT 0;
    """,
]


# local_brief rows: (path, state, size, mtime_ns, mode, inode_db, ctime_ns). Plain tuples
# on purpose: building 10,000 objects per rescan would cost more than the walk itself.
Brief = tuple[str, int, int, int, int, int, int]
BRIEF_DELETED = -1  # state of a deleted tombstone
BRIEF_ERROR = -2  # state of an entry with an error set (always worth a closer look)
# otherwise the state is the entry's Kind


FAILURES_KEY = "sync_failures"  # meta: JSON {path: why} of what the node could not sync
FAILURES_GEN_KEY = "sync_failures_gen"
NAMES_KEY = "device_names"  # meta: JSON {device ID: name} of the devices seen lately


@dataclass(frozen=True)
class RemoteLimits:
    """What the entries one remote device announced may take in our index.

    About twice the largest share this app is built and tested for (100,000 files,
    each entry a few hundred bytes): an honest device stays well below it, and a
    member that announces junk costs at most this much disk and planning memory.
    """

    entries: int = 250_000
    bytes: int = 64 * 1024 * 1024  # as counted by `entry_cost`
    # Paths new to us one device announced, planned at a time (`differing_entries`):
    # what a plan costs in memory and time stays bounded even when they cannot be
    # fetched (a member's junk); the next ones are planned as these are done.
    planned: int = 20_000
    planned_bytes: int = 8 * 1024 * 1024  # and no more than this much of them (one at least)


def entry_cost(e: FileEntry, version_blob: bytes | None = None) -> int:
    """About what one remote entry takes in the index, in bytes.

    The path and the version are stored twice (the table and its path index).
    `_COST_SQL` computes the same from a stored row.
    """
    vlen = len(version_blob if version_blob is not None else versions.encode(e.version))
    return (_ROW_OVERHEAD + 2 * (len(e.path.encode("utf-8", "surrogatepass")) + vlen)
            + len(e.hash) + len(e.blocks) + len(e.target.encode("utf-8", "surrogatepass"))
            + len(e.modified_by))


_ROW_OVERHEAD = 48


def _cost_sql(t: str = "") -> str:
    """`entry_cost` of a stored row, in SQL (`t`: the table's alias and a dot)."""
    return (f"{_ROW_OVERHEAD} + 2 * (length(CAST({t}path AS BLOB)) + length({t}version)) "
            f"+ length({t}hash) + length({t}blocks) + length(CAST({t}target AS BLOB)) "
            f"+ length(CAST({t}modified_by AS BLOB))")


_COST_SQL = _cost_sql()


class IndexTooNew(RuntimeError):
    """The database was written by a newer p2psync with migrations we do not know."""


F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def _locked(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(self: Index, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return fn(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


WAL_SWITCH_TIMEOUT_S = 30.0  # as long as the connection's busy timeout


def _set_wal(db: sqlite3.Connection) -> None:
    """Put the database in WAL mode, waiting for other processes that do it at once.

    Switching a fresh database's journal mode fails at once with "database is locked"
    while another connection holds it (SQLite calls no busy handler there), so `run`
    and `status` opening a new folder's index together would crash one of them.
    """
    deadline = time.monotonic() + WAL_SWITCH_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            if time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


class Index:
    """One folder's index database. Thread-safe; see the module docstring."""

    def __init__(self, db_path: Path | str, device_id: str,
                 remote_limits: RemoteLimits | None = None) -> None:
        self.device_id = device_id
        self.generation = 0  # bumped by every committed write: lets callers cache answers
        self.remote_limits = remote_limits or RemoteLimits()
        self._usage: dict[str, list[int]] = {}  # device -> [entries, bytes] it holds here
        self._lock = threading.RLock()
        private.sqlite_files(Path(db_path))  # 0600, and so SQLite's -wal and -shm
        self._db = sqlite3.connect(
            os.fspath(db_path), check_same_thread=False, isolation_level=None, timeout=30
        )
        try:
            _set_wal(self._db)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
            self.index_id: bytes = self._init_identity()
        except BaseException:
            self._db.close()
            raise

    @property
    def lock(self) -> threading.RLock:
        """The lock every method holds; hold it to make several calls one atomic step."""
        return self._lock

    def close(self) -> None:
        """Close the database; the object is unusable afterwards."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- schema

    @property
    def schema_version(self) -> int:
        return int(self.get_meta("schema_version", 0))

    def _migrate(self) -> None:
        """Apply the missing migrations, each in its own transaction.

        The version is read inside each transaction, so two processes opening the
        same database at once cannot apply a migration twice.
        """
        with self._lock, self._tx():
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value)")
        while True:
            with self._lock, self._tx():
                current = int(self._get_meta("schema_version") or 0)
                if current > len(MIGRATIONS):
                    raise IndexTooNew(
                        f"index schema {current} is newer than this program's "
                        f"{len(MIGRATIONS)}"
                    )
                if current == len(MIGRATIONS):
                    return
                for stmt in _statements(MIGRATIONS[current]):
                    self._db.execute(stmt)
                self._set_meta(("schema_version", current + 1))

    def _init_identity(self) -> bytes:
        with self._lock, self._tx():
            index_id = self._get_meta("index_id")
            if index_id is None:
                index_id = os.urandom(16)
                self._set_meta(("index_id", index_id))
            if self._get_meta("device_id") != self.device_id:
                self._set_meta(("device_id", self.device_id))
        return bytes(index_id)

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """One write transaction (BEGIN IMMEDIATE: take the write lock up front)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        self.generation += 1

    # --- meta

    @_locked
    def get_meta(self, key: str, default: Any = None) -> Any:
        value = self._get_meta(key)
        return default if value is None else value

    @_locked
    def set_meta(self, key: str, value: Any) -> None:
        """Store a str, int, float, bytes or None under key."""
        with self._tx():
            self._set_meta((key, value))

    def _get_meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, item: tuple[str, Any]) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", item)

    # --- local entries

    @_locked
    def get(self, path: str) -> FileEntry | None:
        row = self._db.execute(
            f"SELECT {_ENTRY_COLS} FROM files WHERE path = ?", (path,)
        ).fetchone()
        return None if row is None else _from_row(row)

    @_locked
    def get_many(self, paths: list[str]) -> dict[str, FileEntry]:
        """path -> local entry for those of `paths` that have one: a query per 500 paths."""
        out: dict[str, FileEntry] = {}
        for chunk in _chunks(paths):
            marks = ", ".join("?" * len(chunk))
            for r in self._db.execute(
                    f"SELECT {_ENTRY_COLS} FROM files WHERE path IN ({marks})", chunk):
                out[r[0]] = _from_row(r)
        return out

    @_locked
    def shared_sizes(self, paths: list[str]) -> dict[str, int]:
        """path -> size for those of `paths` that are files we share now (live, readable).

        What serving a batch of block requests needs, without decoding whole entries.
        """
        out: dict[str, int] = {}
        for chunk in _chunks(paths):
            marks = ", ".join("?" * len(chunk))
            out.update(self._db.execute(
                f"SELECT path, size FROM files WHERE path IN ({marks}) "
                "AND kind = ? AND NOT deleted AND error = ''", (*chunk, int(Kind.FILE))))
        return out

    @_locked
    def all_local(self) -> list[FileEntry]:
        """Every local entry, deleted tombstones included, ordered by path."""
        rows = self._db.execute(f"SELECT {_ENTRY_COLS} FROM files ORDER BY path")
        return [_from_row(r) for r in rows]

    @_locked
    def live_file_count(self) -> int:
        """Live files and links (not directories): what the mass-deletion guard compares to."""
        return self._db.execute(
            "SELECT COUNT(*) FROM files WHERE NOT deleted AND kind != ?", (int(Kind.DIR),)
        ).fetchone()[0]

    @_locked
    def max_seq(self) -> int:
        return self._max_seq()

    def _max_seq(self) -> int:
        return self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM files").fetchone()[0]

    @_locked
    def local_since(self, seq: int, limit: int = 1000) -> list[FileEntry]:
        """Entries changed after `seq`, oldest first: one page of an index exchange."""
        rows = self._db.execute(
            f"SELECT {_ENTRY_COLS} FROM files WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        )
        return [_from_row(r) for r in rows]

    @_locked
    def paths_changed_since(self, seq: int) -> set[str]:
        """Paths whose local entry was written after `seq` (cheap: uses the seq index)."""
        return {r[0] for r in self._db.execute("SELECT path FROM files WHERE seq > ?", (seq,))}

    @_locked
    def local_brief(self, under: str | None = None) -> dict[str, Brief]:
        """path -> Brief for all local entries, or for `under` and everything beneath it.

        Lets a rescan of a large unchanged folder compare stat data without decoding
        versions and block lists of every entry. The inode is in database form
        (see `inode_to_db`), so compare it with `inode_to_db(st.st_ino)`.
        """
        sql = (
            f"SELECT path, CASE WHEN deleted THEN {BRIEF_DELETED} "
            f"WHEN error != '' THEN {BRIEF_ERROR} ELSE kind END, "
            "size, mtime_ns, mode, inode, ctime_ns FROM files"
        )
        args: tuple = ()
        if under is not None:
            # "/" is 0x2F and "0" is 0x30: the range holds exactly the paths below `under`
            sql += " WHERE path = ? OR (path >= ? AND path < ?)"
            args = (under, under + "/", under + "0")
        return {r[0]: r for r in self._db.execute(sql, args)}

    @_locked
    def put_local(self, entries: Iterable[FileEntry]) -> None:
        """Store local changes in one transaction, each under a fresh sequence number.

        The seq is written back into each entry only once the transaction committed,
        so a failed write leaves the callers' objects as they were.
        """
        batch = list(entries)
        if not batch:
            return
        with self._tx():
            first = self._max_seq() + 1
            seqs = range(first, first + len(batch))
            self._db.executemany(
                f"INSERT OR REPLACE INTO files ({_ENTRY_COLS}) VALUES ({_QMARKS})",
                (_to_row(e, s) for e, s in zip(batch, seqs, strict=True)),
            )
            self._write_blocks(batch)
        for e, s in zip(batch, seqs, strict=True):
            e.seq = s

    def _write_blocks(self, batch: list[FileEntry]) -> None:
        self._db.executemany("DELETE FROM blocks WHERE path = ?", ((e.path,) for e in batch))
        latest = {e.path: e for e in batch}  # a path twice in a batch: the last one counts
        self._db.executemany(
            "INSERT INTO blocks (hash, path, idx) VALUES (?, ?, ?)",
            (
                (e.blocks[i * HASH_LEN : (i + 1) * HASH_LEN], e.path, i)
                for e in latest.values()
                if e.kind == Kind.FILE and not e.deleted
                for i in range(e.block_count())
            ),
        )

    @_locked
    def set_inode(self, path: str, inode: int, ctime_ns: int = 0) -> None:
        """Update local bookkeeping only: no new version, no new seq."""
        with self._tx():
            self._db.execute("UPDATE files SET inode = ?, ctime_ns = ? WHERE path = ?",
                             (inode_to_db(inode), ctime_ns, path))

    @_locked
    def set_stats(self, items: Iterable[tuple[str, int, int, int]]) -> None:
        """What a scan saw of unchanged entries: (path, inode, ctime_ns, mode).

        Bookkeeping only (no new version, no new seq): a file's identity on disk, or
        permission bits that do not sync (all but the executable bit).
        """
        with self._tx():
            self._db.executemany(
                "UPDATE files SET inode = ?, ctime_ns = ?, mode = ? WHERE path = ?",
                ((inode_to_db(i), c, m, p) for p, i, c, m in items),
            )

    @_locked
    def find_block(self, h: bytes) -> tuple[str, int] | None:
        """Where a block with hash h exists locally, to copy it instead of fetching it.

        The caller must verify the data: the file may have changed since it was indexed.
        """
        row = self._db.execute(
            "SELECT path, idx FROM blocks WHERE hash = ? LIMIT 1", (h,)
        ).fetchone()
        return None if row is None else (row[0], row[1])

    @_locked
    def block_hash_at(self, path: str, idx: int) -> bytes | None:
        """The hash our index holds for block idx of path (None: no such block)."""
        row = self._db.execute(
            "SELECT hash FROM blocks WHERE path = ? AND idx = ?", (path, idx)
        ).fetchone()
        return None if row is None else bytes(row[0])

    @_locked
    def find_blocks(self, hashes: list[bytes]) -> dict[bytes, tuple[str, int]]:
        """find_block for many hashes at once; hashes found nowhere are left out."""
        out: dict[bytes, tuple[str, int]] = {}
        for chunk in _chunks(hashes):
            marks = ", ".join("?" * len(chunk))
            for h, path, idx in self._db.execute(
                    f"SELECT hash, path, idx FROM blocks WHERE hash IN ({marks})", chunk):
                out.setdefault(bytes(h), (path, idx))
        return out

    # --- remote entries

    @_locked
    def remote_state(self, device: str) -> tuple[bytes, int]:
        """(their index_id, highest seq of theirs we hold); (b"", 0) if unknown."""
        row = self._db.execute(
            "SELECT index_id, max_seq FROM remotes WHERE device = ?", (device,)
        ).fetchone()
        return (b"", 0) if row is None else (bytes(row[0]), row[1])

    @_locked
    def put_remote(
        self, device: str, index_id: bytes, entries: Iterable[FileEntry], max_seq: int
    ) -> int:
        """Store one batch a peer announced; a new index_id discards its old history.

        Returns how many entries were refused because the device's budget
        (`remote_limits`) is spent: new paths, or updates that would grow past it.
        Those are not stored; the rest of the batch is.
        """
        try:
            with self._tx():
                row = self._db.execute(
                    "SELECT index_id FROM remotes WHERE device = ?", (device,)
                ).fetchone()
                if row is None or bytes(row[0]) != index_id:
                    self._db.execute("DELETE FROM remote_files WHERE device = ?", (device,))
                    self._usage[device] = [0, 0]
                rows, refused, usage = self._within_budget(device, entries)
                self._db.executemany(
                    f"INSERT OR REPLACE INTO remote_files ({_ENTRY_COLS}, device) "
                    f"VALUES ({_QMARKS}, ?)", rows)
                self._db.execute(
                    "INSERT OR REPLACE INTO remotes (device, index_id, max_seq) "
                    "VALUES (?, ?, ?)", (device, index_id, max_seq))
        except BaseException:
            self._usage.pop(device, None)  # counted again from the rows next time
            raise
        self._usage[device] = usage
        return refused

    def _within_budget(self, device: str, entries: Iterable[FileEntry]
                       ) -> tuple[list[tuple], int, list[int]]:
        """The rows of the entries that fit the device's budget, how many did not, and
        the device's usage once those rows are stored."""
        batch = list(entries)
        entries_now, bytes_now = self._usage_of(device)
        old: dict[str, int] = {}
        for chunk in _chunks(list({e.path for e in batch})):
            marks = ", ".join("?" * len(chunk))
            old.update(self._db.execute(
                f"SELECT path, {_COST_SQL} FROM remote_files "
                f"WHERE device = ? AND path IN ({marks})", (device, *chunk)))
        limits = self.remote_limits
        rows, refused = [], 0
        for e in batch:
            row = _to_row(e, e.seq) + (device,)
            cost = entry_cost(e, row[8])
            before = old.get(e.path)
            more = cost - (before or 0)
            if (before is None and entries_now >= limits.entries) or \
                    (more > 0 and bytes_now + more > limits.bytes):
                refused += 1
                continue
            entries_now += before is None
            bytes_now += more
            old[e.path] = cost
            rows.append(row)
        return rows, refused, [entries_now, bytes_now]

    def _usage_of(self, device: str) -> list[int]:
        """[entries, bytes] the device holds here: counted once, then kept up to date."""
        usage = self._usage.get(device)
        if usage is None:
            n, size = self._db.execute(
                f"SELECT COUNT(*), COALESCE(SUM({_COST_SQL}), 0) FROM remote_files "
                "WHERE device = ?", (device,)).fetchone()
            usage = self._usage[device] = [n, size]
        return usage

    @_locked
    def remote_usage(self, device: str) -> tuple[int, int]:
        """(entries, bytes as `entry_cost` counts them) the device holds in our index."""
        n, size = self._usage_of(device)
        return n, size

    @_locked
    def remote_get(self, device: str, path: str) -> FileEntry | None:
        row = self._db.execute(
            f"SELECT {_ENTRY_COLS} FROM remote_files WHERE device = ? AND path = ?",
            (device, path),
        ).fetchone()
        return None if row is None else _from_row(row)

    @_locked
    def remote_for_path(self, path: str) -> dict[str, FileEntry]:
        """device -> the entry that device announced for path."""
        rows = self._db.execute(
            f"SELECT device, {_ENTRY_COLS} FROM remote_files WHERE path = ? ORDER BY device",
            (path,),
        )
        return {r[0]: _from_row(r[1:]) for r in rows}

    @_locked
    def announced_alive(self, device: str, paths: list[str]) -> set[str]:
        """Those of paths the device announced as an existing file, link or directory."""
        out: set[str] = set()
        for chunk in _chunks(paths):
            marks = ", ".join("?" * len(chunk))
            out.update(r[0] for r in self._db.execute(
                f"SELECT path FROM remote_files WHERE device = ? AND path IN ({marks}) "
                "AND NOT deleted", (device, *chunk)))
        return out

    @_locked
    def remote_devices(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT device FROM remotes ORDER BY device")]

    @_locked
    def differing_paths(self, device: str | None = None) -> list[str]:
        """Paths where a remote version differs from ours (or we have none), sorted.

        Compares the canonical version blobs inside SQLite, using two covering
        indexes: the common case (nothing differs) is one pass over an index of
        remote_files with one index probe per row, in path order, and no Python.

        A deletion of a path we never had is left out: there is nothing to delete
        here, and adopting it would only pass it on. Should another device announce
        that path alive, the path differs through that entry, and the planner sees
        the deletion beside it (and passes it on where it wins).
        """
        sql = (
            "SELECT DISTINCT r.path FROM remote_files r INDEXED BY remote_files_path "
            "LEFT JOIN files f INDEXED BY files_path_version ON f.path = r.path "
            "WHERE ((f.path IS NULL AND NOT r.deleted) OR f.version != r.version)"
        )
        args: tuple = ()
        if device is not None:
            sql += " AND r.device = ?"
            args = (device,)
        return [r[0] for r in self._db.execute(sql + " ORDER BY r.path", args)]

    def _planned_paths(self) -> list[str]:
        """differing_paths(), but at most `remote_limits.planned` paths new to us per
        device (and `planned_bytes` of them, one at least): the first it announced.
        What it announced of paths we have all counts: our own folder bounds that, and
        a window full of changes we win (or cannot take) would hold its new files back.
        """
        window = "PARTITION BY r.device, f.path IS NULL ORDER BY r.seq, r.path"
        sql = (
            "SELECT DISTINCT path FROM (SELECT r.path AS path, f.path IS NULL AS new, "
            f"ROW_NUMBER() OVER ({window}) AS k, "
            f"SUM({_cost_sql('r.')}) OVER ({window} ROWS UNBOUNDED PRECEDING) AS total "
            "FROM remote_files r INDEXED BY remote_files_path "
            "LEFT JOIN files f INDEXED BY files_path_version ON f.path = r.path "
            "WHERE ((f.path IS NULL AND NOT r.deleted) OR f.version != r.version)) "
            "WHERE NOT new OR k = 1 OR (k <= ? AND total <= ?) ORDER BY path"
        )
        limits = self.remote_limits
        return [r[0] for r in self._db.execute(sql, (limits.planned, limits.planned_bytes))]

    @_locked
    def differing_entries(self) -> list[tuple[str, FileEntry | None, dict[str, FileEntry]]]:
        """(path, local entry or None, device -> remote entry) for the differing paths.

        The paths of `differing_paths()`, but fetched in one pass, so planning a round
        of 10,000 new files costs one query, not two per file; and at most
        `remote_limits.planned` live entries of each device (see `_planned_paths`).
        """
        out: list[tuple[str, FileEntry | None, dict[str, FileEntry]]] = []
        for chunk in _chunks(self._planned_paths()):
            marks = ", ".join("?" * len(chunk))
            local = {r[0]: _from_row(r) for r in self._db.execute(
                f"SELECT {_ENTRY_COLS} FROM files WHERE path IN ({marks})", chunk)}
            remote: dict[str, dict[str, FileEntry]] = {}
            for r in self._db.execute(
                    f"SELECT device, {_ENTRY_COLS} FROM remote_files WHERE path IN ({marks}) "
                    "ORDER BY device", chunk):
                remote.setdefault(r[1], {})[r[0]] = _from_row(r[1:])
            out.extend((p, local.get(p), remote.get(p, {})) for p in chunk)
        return out

    @_locked
    def remote_version_blobs(self) -> dict[str, set[bytes]]:
        """path -> the encoded versions peers announced for it (one pass, no decoding).

        Lets `status` tell "synced" (a peer holds exactly our version) from "local
        change" for 100,000 files without a query per file.
        """
        out: dict[str, set[bytes]] = {}
        for path, version in self._db.execute("SELECT path, version FROM remote_files"):
            out.setdefault(path, set()).add(version)
        return out

    # --- names of devices seen (for messages about devices that are not connected)

    @_locked
    def device_names(self) -> dict[str, str]:
        return self._json_meta(NAMES_KEY)

    @_locked
    def remember_name(self, device: str, name: str, keep: int = 1000) -> None:
        """Record a connected device's name (the latest `keep` devices) if it is new."""
        names = self.device_names()
        if names.get(device) == name:
            return
        names.pop(device, None)
        names[device] = name
        while len(names) > keep:  # identities cost a member nothing: keep the latest
            del names[next(iter(names))]
        self.set_meta(NAMES_KEY, json.dumps(names))

    # --- files that could not be synced (for status and the window)

    def set_failures(self, failures: dict[str, str]) -> None:
        """Replace the list of paths the node could not sync, and why (path -> reason).

        Kept in meta (a JSON text and a counter that moves with it), so `status` shows
        them when no node runs, and a reader can tell cheaply whether they changed.
        """
        with self._lock, self._tx():
            self._set_meta((FAILURES_KEY, json.dumps(failures, sort_keys=True)))
            self._set_meta((FAILURES_GEN_KEY, int(self._get_meta(FAILURES_GEN_KEY) or 0) + 1))

    @_locked
    def failures(self) -> dict[str, str]:
        return self._json_meta(FAILURES_KEY)

    def _json_meta(self, key: str) -> dict:
        """A dict kept as JSON text in meta; {} when missing or damaged."""
        try:
            out = json.loads(self._get_meta(key) or "{}")
        except ValueError:
            return {}
        return out if isinstance(out, dict) else {}

    # --- ignored paths (for status)

    @_locked
    def set_ignored(self, paths: list[str]) -> None:
        """Replace the list of ignored paths seen by the last full scan."""
        with self._tx():
            self._db.execute("DELETE FROM ignored")
            self._db.executemany(
                "INSERT OR IGNORE INTO ignored (path) VALUES (?)", ((p,) for p in paths)
            )

    @_locked
    def ignored(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT path FROM ignored ORDER BY path")]


_QMARKS = ", ".join("?" * len(_ENTRY_COLS.split(",")))


def _chunks(items: list[T]) -> Iterator[list[T]]:
    """Pieces small enough for one `IN (...)` list (SQLite caps the number of ? marks)."""
    for i in range(0, len(items), 500):
        yield items[i : i + 500]


def _to_row(e: FileEntry, seq: int) -> tuple:
    return (
        e.path,
        int(e.kind),
        e.size,
        e.mtime_ns,
        e.mode,
        bytes(e.hash),
        bytes(e.blocks),
        e.target,
        versions.encode(e.version),
        e.modified_by,
        int(bool(e.deleted)),
        seq,
        inode_to_db(e.inode),
        e.error,
        e.ctime_ns,
    )


def _from_row(r: tuple | sqlite3.Row) -> FileEntry:
    return FileEntry(
        path=r[0],
        kind=Kind(r[1]),
        size=r[2],
        mtime_ns=r[3],
        mode=r[4],
        hash=bytes(r[5]),
        blocks=bytes(r[6]),
        target=r[7],
        version=versions.decode(r[8]),
        modified_by=r[9],
        deleted=bool(r[10]),
        seq=r[11],
        inode=_inode_from_db(r[12]),
        error=r[13],
        ctime_ns=r[14],
    )


def inode_to_db(inode: int) -> int:
    """st_ino is unsigned 64-bit; SQLite integers are signed: store it wrapped."""
    return inode - (1 << 64) if inode >= (1 << 63) else inode


def _inode_from_db(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (executescript would COMMIT on its own)."""
    out: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    if current.strip():
        raise ValueError(f"incomplete SQL in migration: {current.strip()[:60]!r}")
    return out
