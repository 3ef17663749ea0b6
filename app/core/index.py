"""The per-folder SQLite index: our entries, where our blocks are, what peers announced.

One database file per folder. Local entries get a strictly increasing sequence
number on every change, so a peer can ask for "everything after seq N" and resume
an interrupted exchange. The random `index_id` names this particular history: if
the database is ever recreated, peers see a new id and start over instead of
trusting seq numbers of a history that no longer exists.

Built for a million files in a few hundred bytes each (schema 3):

* device IDs are stored once (`devices`) and referred to by small integers, in
  version vectors (`_Devices.encode`, canonical, so SQL compares versions as
  blobs without decoding them) and as authors;
* a one-block file's content hash is not stored: it is the hash of its block list
  (`hashing.file_hash_from_blocks`), worked out when the row is read. Its block is
  found by the first bytes of `blocks` (app.core.contentindex); the `blocks` table
  holds only the blocks of larger files;
* what a peer announced is kept in full (`remote_files`) only while it differs
  from our entry. A peer that holds exactly our version costs one small row in
  `remote_same` (invariant: only ever our current version; `put_local` drops the
  rows of a path it changes). An announced version that ours dominates is not
  kept at all: nothing could ever come of it.

`remote_files.pending` marks rows that still need a look from the planner; a row
that planned to nothing (we win a conflict, the path is ignored here, a deletion of
a path we never had) is `settle`d, and raised again when our entry of that path
changes. The planner reads windows of pending rows per device in announcement order
(`differing_entries`), so what it holds is bounded, whatever the size of the folder
or of a peer's backlog.

The connection is shared between the engine's loop thread and worker threads:
`check_same_thread=False`, and every public method holds one RLock.

What one peer announced is bounded (`RemoteLimits`): at most so many paths and so
many bytes of entries per device in `remote_files`. Beyond that `put_remote`
refuses its new paths (and updates that would grow past the budget). A deletion of
a path we never had is kept but not acted on (it is settled at once), so announcing
junk deletions does not make us adopt them and pass them on to the other devices.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import msgpack

from app.core import briefkeys, contentindex, hashing, private, versions
from app.core.checkpoints import Checkpointer
from app.core.hashing import file_hash_from_blocks
from app.core.model import HASH_LEN, MAX_DEVICE_ID, FileEntry, Kind
from app.core.units import human_size

_FILE, _DIR = int(Kind.FILE), int(Kind.DIR)
_KINDS = {int(k): k for k in Kind}

# --- schema --------------------------------------------------------------------------

_V2_ENTRY_DEF = """
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

# Schema 3, see the module docstring. Small columns first and `blocks` (up to 256 KiB
# for a 1 GiB file) last, so that reading the others never walks overflow pages.
_V3_SCHEMA = """
CREATE TABLE devices (id INTEGER PRIMARY KEY, device TEXT NOT NULL UNIQUE);
CREATE TABLE files3 (
    path TEXT NOT NULL UNIQUE,
    kind INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    version BLOB NOT NULL,
    modified_by INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    error TEXT NOT NULL,
    target TEXT NOT NULL,
    hash BLOB,
    blocks BLOB NOT NULL
);
CREATE TABLE remote3 (
    path TEXT NOT NULL,
    device INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    version BLOB NOT NULL,
    modified_by INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    pending INTEGER NOT NULL,
    cost INTEGER NOT NULL,
    target TEXT NOT NULL,
    hash BLOB NOT NULL,
    blocks BLOB NOT NULL,
    PRIMARY KEY (path, device)
) WITHOUT ROWID;
CREATE TABLE remote_same (
    path TEXT NOT NULL,
    device INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (path, device)
) WITHOUT ROWID;
CREATE TABLE remotes3 (
    device TEXT PRIMARY KEY,
    index_id BLOB NOT NULL,
    max_seq INTEGER NOT NULL,
    entries INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
"""

_V3_INDEXES = """
CREATE UNIQUE INDEX files_seq ON files (seq);
CREATE INDEX files_content ON files (substr(blocks, 1, 8))
    WHERE kind = 0 AND NOT deleted AND blocks != x'';
CREATE INDEX files_dirs ON files (inode) WHERE kind = 1 AND NOT deleted;
CREATE INDEX remote_todo ON remote_files (device, deleted, seq) WHERE pending;
CREATE INDEX remote_content ON remote_files (substr(blocks, 1, 8))
    WHERE pending AND NOT deleted AND blocks != x'';
"""


def _migrate_3(db: sqlite3.Connection) -> None:
    """Schema 2 -> 3: device refs, derived one-block hashes, peers' copies of our versions
    as `remote_same` rows. Rows are copied in Python (versions are re-encoded)."""
    for stmt in _statements(_V3_SCHEMA):
        db.execute(stmt)
    devices = _Devices(db)
    rows = db.execute(f"SELECT {_V2_COLS} FROM files")
    while chunk := rows.fetchmany(2000):
        out = [_file_row(devices, e, e.seq) for e in map(_v2_entry, chunk)]
        db.executemany(f"INSERT INTO files3 ({_FILE_COLS}) VALUES ({_marks(_FILE_COLS)})", out)
    rows = db.execute(f"SELECT r.device, f.version, {_cols('r.', _V2_COLS)} "
                      "FROM remote_files r LEFT JOIN files f ON f.path = r.path")
    while chunk := rows.fetchmany(2000):
        for device, mine, *r in chunk:
            e = _v2_entry(r)
            if mine is not None and mine == r[8]:
                db.execute("INSERT OR REPLACE INTO remote_same (path, device, seq) "
                           "VALUES (?, ?, ?)", (e.path, devices.ref(device), e.seq))
                continue
            pending = not (e.deleted and mine is None)
            db.execute(f"INSERT OR REPLACE INTO remote3 ({_REMOTE_COLS}) "
                       f"VALUES ({_marks(_REMOTE_COLS)})",
                       _remote_row(devices, devices.ref(device), e, pending, entry_cost(e)))
    db.execute("INSERT INTO remotes3 (device, index_id, max_seq, entries, bytes) "
               "SELECT device, index_id, max_seq, 0, 0 FROM remotes")
    db.execute("UPDATE remotes3 SET entries = (SELECT COUNT(*) FROM remote3 r "
               "WHERE r.device = (SELECT id FROM devices d WHERE d.device = remotes3.device)), "
               "bytes = (SELECT COALESCE(SUM(cost), 0) FROM remote3 r "
               "WHERE r.device = (SELECT id FROM devices d WHERE d.device = remotes3.device))")
    for stmt in ("DROP TABLE files", "DROP TABLE remote_files", "DROP TABLE remotes",
                 "ALTER TABLE files3 RENAME TO files",
                 "ALTER TABLE remote3 RENAME TO remote_files",
                 "ALTER TABLE remotes3 RENAME TO remotes",
                 # the blocks of one-block files are found through files_content
                 "DELETE FROM blocks WHERE path NOT IN "
                 "(SELECT path FROM files WHERE length(blocks) > 32)"):
        db.execute(stmt)
    for stmt in _statements(_V3_INDEXES):
        db.execute(stmt)


Migration = str | Callable[[sqlite3.Connection], None]

_UNREADABLE = "NOT deleted AND error LIKE 'cannot read:%'"  # our files the scanner could not read
SPARSE_RECHECK_KEY = "sparse_recheck"  # meta: 1 until a full scan hashed the sparse files anew

# Numbered migrations: MIGRATIONS[i] brings schema_version i to i + 1. Append only;
# never edit one that has shipped. A migration is an SQL script, or a function that
# gets the connection (inside the migration's transaction).
MIGRATIONS: list[Migration] = [
    f"""
    CREATE TABLE files ({_V2_ENTRY_DEF}, PRIMARY KEY (path));
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
    CREATE TABLE remote_files (device TEXT NOT NULL, {_V2_ENTRY_DEF}, UNIQUE (device, path));
    CREATE INDEX remote_files_path ON remote_files (path, device, version);
    CREATE TABLE ignored (path TEXT PRIMARY KEY) WITHOUT ROWID;
    """,
    # 2: st_ctime_ns of local files, so a rewrite that keeps size, mtime and inode
    # (cp -p, touch -r) is still seen; 0 = unknown, which the next scan re-hashes once.
    """
    ALTER TABLE files ADD COLUMN ctime_ns INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE remote_files ADD COLUMN ctime_ns INTEGER NOT NULL DEFAULT 0;
    """,
    # 3: a million files in a few hundred bytes each (see the module docstring)
    _migrate_3,
    # 4: `unreadable` (asked at the end of every `sync`) finds the few such files at once
    # instead of reading every row: 250-330 ms on the event loop at a million files
    f"CREATE INDEX files_unreadable ON files (path) WHERE {_UNREADABLE};",
    # 5: content found through levels written in sorted batches, not through an index of
    # random keys (26 of the 27 GB a million-file first sync wrote; see contentindex)
    contentindex.create,
    # 6: their triggers add an entry with an upsert's DO NOTHING, not after a probe of
    # their own: a file's row inserted at 5.3 us instead of 7.7 (see contentindex._add)
    contentindex.renew_triggers,
    # 7: a key of each entry's brief and their sums per directory: a survey compares a
    # directory with one row instead of a row per file (see briefkeys)
    briefkeys.create,
    # 8: a sparse file whose hole ended inside a block was hashed wrong until 34cc737
    # (nothing of it could sync): the next full scan hashes each file with holes again
    f"INSERT INTO meta (key, value) SELECT '{SPARSE_RECHECK_KEY}', 1 "
    "WHERE EXISTS (SELECT 1 FROM files WHERE kind = 0 AND NOT deleted);",
]
_BRIEF_KEYS_SCHEMA = 7  # the schema from which rows have brief keys

_V2_COLS = ("path, kind, size, mtime_ns, mode, hash, blocks, target, version, modified_by, "
            "deleted, seq, inode, error, ctime_ns")
_FILE_COLS = ("path, kind, size, mtime_ns, mode, version, modified_by, deleted, seq, inode, "
              "ctime_ns, error, target, hash, blocks")
_REMOTE_COLS = ("path, device, kind, size, mtime_ns, mode, version, modified_by, deleted, "
                "seq, pending, cost, target, hash, blocks")
# what a remote row reads as an entry: the columns of FileEntry.from_wire, in _entry order
_REMOTE_ENTRY = ("path, kind, size, mtime_ns, mode, version, modified_by, deleted, seq, "
                 "0, 0, '', target, hash, blocks")


def _marks(cols: str) -> str:
    return ", ".join("?" * len(cols.split(",")))


def _cols(alias: str, cols: str) -> str:
    return ", ".join(alias + c.strip() for c in cols.split(","))


# `announce_since`'s: a block list is read only for an entry sent whole, not for one sent
# as "what you have" (a 100 GiB file's is 25 MiB, read for nothing)
assert _FILE_COLS.endswith("blocks")
_ANNOUNCED_COLS = _cols("f.", _FILE_COLS).removesuffix("f.blocks") + \
    "CASE WHEN s.seq IS NULL THEN f.blocks END"


# local_brief rows: (path, state, size, mtime_ns, mode, inode_db, ctime_ns). Plain tuples
# on purpose: building 10,000 objects per rescan would cost more than the walk itself.
Brief = tuple[str, int, int, int, int, int, int]
BRIEF_DELETED = -1  # state of a deleted tombstone
BRIEF_ERROR = -2  # state of an entry with an error set (always worth a closer look)
# otherwise the state is the entry's Kind
_BRIEF_SQL = (f"SELECT path, CASE WHEN deleted THEN {BRIEF_DELETED} "
              f"WHEN error != '' THEN {BRIEF_ERROR} ELSE kind END, "
              "size, mtime_ns, mode, inode, ctime_ns FROM files")


FAILURES_KEY = "sync_failures"  # meta: JSON {path: why} of what the node could not sync
FAILURES_GEN_KEY = "sync_failures_gen"
NAMES_KEY = "device_names"  # meta: JSON {device ID: name} of the devices seen lately
SEEN_KEY = "device_seen"  # meta: JSON {device ID: epoch seconds} when last connected
SKIPPED_KEY = "skipped_local"  # meta: JSON {path: why} of local files the scanner skips
SKIPPED_KEPT = 1000  # skipped local files listed at most (a count says how many more)
IGNORED_RULES_KEY = "ignored_rules"  # meta: JSON [line, ...], the rules `ignored` was found by


@dataclass(frozen=True)
class RemoteLimits:
    """What the entries one remote device announced may take in our index.

    Only entries that differ from ours are kept in full (see the module docstring), so
    an honest device stays far below this once synced; during a first sync of the
    largest share this app is built for (1,000,000 files) it holds them all for a
    while. A member that announces junk costs at most this much disk.
    """

    entries: int = 2_000_000
    bytes: int = 640 * 1024 * 1024  # as counted by `entry_cost`
    # Pending entries of one device planned at a time (`differing_entries`): what a plan
    # costs in memory and time stays bounded even when they cannot be fetched (a
    # member's junk); the next ones are planned as these are done. 5,000, not 10,000:
    # a renamed directory's window is both its deletions and its new entries, and
    # took ~40 MB of a 100,000-file rename's sync at 10,000 (111-113 MB peak; 91-92 MB
    # at 5,000, and the rename no slower: 17.7-18.9 s against 20.1-20.9).
    planned: int = 5_000
    planned_bytes: int = 8 * 1024 * 1024  # and no more than this much of them (one at least)


def entry_cost(e: FileEntry, version_blob: bytes | None = None) -> int:
    """About what one remote entry takes in the index, in bytes (device IDs in full).

    The path and the version are counted twice (the row and an index), as they were
    stored until schema 3: a conservative measure that does not depend on how they
    are stored now.
    """
    vlen = len(version_blob) if version_blob is not None else _full_len(e.version)
    return (_ROW_OVERHEAD + 2 * (len(e.path.encode("utf-8", "surrogatepass")) + vlen)
            + len(e.hash) + len(e.blocks) + len(e.target.encode("utf-8", "surrogatepass"))
            + len(e.modified_by))


_ROW_OVERHEAD = 48

# An index page's entries, in bytes on the wire at most (`wire_cost`): a page of 1,000
# files of a GiB each (8,192 block hashes apiece) is 256 MiB, beyond any frame
# (app.net.framing.MAX_FRAME, 32 MiB): its frame could not be sent, and the peer never
# heard of those files.
PAGE_BYTES = 8 * 1024 * 1024
_WIRE_ITEM = 64  # an item's msgpack framing and its numbers


def wire_cost(e: FileEntry) -> int:
    """At least what `e.to_wire()` takes packed (4 bytes a character is UTF-8's most),
    counted without packing it."""
    return (_WIRE_ITEM + 4 * (len(e.path) + len(e.target)) + len(e.hash) + len(e.blocks)
            + 4 * len(e.modified_by) + (4 * MAX_DEVICE_ID + 9) * len(e.version))


def _full_len(version: dict[str, int]) -> int:
    """len(versions.encode(version)), counted without encoding it: most vectors of a
    first sync are each a file's own ({peer: its counter}), so remembering them missed
    every time and the encoding cost ~1.4 us an entry (cf. msgpack's format spec)."""
    if len(version) >= 1 << 16:
        return len(versions.encode(version))  # beyond MAX_VECTOR: no peer's entry
    n = 1 if len(version) < 16 else 3  # fixarray, array 16
    for device, counter in version.items():
        size = len(device) if device.isascii() else len(device.encode("utf-8"))
        if not 0 <= counter < 1 << 64 or size >= 1 << 16:
            return len(versions.encode(version))  # beyond MAX_COUNTER, MAX_DEVICE_ID
        n += (2 + size + (size >= 32) + (size >= 256)  # pair, str header, text
              + (1 if counter < 128 else 2 if counter < 256 else 3 if counter < 65536
                 else 5 if counter < 1 << 32 else 9))
    return n


class IndexTooNew(RuntimeError):
    """The database was written by a newer p2psync with migrations we do not know."""


OPEN_ERRORS = (OSError, sqlite3.Error, IndexTooNew)  # what opening an Index may raise


def why_not_opened(db_path: Path, e: BaseException) -> tuple[str, int | None]:
    """One line for an index that would not open (one of OPEN_ERRORS), and the bytes
    free on its disk (None when unknown or beside the point).

    SQLite says "disk I/O error" where it cannot make its WAL (a full disk), so the
    free space is said too; an index of a newer p2psync (one run after this build, then
    this build again) says what to do.
    """
    if isinstance(e, IndexTooNew):
        return (f"cannot open the index {db_path}: {e} (a newer p2psync wrote it: use that "
                "version, or a newer one)"), None
    why = e.strerror if isinstance(e, OSError) and e.strerror else e
    if getattr(e, "sqlite_errorcode", None) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return (f"cannot open the index {db_path}: {why} (damaged: move it away, and this "
                "device indexes its folder again at its next start)"), None
    try:
        free: int | None = shutil.disk_usage(db_path.parent).free
    except OSError:
        return f"cannot open the index {db_path}: {why}", None
    return f"cannot open the index {db_path}: {why} ({human_size(free)} free on its disk)", free


F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def _locked(fn: F) -> F:
    """A write (or a step that must see the writes of the step it is part of)."""
    @functools.wraps(fn)
    def wrapper(self: Index, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return fn(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _reads(fn: F) -> F:
    """A read: on this thread's own connection, without the lock, so that a long read in
    a worker thread and a write on the event loop never wait for each other (WAL).
    Called while the lock is held (a compound step), it reads what that step wrote."""
    @functools.wraps(fn)
    def wrapper(self: Index, *args: Any, **kwargs: Any) -> Any:
        with self._reading():
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


class _Devices:
    """Device IDs <-> the small integers this database stores them as (0 is "").

    Versions are msgpack lists of [ref, counter] pairs sorted by ref: canonical, so
    equal vectors are equal blobs. The caches are bounded; a member's vectors can name
    many devices, and the table holds them all.
    """

    CACHE = 4096

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.forget()

    def forget(self) -> None:
        """After a rollback: refs made in it may not exist."""
        self.refs: dict[str, int] = {"": 0}
        self.ids: dict[int, str] = {0: ""}
        # most entries of a sync share a handful of vectors: their codings, remembered
        self.blobs: dict[tuple, bytes] = {}
        self.vectors: dict[bytes, dict[str, int]] = {}

    def _remember(self, device: str, ref: int) -> None:
        if len(self.refs) > self.CACHE:
            self.forget()
        self.refs[device] = ref
        self.ids[ref] = device

    def ref(self, device: str) -> int:
        """The device's number, made if new (inside a write transaction)."""
        ref = self.refs.get(device)
        if ref is None:
            ref = self.find(device)
            if ref is None:
                ref = self.db.execute("INSERT INTO devices (device) VALUES (?)",
                                      (device,)).lastrowid
                self._remember(device, ref)
        return ref

    def find(self, device: str) -> int | None:
        """The device's number, or None if this database never named it."""
        ref = self.refs.get(device)
        if ref is None:
            row = self.db.execute("SELECT id FROM devices WHERE device = ?",
                                  (device,)).fetchone()
            if row is None:
                return None
            ref = row[0]
            self._remember(device, ref)
        return ref

    def id(self, ref: int) -> str:
        device = self.ids.get(ref)
        if device is None:
            row = self.db.execute("SELECT device FROM devices WHERE id = ?", (ref,)).fetchone()
            device = row[0] if row else f"?{ref}"
            self._remember(device, ref)
        return device

    def encode(self, version: dict[str, int]) -> bytes:
        if len(version) == 1:  # a file only one device changed: cheaper than remembering
            for device, n in version.items():
                return msgpack.packb([[self.ref(device), n]])
        key = tuple(version.items())
        blob = self.blobs.get(key)
        if blob is None:
            blob = msgpack.packb(sorted((self.ref(d), n) for d, n in version.items()))
            if len(self.blobs) > self.CACHE:
                self.blobs.clear()
            self.blobs[key] = blob
        return blob

    def decode(self, blob: bytes) -> dict[str, int]:
        """The vector; equal blobs give the same dict (vectors are never changed in place:
        versions.bump and merge make new ones)."""
        out = self.vectors.get(blob)
        if out is None:
            ids = self.ids
            out = {}
            for ref, n in msgpack.unpackb(blob):
                device = ids.get(ref)
                out[device if device is not None else self.id(ref)] = n
            if len(self.vectors) > self.CACHE:
                self.vectors.clear()
            self.vectors[bytes(blob)] = out
        return out


def _stored_hash(e: FileEntry) -> bytes | None:
    """None when the hash is the one-block file's own (worked out again when read)."""
    if len(e.blocks) <= HASH_LEN and e.kind == Kind.FILE and not e.deleted and \
            e.hash == file_hash_from_blocks(e.blocks):
        return None
    return bytes(e.hash)


def _file_row(devices: _Devices, e: FileEntry, seq: int) -> tuple:
    return (e.path, int(e.kind), e.size, e.mtime_ns, e.mode, devices.encode(e.version),
            devices.ref(e.modified_by), int(bool(e.deleted)), seq, inode_to_db(e.inode),
            e.ctime_ns, e.error, e.target, _stored_hash(e), bytes(e.blocks))


def _keyed_row(devices: _Devices, e: FileEntry, seq: int) -> tuple:
    """A row of `files` with its brief key (see briefkeys)."""
    row = _file_row(devices, e, seq)
    return (*row, briefkeys.row_key(e.path, row[1], e.size, e.mtime_ns, e.mode, row[9],
                                    e.ctime_ns, row[7], e.error))


def _remote_row(devices: _Devices, device: int, e: FileEntry, pending: bool, cost: int,
                blob: bytes | None = None) -> tuple:
    return (e.path, device, int(e.kind), e.size, e.mtime_ns, e.mode,
            devices.encode(e.version) if blob is None else blob, devices.ref(e.modified_by),
            int(bool(e.deleted)), e.seq, int(pending), cost, e.target, bytes(e.hash),
            bytes(e.blocks))


def _v2_entry(r: tuple) -> FileEntry:
    """A row of schema 2's `files` or `remote_files` (device IDs in full)."""
    return FileEntry(path=r[0], kind=Kind(r[1]), size=r[2], mtime_ns=r[3], mode=r[4],
                     hash=bytes(r[5]), blocks=bytes(r[6]), target=r[7],
                     version=versions.decode(r[8]), modified_by=r[9], deleted=bool(r[10]),
                     seq=r[11], inode=_inode_from_db(r[12]), error=r[13], ctime_ns=r[14])


class Index:
    """One folder's index database. Thread-safe; see the module docstring."""

    def __init__(self, db_path: Path | str, device_id: str,
                 remote_limits: RemoteLimits | None = None) -> None:
        self.device_id = device_id
        self.generation = 0  # bumped by every committed write: lets callers cache answers
        self.remote_limits = remote_limits or RemoteLimits()
        self._lock = threading.RLock()
        self._tls = threading.local()  # per thread: its reader connection, and whether reading
        self._path = os.fspath(db_path)
        self._readers: list[tuple[sqlite3.Connection, _Devices, threading.Lock]] = []
        self._reader_gen = 0  # bumped by `renew_readers`: every reader is opened again
        self._closed = False
        self._case_indexed = False  # see index_case
        private.sqlite_files(Path(db_path))  # 0600, and so SQLite's -wal and -shm
        self._main = sqlite3.connect(
            self._path, check_same_thread=False, isolation_level=None, timeout=30
        )
        self._main_devices = _Devices(self._main)
        try:
            _set_wal(self._main)
            self._main.execute("PRAGMA synchronous=NORMAL")
            self._main.execute("PRAGMA journal_size_limit=67108864")  # a big WAL shrinks back
            self._checkpoints = Checkpointer(self._path, self._main)
            briefkeys.register(self._main)
            self._migrate()
            self._renew_brief_keys()
            self.index_id: bytes = self._init_identity()
            self._committed_seq = self._max_seq()  # see max_seq
        except BaseException:
            if hasattr(self, "_checkpoints"):
                self._checkpoints.stop()
            self._main.close()
            raise

    @property
    def path(self) -> str:
        """The database file (other processes open it read-only: app/core/survey.py)."""
        return self._path

    def _on_reader(self) -> bool:
        return getattr(self._tls, "reading", False) and \
            not self._lock._is_owned()  # type: ignore[attr-defined]

    @property
    def _db(self) -> sqlite3.Connection:
        """The connection for this call: the thread's reader inside a read, else the main."""
        return self._reader()[0] if self._on_reader() else self._main

    @property
    def _devices(self) -> _Devices:
        return self._reader()[1] if self._on_reader() else self._main_devices

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """What `_reads` does (also for a step of a generator). The thread's reader is
        held meanwhile: `close` waits for a read in flight instead of pulling its
        connection away (SQLite would crash)."""
        tls = self._tls
        if getattr(tls, "reading", False) or self._lock._is_owned():  # type: ignore[attr-defined]
            yield
            return
        try:
            if getattr(tls, "gen", self._reader_gen) != self._reader_gen:
                self._drop_reader()
            busy = self._reader()[2]
        except sqlite3.OperationalError:  # no descriptor left for a reader of its own:
            with self._lock:              # this read waits for the main connection
                yield
            return
        with busy:
            if self._closed:
                raise sqlite3.ProgrammingError("the index is closed")
            tls.reading = True
            try:
                yield
            finally:
                tls.reading = False

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read of this thread inside sees the index as it was at the first one.

        A plan is made of several reads (its window, then the moves it pairs and the
        deletions it waits for or counts), and the pull writes beside it: between two
        reads a move can be made, and its old half then looks like a lone deletion (at
        a million renamed files, 20-30 windows weighed by the mass-deletion guard, 4-6 s
        each). This thread's own writes inside go through (the main connection) and its
        reads do not see them.
        """
        with self._reading():
            db = self._db
            if not self._on_reader() or db.in_transaction:
                yield  # under the lock (nobody writes meanwhile), or inside a snapshot
                return
            db.execute("BEGIN")
            try:
                yield
            finally:
                db.execute("COMMIT")

    def _reader(self) -> tuple[sqlite3.Connection, _Devices, threading.Lock]:
        r = getattr(self._tls, "reader", None)
        if r is None:
            with self._lock:
                if self._closed:
                    raise sqlite3.ProgrammingError("the index is closed")
                db = sqlite3.connect(self._path, check_same_thread=False,
                                     isolation_level=None, timeout=30)
                try:
                    db.execute("PRAGMA query_only=1")
                    # the first read opens the -wal and -shm files: out of descriptors,
                    # that fails here (the read then waits for the main connection)
                    # rather than in the middle of a caller's query
                    db.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
                except sqlite3.Error:
                    db.close()
                    raise
                r = self._tls.reader = (db, _Devices(db), threading.Lock())
                self._tls.gen = self._reader_gen
                self._readers.append(r)
        return r

    def renew_readers(self) -> None:
        """Have every thread's next read open its reader connection again.

        For a reader found behind the index's latest commit outside any snapshot of its
        own (see Node.assess): whatever keeps it there (a statement left running holds a
        WAL reader at its snapshot), a new connection does not have it.
        """
        self._reader_gen += 1

    def _drop_reader(self) -> None:
        r = getattr(self._tls, "reader", None)
        if r is None:
            return
        self._tls.reader = None
        with self._lock:
            if r in self._readers:
                self._readers.remove(r)
        with r[2]:
            r[0].close()

    @property
    def lock(self) -> threading.RLock:
        """The lock every method holds; hold it to make several calls one atomic step."""
        return self._lock

    def close(self) -> None:
        """Close the database; the object is unusable afterwards. A read still running in
        another thread (a worker the event loop no longer waits for) is waited for."""
        self._checkpoints.stop()
        with self._lock:
            self._closed = True
            for db, _, busy in self._readers:
                with busy:
                    db.close()
            self._main.close()

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
                step = MIGRATIONS[current]
                if callable(step):
                    step(self._db)
                else:
                    for stmt in _statements(step):
                        self._db.execute(stmt)
                self._set_meta(("schema_version", current + 1))

    def _renew_brief_keys(self) -> None:
        """The brief keys made again where another interpreter made them (its hash of
        a tuple may differ: a survey would then find every directory changed)."""
        with self._lock, self._tx():
            if int(self._get_meta("schema_version") or 0) >= _BRIEF_KEYS_SCHEMA \
                    and self._get_meta(briefkeys.SCHEME_KEY) != briefkeys.SCHEME:
                briefkeys.rebuild(self._db)

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
        """One write transaction (BEGIN IMMEDIATE: take the write lock up front).

        A COMMIT can fail too (a full disk: the WAL cannot grow), and SQLite has then
        rolled back already: the device numbers made in it are forgotten all the same,
        or the next device made would get the number of one that never was stored, and
        the versions of both would read as one device's.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._main_devices.forget()
            raise
        self.generation += 1
        self._checkpoints.poke()

    # --- meta

    @_reads
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

    # --- rows -> entries

    def _entry(self, r: tuple | sqlite3.Row, devices: _Devices | None = None) -> FileEntry:
        """A FileEntry from the columns of _FILE_COLS (or _REMOTE_ENTRY); `devices`: the
        codec of the connection the row came from (looked up if not given)."""
        dev = devices or self._devices
        blocks = bytes(r[14])
        return FileEntry(r[0], _KINDS[r[1]], r[2], r[3], r[4],
                         file_hash_from_blocks(blocks) if r[13] is None else bytes(r[13]),
                         blocks, r[12], dev.decode(r[5]), dev.id(r[6]),
                         bool(r[7]), r[8], _inode_from_db(r[9]), r[11], r[10])

    # --- local entries

    @_reads
    def get(self, path: str) -> FileEntry | None:
        row = self._db.execute(
            f"SELECT {_FILE_COLS} FROM files WHERE path = ?", (path,)
        ).fetchone()
        return None if row is None else self._entry(row)

    @_reads
    def get_many(self, paths: list[str]) -> dict[str, FileEntry]:
        """path -> local entry for those of `paths` that have one: a query per 500 paths."""
        out: dict[str, FileEntry] = {}
        db, dev = self._db, self._devices
        for chunk in _chunks(paths):
            marks = ", ".join("?" * len(chunk))
            for r in db.execute(
                    f"SELECT {_FILE_COLS} FROM files WHERE path IN ({marks})", chunk):
                out[r[0]] = self._entry(r, dev)
        return out

    @_reads
    def unknown_paths(self, paths: list[str]) -> set[str]:
        """Those of `paths` nothing here speaks of: no entry of ours, no row of any peer
        (nothing planned or kept for them, so nothing can be at work on them)."""
        known: set[str] = set()
        for chunk in _chunks(paths):
            marks = ", ".join("?" * len(chunk))
            known.update(r[0] for r in self._db.execute(
                f"SELECT path FROM files WHERE path IN ({marks}) UNION ALL "
                f"SELECT path FROM remote_files WHERE path IN ({marks})", chunk + chunk))
        return set(paths) - known

    @_reads
    def briefs_of(self, paths: list[str]) -> dict[str, Brief]:
        """path -> brief for those of `paths` the index has: a query per 500 paths."""
        out: dict[str, Brief] = {}
        for chunk in _chunks(paths):
            marks = ", ".join("?" * len(chunk))
            for r in self._db.execute(f"{_BRIEF_SQL} WHERE path IN ({marks})", chunk):
                out[r[0]] = r
        return out

    @_reads
    def shared_stats(self, paths: list[str]) -> dict[str, Shared]:
        """path -> its indexed stat (and, for a file of one block, its block list), for
        those of `paths` that are files we share now (live, readable).

        What serving a batch of block requests needs, without decoding whole entries.
        The block list of a one-block file comes in the same query: read a file at a
        time, it was nearly half of the serving threads' reading time in a first sync
        of 100,000 tiny files. A longer list is read when a block of it is asked (`file_blocks`).
        """
        out: dict[str, Shared] = {}
        for chunk in _chunks(paths):
            marks = ", ".join("?" * len(chunk))
            for path, size, mtime_ns, inode, ctime_ns, blocks in self._db.execute(
                    f"SELECT path, size, mtime_ns, inode, ctime_ns, "
                    f"CASE WHEN length(blocks) <= {HASH_LEN} THEN blocks END FROM files "
                    f"WHERE path IN ({marks}) AND kind = ? AND NOT deleted AND error = ''",
                    (*chunk, _FILE)):
                out[path] = Shared(size, mtime_ns, _inode_from_db(inode), ctime_ns,
                                   None if blocks is None else bytes(blocks))
        return out

    def all_local(self) -> list[FileEntry]:
        """Every local entry, deleted tombstones included, ordered by path."""
        return list(self.iter_local())

    def iter_local(self, after: str | None = None, chunk: int = 2000) -> Iterator[FileEntry]:
        """Every local entry past `after`, in path order, read `chunk` at a time.

        A chunk is read at a time, so a walk over a million entries never holds the
        memory of all of them.
        """
        after = after or ""
        while True:
            with self._reading():
                rows = self._db.execute(
                    f"SELECT {_FILE_COLS} FROM files WHERE path > ? ORDER BY path LIMIT ?",
                    (after, chunk)).fetchall()
                dev = self._devices
                entries = [self._entry(r, dev) for r in rows]
            yield from entries
            if len(rows) < chunk:
                return
            after = rows[-1][0]

    @_reads
    def live_file_count(self) -> int:
        """Live files and links (not directories): what the mass-deletion guard compares to."""
        return self._db.execute(
            "SELECT COUNT(*) FROM files WHERE NOT deleted AND kind != ?", (_DIR,)
        ).fetchone()[0]

    def max_seq(self) -> int:
        """The seq of our latest committed local change: what a peer must have seen to be
        in sync with us (state messages). Kept as each of our commits ends, and never
        less than a read says (another process's writes): a reader left behind the latest
        commit would tell a peer an older, smaller number, and a peer that holds that
        much would agree with an index we no longer have."""
        with self._reading():
            return max(self._committed_seq, self._max_seq())

    def _max_seq(self) -> int:
        return self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM files").fetchone()[0]

    @_reads
    def local_since(self, seq: int, limit: int = 1000) -> list[FileEntry]:
        """Entries changed after `seq`, oldest first: one page of an index exchange."""
        rows = self._db.execute(
            f"SELECT {_FILE_COLS} FROM files WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        )
        dev = self._devices
        return [self._entry(r, dev) for r in rows]

    @_reads
    def announce_since(self, seq: int, limit: int, to: str | None = None
                       ) -> tuple[list[list], int, bool]:
        """One page of our index for a peer, as wire items; the seq it ends at; and
        whether more may follow (the page was cut at `limit` rows, or where its items
        reached PAGE_BYTES: one item at least).

        An entry the peer `to` announced back to us exactly is sent as `[path, seq, its
        seq]` ("what you have"): the page costs neither side a full entry of the files
        it just got from us. Entries with an error set are not sent (their seq counts),
        so a cut page can hold fewer than `limit` items: only the flag says it was cut.
        """
        ref = self._devices.find(to) if to is not None else None
        # read row by row: the page ends where its items fill it, and the rows past that
        # are not read (1,000 rows of 2 GiB files were 512 MB of block lists at once)
        rows = self._db.execute(
            f"SELECT {_ANNOUNCED_COLS}, s.seq FROM files f LEFT JOIN remote_same s "
            "ON s.path = f.path AND s.device = ? WHERE f.seq > ? ORDER BY f.seq LIMIT ?",
            (-1 if ref is None else ref, seq, limit))
        dev = self._devices
        items: list[list] = []
        size, last, read = 0, seq, 0
        for r in rows:
            read += 1
            if not r[11]:
                if r[15] is not None:
                    item, cost = [r[0], r[8], r[15]], _WIRE_ITEM + 4 * len(r[0])
                else:
                    e = self._entry(r, dev)
                    item, cost = e.to_wire(), wire_cost(e)
                if items and size + cost > PAGE_BYTES:
                    rows.close()
                    return items, last, True
                items.append(item)
                size += cost
            last = r[8]
        return items, last, read == limit

    @_reads
    def paths_changed_since(self, seq: int, limit: int = -1) -> set[str]:
        """Paths whose local entry was written after `seq` (cheap: uses the seq index);
        of the first `limit` such writes only, if given."""
        return {r[0] for r in self._db.execute(
            "SELECT path FROM files WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit))}

    @_locked
    def changed_since(self, seq: int, paths: list[str]) -> dict[str, int]:
        """path -> seq for those of `paths` whose entry was written after `seq`."""
        out: dict[str, int] = {}
        for chunk in _chunks(paths):
            marks = ", ".join("?" * len(chunk))
            out.update(self._db.execute(
                f"SELECT path, seq FROM files WHERE path IN ({marks}) AND seq > ?",
                (*chunk, seq)))
        return out

    @_reads
    def local_brief(self, under: str | None = None) -> dict[str, Brief]:
        """path -> Brief for all local entries, or for `under` and everything beneath it.

        Lets a rescan of a large unchanged folder compare stat data without decoding
        versions and block lists of every entry. The inode is in database form
        (see `inode_to_db`), so compare it with `inode_to_db(st.st_ino)`.
        """
        sql, args = _BRIEF_SQL, ()
        if under is not None:
            sql, args = sql + " WHERE " + _UNDER, _under_args(under)
        return {r[0]: r for r in self._db.execute(sql, args)}

    def brief_range(self, after: str, under: str | None = None, limit: int = 2000
                    ) -> list[Brief]:
        """Briefs of entries past `after` (of `under` and below it), in path order, `limit`
        at a time: a full scan walks the index this way, never holding all of it.

        `under` itself and the range below it are read apart: as one OR, SQLite sorts
        every row of the range for each chunk (the rescan of a renamed million's
        directory read its rows 500 times over)."""
        with self._reading():
            if under is None:
                return self._db.execute(_BRIEF_SQL + " WHERE path > ? ORDER BY path LIMIT ?",
                                        (after, limit)).fetchall()
            rows = self._db.execute(_BRIEF_SQL + " WHERE path = ?", (under,)).fetchall() \
                if after < under else []
            low, op = (under + "/", ">=") if after < under + "/" else (after, ">")
            return rows + self._db.execute(
                _BRIEF_SQL + f" WHERE path {op} ? AND path < ? ORDER BY path LIMIT ?",
                (low, under + "0", limit - len(rows))).fetchall()

    def brief_range_desc(self, before: str, under: str, limit: int = 2000) -> list[Brief]:
        """Briefs of `under` and below it before `before`, in reverse path order (children
        before their directory: the order deletions are recorded in). Read apart, as in
        `brief_range`."""
        with self._reading():
            rows = self._db.execute(
                _BRIEF_SQL + " WHERE path >= ? AND path < ? ORDER BY path DESC LIMIT ?",
                (under + "/", min(before, under + "0"), limit)).fetchall()
            if len(rows) < limit and under < before:
                rows += self._db.execute(_BRIEF_SQL + " WHERE path = ?", (under,)).fetchall()
            return rows

    @_reads
    def dir_with_inode(self, inode: int) -> str | None:
        """The live directory entry with this inode, if any (a directory moved elsewhere)."""
        row = self._db.execute(
            "SELECT path FROM files WHERE inode = ? AND kind = 1 AND NOT deleted LIMIT 1",
            (inode_to_db(inode),)).fetchone()
        return None if row is None else row[0]

    @_locked
    def index_case(self) -> None:
        """Index the paths by lower(path), once, where the folder's file system ignores
        case (app/core/namerules.py): `case_variants` then never reads the whole table.
        Devices where case counts never pay for it. Made on a first call, which reads
        the table once: call it off the event loop. No write (nor generation) after."""
        if self._case_indexed:
            return
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' "
                            "AND name = 'files_lower'").fetchone() is None:
            with self._tx():
                self._db.execute("CREATE INDEX IF NOT EXISTS files_lower "
                                 "ON files (lower(path))")
        self._case_indexed = True

    @_reads
    def case_variants(self, paths: list[str]) -> list[tuple[str, bool]]:
        """(path, deleted) of the entries whose path is one of `paths` but for the case
        of its ASCII letters (SQLite's lower()): the candidates a caller keys itself.
        Through `index_case`'s index: a few rows per path asked."""
        out: list[tuple[str, bool]] = []
        for i in range(0, len(paths), 500):
            chunk = paths[i:i + 500]
            out += self._db.execute(
                "SELECT path, deleted FROM files WHERE lower(path) IN "
                f"({', '.join(['lower(?)'] * len(chunk))})", chunk).fetchall()
        return out

    @_locked
    def put_local(self, entries: Iterable[FileEntry], held_by: str | None = None) -> None:
        """Store local changes in one transaction, each under a fresh sequence number.

        The seq is written back into each entry only once the transaction committed,
        so a failed write leaves the callers' objects as they were. What peers announced
        of these paths is brought up to date too (see `_after_local`). `held_by`: a
        device that holds each of them exactly, under the seq the entry still carries
        (its copies of its own entries): a `remote_same` row each, in the same
        transaction, so that what we announce never tells it of them in full.
        """
        batch = list(entries)
        if not batch:
            return
        with self._tx():
            first = self._max_seq() + 1
            seqs = range(first, first + len(batch))
            dev = self._devices  # a property: once, not per row
            rows = [_keyed_row(dev, e, s) for e, s in zip(batch, seqs, strict=True)]
            before = self._versions([r[0] for r in rows])
            _many(self._db, f"INSERT INTO files ({_FILE_COLS}, brief_key)", rows,
                  f"ON CONFLICT (path) DO UPDATE SET {_UPSERT}")
            # rows of `blocks` and `remote_same` hang off an entry of ours: a path with
            # none before (most of a first sync, a new folder's scan) has none to delete
            self._write_blocks(batch, before)
            self._after_local({r[0]: r[5] for r in rows if before.get(r[0]) != r[5]}, before)
            if held_by is not None:
                ref = dev.ref(held_by)
                _many(self._db, "INSERT OR REPLACE INTO remote_same (path, device, seq)",
                      [(e.path, ref, e.seq) for e in batch])
            contentindex.merge(self._db)
        self._committed_seq = max(self._committed_seq, seqs[-1])
        for e, s in zip(batch, seqs, strict=True):
            e.seq = s

    def _write_blocks(self, batch: list[FileEntry], indexed: Collection[str]) -> None:
        """Blocks of files of more than one block (one-block files: see contentindex);
        `indexed`: the paths that had an entry before, the only ones with blocks yet."""
        _where_in(self._db, "DELETE FROM blocks", "path",
                  [(e.path,) for e in batch if e.path in indexed])
        latest = {e.path: e for e in batch}  # a path twice in a batch: the last one counts
        rows: list[tuple[bytes, str, int]] = []
        zero = hashing.zero_hash()  # a hole's: never copied from anywhere (a 2 GiB sparse
        for e in latest.values():  # file of holes only was 16,384 rows of it)
            if e.kind != Kind.FILE or e.deleted or len(e.blocks) <= HASH_LEN:
                continue
            for i, h in enumerate(e.block_hashes()):
                if h == zero:
                    continue
                rows.append((h, e.path, i))
                if len(rows) == _BLOCK_ROWS_AT_ONCE:  # (a 100 GiB file has 819,200)
                    _many(self._db, "INSERT INTO blocks (hash, path, idx)", rows)
                    rows = []
        _many(self._db, "INSERT INTO blocks (hash, path, idx)", rows)

    def _versions(self, paths: list[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for chunk in _chunks(paths):
            marks = ", ".join("?" * len(chunk))
            out.update(self._db.execute(
                f"SELECT path, version FROM files WHERE path IN ({marks})", chunk))
        return out

    def _after_local(self, versions_now: dict[str, bytes], indexed: Collection[str]) -> None:
        """Our entries of these paths changed to these versions: a peer's row that equals
        ours becomes a `remote_same` row, one ours dominates goes, the rest is planned
        again; `remote_same` rows of an earlier version of ours (of `indexed` paths, the
        ones we had an entry of) go."""
        _where_in(self._db, "DELETE FROM remote_same", "path",
                  [(p,) for p in versions_now if p in indexed])
        found = []
        for chunk in _chunks(list(versions_now)):
            marks = ", ".join("?" * len(chunk))
            found += self._db.execute(
                f"SELECT path, device, version, seq, cost FROM remote_files "
                f"WHERE path IN ({marks})", chunk).fetchall()
        if not found:
            return
        same, gone, again = [], [], []
        freed: dict[int, list[int]] = {}
        decode = self._devices.decode
        for path, device, version, seq, cost in found:
            mine = versions_now[path]
            if version == mine:
                same.append((path, device, seq))
            elif versions.compare(decode(mine), decode(version)) == versions.Order.NEWER:
                pass  # ours has seen it: nothing can come of it
            else:
                again.append((path, device))
                continue
            gone.append((path, device))
            usage = freed.setdefault(device, [0, 0])
            usage[0] += 1
            usage[1] += cost
        _many(self._db, "INSERT OR REPLACE INTO remote_same (path, device, seq)", same)
        _where_in(self._db, "DELETE FROM remote_files", "path, device", gone)
        _where_in(self._db, "UPDATE remote_files SET pending = 1", "path, device", again)
        for device, (n, size) in freed.items():
            self._db.execute("UPDATE remotes SET entries = entries - ?, bytes = bytes - ? "
                             "WHERE device = ?", (n, size, self._devices.id(device)))

    @_locked
    def set_inode(self, path: str, inode: int, ctime_ns: int = 0) -> None:
        """Update local bookkeeping only: no new version, no new seq."""
        with self._tx():
            self._db.execute("UPDATE files SET inode = ?1, ctime_ns = ?2, brief_key = "
                             "p2psync_brief_key(path, kind, size, mtime_ns, mode, ?1, ?2, "
                             "deleted, error) WHERE path = ?3",
                             (inode_to_db(inode), ctime_ns, path))

    @_locked
    def set_stats(self, items: Iterable[tuple[str, int, int, int]]) -> None:
        """What a scan saw of unchanged entries: (path, inode, ctime_ns, mode).

        Bookkeeping only (no new version, no new seq): a file's identity on disk, or
        permission bits that do not sync (all but the executable bit).
        """
        latest = {p: (p, inode_to_db(i), c, m) for p, i, c, m in items}  # the last counts
        with self._tx():
            self._db.execute(_STATS_TABLE)
            _many(self._db, "INSERT INTO temp.stats_in (path, inode, ctime_ns, mode)",
                  list(latest.values()))
            self._db.execute(_SET_STATS)
            self._db.execute("DELETE FROM temp.stats_in")

    @_reads
    def find_block(self, h: bytes) -> tuple[str, int] | None:
        """Where a block with hash h exists locally, to copy it instead of fetching it.

        The caller must verify the data: the file may have changed since it was indexed.
        """
        return self.find_blocks([h]).get(h)

    @_reads
    def file_blocks(self, path: str) -> bytes:
        """The block hashes of a live file, as indexed (b"": none, or no such file)."""
        row = self._db.execute("SELECT blocks FROM files WHERE path = ? AND kind = 0 "
                               "AND NOT deleted", (path,)).fetchone()
        return bytes(row[0]) if row is not None else b""

    @_reads
    def find_blocks(self, hashes: list[bytes]) -> dict[bytes, tuple[str, int]]:
        """find_block for many hashes at once; hashes found nowhere are left out."""
        out: dict[bytes, tuple[str, int]] = {}
        for chunk in _chunks(hashes):
            prefixes = [h[:8] for h in chunk]
            for path, first in self._db.execute(contentindex.local_files(
                    f"prefix IN ({_numbered(len(chunk))})", "f.path, substr(f.blocks, 1, 32)"),
                    prefixes):
                out.setdefault(bytes(first), (path, 0))
            left = [h for h in chunk if h not in out]
            if not left:
                continue
            marks = ", ".join("?" * len(left))
            for h, path, idx in self._db.execute(
                    f"SELECT hash, path, idx FROM blocks WHERE hash IN ({marks})", left):
                out.setdefault(bytes(h), (path, idx))
        wanted = set(hashes)
        return {h: where for h, where in out.items() if h in wanted}

    @_reads
    def live_with_content(self, blocks: list[bytes]) -> dict[bytes, list[str]]:
        """block list -> paths of our live files with exactly that content (renames)."""
        out: dict[bytes, list[str]] = {}
        wanted = set(blocks)
        for chunk in _chunks(sorted({b[:8] for b in blocks if b})):
            for path, b in self._db.execute(contentindex.local_files(
                    f"prefix IN ({_numbered(len(chunk))})", "f.path, f.blocks"), chunk):
                if bytes(b) not in wanted:
                    continue
                paths = out.setdefault(bytes(b), [])
                if path not in paths:  # a file may come twice (in two levels)
                    paths.append(path)
        return out

    @_reads
    def wanted_elsewhere(self, entries: list[FileEntry]) -> set[str]:
        """Those of our entries whose content a pending, live remote row of another path
        announces (and we have no live entry there): the other half of a move, not yet
        done. Their deletion waits for it, so that the move is a rename."""
        by_blocks: dict[bytes, list[str]] = {}
        for e in entries:
            if e.kind == Kind.FILE and not e.deleted and e.blocks:
                by_blocks.setdefault(bytes(e.blocks), []).append(e.path)
        out: set[str] = set()
        for chunk in _chunks(sorted({b[:8] for b in by_blocks})):
            for path, b in self._db.execute(contentindex.pending_remote(
                    f"prefix IN ({_numbered(len(chunk))})", "r.path, r.blocks",
                    also="AND NOT EXISTS (SELECT 1 FROM files f WHERE f.path = r.path "
                    "AND NOT f.deleted AND f.blocks = r.blocks)"), chunk):
                out.update(p for p in by_blocks.get(bytes(b), ()) if p != path)
        return out

    # --- remote entries

    @_reads
    def remote_state(self, device: str) -> tuple[bytes, int]:
        """(their index_id, highest seq of theirs we hold); (b"", 0) if unknown."""
        row = self._db.execute(
            "SELECT index_id, max_seq FROM remotes WHERE device = ?", (device,)
        ).fetchone()
        return (b"", 0) if row is None else (bytes(row[0]), row[1])

    @_locked
    def put_remote(
        self, device: str, index_id: bytes, entries: Iterable[FileEntry], max_seq: int,
        ours: Iterable[tuple[str, int, int]] = (),
    ) -> int:
        """Store one batch a peer announced; a new index_id discards its old history.

        `ours`: (path, its seq, our seq) of entries it says it holds exactly as we
        announced them (see `announce_since`).

        Returns how many entries were refused because the device's budget
        (`remote_limits`) is spent: new paths, or updates that would grow past it.
        Those are not stored; the rest of the batch is.
        """
        batch = list(entries)
        same = list(ours)
        with self._tx():
            row = self._db.execute(
                "SELECT index_id, entries, bytes FROM remotes WHERE device = ?", (device,)
            ).fetchone()
            ref = self._devices.ref(device)
            usage = [0, 0]
            if row is None:
                pass  # its first page: what it holds of ours so far came with `put_local`
            elif bytes(row[0]) != index_id:
                self._db.execute("DELETE FROM remote_files WHERE device = ?", (ref,))
                self._db.execute("DELETE FROM remote_same WHERE device = ?", (ref,))
            else:
                usage = [row[1], row[2]]
            refused = self._store_remote(ref, batch, usage)
            self._store_ours(ref, same, usage)
            self._db.execute(
                "INSERT OR REPLACE INTO remotes (device, index_id, max_seq, entries, bytes) "
                "VALUES (?, ?, ?, ?, ?)", (device, index_id, max_seq, *usage))
            contentindex.merge(self._db)  # after `remotes`: its count of rows is current
        return refused

    def _store_remote(self, ref: int, batch: list[FileEntry], usage: list[int]) -> int:
        """Sort a batch into `remote_same` (ours exactly), nothing (ours has seen it) and
        `remote_files` (the rest, within the budget); `usage` is updated. Returns how many
        were refused."""
        paths = list({e.path for e in batch})
        mine: dict[str, bytes] = {}
        old: dict[str, int] = {}
        for chunk in _chunks(paths):
            marks = ", ".join("?" * len(chunk))
            mine.update(self._db.execute(
                f"SELECT path, version FROM files WHERE path IN ({marks})", chunk))
            old.update(self._db.execute(
                f"SELECT path, cost FROM remote_files WHERE device = ? AND path IN ({marks})",
                (ref, *chunk)))
        limits = self.remote_limits
        dev = self._devices  # a property: once, not per entry
        same, drop, full = [], [], []
        refused = 0
        for e in batch:
            blob = dev.encode(e.version)
            local = mine.get(e.path)
            before = old.pop(e.path, None)
            if local is not None and (local == blob or versions.compare(
                    dev.decode(local), e.version) == versions.Order.NEWER):
                if local == blob:
                    same.append((e.path, ref, e.seq))
                drop.append((e.path, ref))
                if before is not None:
                    usage[0] -= 1
                    usage[1] -= before
                continue
            cost = entry_cost(e)
            more = cost - (before or 0)
            if (before is None and usage[0] >= limits.entries) or \
                    (more > 0 and usage[1] + more > limits.bytes):
                refused += 1
                if before is not None:
                    old[e.path] = before
                continue
            usage[0] += before is None
            usage[1] += more
            old[e.path] = cost
            pending = not (e.deleted and local is None)  # junk until someone has that path
            full.append(_remote_row(dev, ref, e, pending, cost, blob))
        _where_in(self._db, "DELETE FROM remote_files", "path, device", drop)
        # a copy of ours is only ever kept for a path we have
        _where_in(self._db, "DELETE FROM remote_same", "path, device",
                  [(r[0], ref) for r in full if r[0] in mine] + drop)
        _many(self._db, "INSERT OR REPLACE INTO remote_same (path, device, seq)", same)
        _many(self._db, f"INSERT OR REPLACE INTO remote_files ({_REMOTE_COLS})", full)
        return refused

    def _store_ours(self, ref: int, items: list[tuple[str, int, int]], usage: list[int]
                    ) -> None:
        """What the peer holds exactly as we announced it: a `remote_same` row where our
        entry is still the one announced (same seq); else it has an earlier version of
        ours, which nothing can come of (its rows go)."""
        if not items:
            return
        seqs: dict[str, int] = {}
        old: dict[str, int] = {}
        paths = list({p for p, _, _ in items})
        for chunk in _chunks(paths):
            marks = ", ".join("?" * len(chunk))
            seqs.update(self._db.execute(
                f"SELECT path, seq FROM files WHERE path IN ({marks})", chunk))
            old.update(self._db.execute(
                f"SELECT path, cost FROM remote_files WHERE device = ? AND path IN ({marks})",
                (ref, *chunk)))
        keys = [(p, ref) for p in paths]
        _where_in(self._db, "DELETE FROM remote_files", "path, device",
                  [k for k in keys if k[0] in old])
        _where_in(self._db, "DELETE FROM remote_same", "path, device", keys)
        _many(self._db, "INSERT OR REPLACE INTO remote_same (path, device, seq)",
              [(p, ref, theirs) for p, theirs, mine in items if seqs.get(p) == mine])
        usage[0] -= len(old)
        usage[1] -= sum(old.values())

    @_locked
    def forget_devices(self, devices: Collection[str], unless_seen_since: float
                       ) -> dict[str, float]:
        """Drop all that those of these devices last seen before `unless_seen_since`
        announced (their rows and their places among the remotes). Returns them, with
        when each was last seen. Read under the lock `saw_device` takes: one that
        connected meanwhile keeps its rows; one with no time recorded is not known to be
        gone, and is kept too.

        One that comes back is a new device to us: asked for its index from the start,
        it sends it all again. Their numbers stay (version vectors name them). One pass
        over each table: there is no index by device.
        """
        seen = self.last_seen()
        gone = {d: seen[d] for d in sorted(devices) if seen.get(d, unless_seen_since)
                < unless_seen_since}
        if not gone:
            return {}
        refs = [(r,) for d in gone if (r := self._devices.find(d)) is not None]
        with self._tx():
            _where_in(self._db, "DELETE FROM remotes", "device", [(d,) for d in gone])
            for table in ("remote_files", "remote_same"):
                _where_in(self._db, f"DELETE FROM {table}", "device", refs)
        return gone

    @_reads
    def remote_usage(self, device: str) -> tuple[int, int]:
        """(entries, bytes as `entry_cost` counts them) the device holds in our index."""
        row = self._db.execute("SELECT entries, bytes FROM remotes WHERE device = ?",
                               (device,)).fetchone()
        return (0, 0) if row is None else (row[0], row[1])

    @_reads
    def remote_get(self, device: str, path: str) -> FileEntry | None:
        return self.remote_for_path(path).get(device)

    @_reads
    def remote_for_path(self, path: str) -> dict[str, FileEntry]:
        """device -> the entry that device announced for path (ours, for `remote_same`)."""
        out = self._remote_full([path]).get(path, {})
        same = self._db.execute("SELECT device, seq FROM remote_same WHERE path = ?",
                                (path,)).fetchall()
        if same:
            mine = self.get(path)
            for ref, seq in same:
                if mine is not None:
                    out[self._devices.id(ref)] = FileEntry(
                        path, mine.kind, mine.size, mine.mtime_ns, mine.mode, mine.hash,
                        mine.blocks, mine.target, mine.version, mine.modified_by,
                        mine.deleted, seq)
        return dict(sorted(out.items()))

    @_reads
    def remotely_deleted(self, paths: list[str]) -> set[str]:
        """Those of paths that some peer announced deleted (a tombstone it holds and we
        do not): the only ones a plan could delete here. Read without an entry's block
        list: a move's search looks at every file of a content, and 500 copies of a
        2 GiB file are 256 MB of block lists."""
        out: set[str] = set()
        for chunk in _chunks(paths):
            marks = ", ".join("?" * len(chunk))
            out.update(r[0] for r in self._db.execute(
                f"SELECT DISTINCT path FROM remote_files WHERE path IN ({marks}) AND deleted",
                chunk))
        return out

    @_reads
    def remote_entries(self, paths: list[str]) -> dict[str, dict[str, FileEntry]]:
        """path -> device -> what it announced, for the rows that differ from ours (what
        planning needs: a copy of our version changes no plan)."""
        return self._remote_full(paths)

    def _remote_full(self, paths: list[str]) -> dict[str, dict[str, FileEntry]]:
        """path -> device -> the row that device announced, for rows kept in full."""
        out: dict[str, dict[str, FileEntry]] = {}
        db, dev = self._db, self._devices
        for chunk in _chunks(paths):
            marks = ", ".join("?" * len(chunk))
            for r in db.execute(
                    f"SELECT device, {_REMOTE_ENTRY} FROM remote_files "
                    f"WHERE path IN ({marks})", chunk):
                e = self._entry(r[1:], dev)
                out.setdefault(e.path, {})[dev.id(r[0])] = e
        return out

    @_reads
    def announced_alive(self, device: str, paths: list[str]) -> set[str]:
        """Those of paths the device announced as an existing file, link or directory."""
        ref = self._devices.find(device)
        if ref is None:
            return set()
        out: set[str] = set()
        for chunk in _chunks(paths):
            marks = ", ".join("?" * len(chunk))
            out.update(r[0] for r in self._db.execute(
                f"SELECT path FROM remote_files WHERE device = ? AND path IN ({marks}) "
                "AND NOT deleted", (ref, *chunk)))
            out.update(r[0] for r in self._db.execute(
                f"SELECT s.path FROM remote_same s JOIN files f ON f.path = s.path "
                f"WHERE s.device = ? AND s.path IN ({marks}) AND NOT f.deleted",
                (ref, *chunk)))
        return out

    @_reads
    def remote_devices(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT device FROM remotes ORDER BY device")]

    @_reads
    def differing_paths(self, device: str | None = None) -> list[str]:
        """Paths where a remote version differs from ours (or we have none), sorted.

        A deletion of a path we never had is left out: there is nothing to delete
        here, and adopting it would only pass it on. Should another device announce
        that path alive, the path differs through that entry, and the planner sees
        the deletion beside it (and passes it on where it wins).
        """
        return [p for chunk in self.iter_differing(device) for p in chunk]

    def iter_differing(self, device: str | None = None, chunk: int = 5000
                       ) -> Iterator[list[str]]:
        """differing_paths() in sorted chunks."""
        sql = ("SELECT DISTINCT r.path FROM remote_files r LEFT JOIN files f "
               "ON f.path = r.path WHERE r.path > ? "
               "AND ((f.path IS NULL AND NOT r.deleted) OR f.version != r.version)")
        args: tuple = ()
        if device is not None:
            with self._reading():
                ref = self._devices.find(device)
            if ref is None:
                return
            sql += " AND r.device = ?"
            args = (ref,)
        after = ""
        while True:
            with self._reading():
                rows = [r[0] for r in self._db.execute(
                    sql + " ORDER BY r.path LIMIT ?", (after, *args, chunk))]
            if rows:
                yield rows
            if len(rows) < chunk:
                return
            after = rows[-1]

    @_reads
    def differing_entries(self, after: Mapping[tuple[str, bool], int] | None = None,
                          ends: dict[tuple[str, bool], int] | None = None
                          ) -> list[tuple[str, FileEntry | None, dict[str, FileEntry]]]:
        """(path, local entry or None, device -> remote entry) for what to plan now.

        The window of every device: its oldest pending rows (at most
        `remote_limits.planned` and `planned_bytes`, one at least), live ones and
        deletions each, in the order it announced them. Only the rows kept in full
        are given: a peer that holds exactly our version changes no plan.

        `after`: (device, deleted) -> a seq: that window starts past it (the next
        window, planned while the rows of this one are still being fetched: see
        Node._plan_ahead). `ends` is given the seq each window ends at.
        """
        window: set[str] = set()
        limits = self.remote_limits
        for ref in self._devices_with_rows():
            device = self._devices.id(ref)
            for deleted in (False, True):
                total = 0
                since = after.get((device, deleted), -1) if after else -1
                for n, (path, cost, seq) in enumerate(self._db.execute(
                        "SELECT path, cost, seq FROM remote_files INDEXED BY remote_todo "
                        "WHERE device = ? AND deleted = ? AND pending AND seq > ? "
                        "ORDER BY seq LIMIT ?", (ref, deleted, since, limits.planned))):
                    total += cost
                    if n and total > limits.planned_bytes:
                        break
                    window.add(path)
                    if ends is not None:
                        ends[(device, deleted)] = seq
        paths = sorted(window)
        local = self.get_many(paths)
        remote = self._remote_full(paths)
        return [(p, local.get(p), remote.get(p, {})) for p in paths]

    def _devices_with_rows(self) -> list[int]:
        """The devices that have pending rows (one index probe per device we know)."""
        refs = [self._devices.find(d) for d in self.remote_devices()]
        return [ref for ref in refs if ref is not None and self._db.execute(
            "SELECT 1 FROM remote_files INDEXED BY remote_todo WHERE device = ? AND pending "
            "LIMIT 1", (ref,)).fetchone()]

    def settle(self, rows: Iterable[tuple[str, str, int]]) -> None:
        """These (device, path, seq) rows planned to nothing: no window holds them again
        until our entry of the path changes (or `unsettle` says the rules did).
        Written a few thousand at a time: other writers wait for no more than that."""
        with self._reading():
            items = [(path, ref, seq) for device, path, seq in rows
                     if (ref := self._devices.find(device)) is not None]
        for i in range(0, len(items), 2000):
            with self._lock, self._tx():
                _where_in(self._db, "UPDATE remote_files SET pending = 0", "path, device, seq",
                          items[i:i + 2000])

    def settle_paths(self, paths: Collection[str]) -> None:
        """Every pending row of these paths settled, whatever it plans to: the preview
        moves on to the next window of its scratch copy this way (app/engine/preview.py)."""
        keys = [(p,) for p in sorted(paths)]
        for i in range(0, len(keys), 2000):
            with self._lock, self._tx():
                _where_in(self._db, "UPDATE remote_files SET pending = 0", "path",
                          keys[i:i + 2000])

    @_locked
    def unsettle(self) -> None:
        """Plan every row again (the ignore rules changed)."""
        with self._tx():
            self._db.execute("UPDATE remote_files SET pending = 1 WHERE NOT pending AND "
                             "(NOT deleted OR EXISTS (SELECT 1 FROM files f "
                             "WHERE f.path = remote_files.path))")

    @_reads
    def pending_deletions(self, exclude: Collection[str] = (),
                          skip: Collection[str] = ()) -> dict[str, int]:
        """author -> our live files and links announced as deleted by it, pending a plan
        (not by the `exclude`d devices; not the halves of a move: see wanted_elsewhere;
        not the `skip`ped paths: those a plan settled, still pending in its snapshot)."""
        out = self._pending_deletions(exclude, [])
        paths = sorted(skip)
        for i in range(0, len(paths), _ROWS_PER_STATEMENT):
            for device, n in self._pending_deletions(
                    exclude, paths[i:i + _ROWS_PER_STATEMENT]).items():
                out[device] -= n
        return {device: n for device, n in out.items() if n > 0}

    def _pending_deletions(self, exclude: Collection[str], among: list[str]
                           ) -> dict[str, int]:
        """pending_deletions, of the paths `among` if any."""
        refs = {ref for d in exclude if (ref := self._devices.find(d)) is not None}
        where = f"AND r.path IN ({', '.join('?' * len(among))}) " if among else ""
        out: dict[str, int] = {}
        for ref, n in self._db.execute(
                "SELECT r.modified_by, COUNT(DISTINCT r.path) FROM remote_files r "
                "JOIN files f ON f.path = r.path WHERE r.pending AND r.deleted "
                f"AND r.device NOT IN ({', '.join(map(str, refs))}) {where}"
                "AND NOT f.deleted AND f.kind != 1 AND NOT EXISTS ("
                + contentindex.pending_remote("prefix = substr(f.blocks, 1, 8)", "1", "n",
                                              "AND n.blocks = f.blocks AND n.path != f.path")
                + ") GROUP BY r.modified_by", among):
            device = self._devices.id(ref)
            out[device] = out.get(device, 0) + n
        return out

    @_reads
    def pending_deletions_under(self, folder: str) -> int:
        """How many of our live entries below `folder` a peer announced as deleted, pending
        a plan: a directory goes once they are gone, not before."""
        return self._db.execute(
            "SELECT COUNT(DISTINCT r.path) FROM remote_files r JOIN files f ON f.path = r.path "
            "WHERE r.path >= ? AND r.path < ? AND r.pending AND r.deleted AND NOT f.deleted",
            (folder + "/", folder + "0")).fetchone()[0]

    # --- names of devices seen (for messages about devices that are not connected)

    @_reads
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

    @_reads
    def last_seen(self) -> dict[str, float]:
        """device -> when it was last connected (seconds since the epoch)."""
        return {d: t for d, t in self._json_meta(SEEN_KEY).items()
                if isinstance(t, int | float)}

    @_locked
    def saw_device(self, device: str, when: float, keep: int = 1000) -> None:
        """Record that `device` was connected at `when` (for "offline since 14:02"),
        kept for the latest `keep` devices, like their names."""
        seen = self.last_seen()
        seen.pop(device, None)
        seen[device] = round(when, 1)
        while len(seen) > keep:
            del seen[next(iter(seen))]
        self.set_meta(SEEN_KEY, json.dumps(seen))

    @_reads
    def unreadable(self, limit: int = 50) -> tuple[list[tuple[str, str]], int]:
        """Our files the scanner could not read: the first `limit` (path, why), and how
        many there are (for `sync`'s exit 5)."""
        where = f"FROM files WHERE {_UNREADABLE}"  # word for word the partial index's
        rows = self._db.execute(f"SELECT path, error {where} ORDER BY path LIMIT ?",
                                (limit,)).fetchall()
        count = len(rows) if len(rows) < limit else \
            self._db.execute(f"SELECT COUNT(*) {where}").fetchone()[0]
        return [(p, e) for p, e in rows], count

    # --- local files the scanner skips (bad names, unreadable dirs; for status)

    @_reads
    def skipped(self) -> dict[str, str]:
        """Local paths the scanner could not index, and why (at most SKIPPED_KEPT: the
        scanner logs how many more there were)."""
        return self._json_meta(SKIPPED_KEY)

    @_locked
    def set_skipped(self, skipped: dict[str, str]) -> None:
        if skipped != self.skipped():
            self.set_meta(SKIPPED_KEY, json.dumps(skipped, sort_keys=True))

    # --- files that could not be synced (for status and the window)

    def set_failures(self, failures: dict[str, str]) -> None:
        """Replace the list of paths the node could not sync, and why (path -> reason).

        Kept in meta (a JSON text and a counter that moves with it), so `status` shows
        them when no node runs, and a reader can tell cheaply whether they changed.
        """
        with self._lock, self._tx():
            self._set_meta((FAILURES_KEY, json.dumps(failures, sort_keys=True)))
            self._set_meta((FAILURES_GEN_KEY, int(self._get_meta(FAILURES_GEN_KEY) or 0) + 1))

    @_reads
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
    def set_ignored(self, paths: list[str], rules: list[str] | None = None) -> None:
        """Replace the list of ignored paths seen by the last full scan, and the ignore
        rules it matched them by (None: not known, or not those of every scan since).

        While the rules stay those, an indexed file unchanged since is ignored exactly
        when it is listed here: a survey need not match it again (app/core/survey.py).
        """
        stored = None if rules is None else json.dumps(rules)
        with self._tx():
            self._db.execute("DELETE FROM ignored")
            _many(self._db, "INSERT OR IGNORE INTO ignored (path)", [(p,) for p in paths])
            self._set_meta((IGNORED_RULES_KEY, stored))

    @_locked
    def forget_ignored_rules(self) -> None:
        """The rules changed: files may be indexed by others than the listed ones'."""
        with self._tx():
            self._set_meta((IGNORED_RULES_KEY, None))

    @_reads
    def ignored(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT path FROM ignored ORDER BY path")]

    def iter_ignored(self, chunk: int = 5000) -> Iterator[str]:
        """ignored(), a chunk at a time."""
        after = ""
        while True:
            with self._reading():
                rows = [r[0] for r in self._db.execute(
                    "SELECT path FROM ignored WHERE path > ? ORDER BY path LIMIT ?",
                    (after, chunk))]
            yield from rows
            if len(rows) < chunk:
                return
            after = rows[-1]

    # --- conflict copies (for status)

    @_reads
    def live_conflict_copies(self) -> list[str]:
        """Our live files named as conflict copies (one pass in SQL; usually few)."""
        return [r[0] for r in self._db.execute(
            "SELECT path FROM files WHERE NOT deleted AND kind != 1 "
            "AND path LIKE '%.sync-conflict-%' ORDER BY path")
            if ".sync-conflict-" in r[0].rpartition("/")[2]]

    @_reads
    def is_live(self, path: str) -> bool:
        return self._db.execute("SELECT 1 FROM files WHERE path = ? AND NOT deleted",
                                (path,)).fetchone() is not None

    @_reads
    def live_names_in(self, folder: str) -> list[str]:
        """The names of the live entries directly in `folder` ("" for the root)."""
        lo, hi = (folder + "/", folder + "0") if folder else ("", "\U0010ffff")
        return [p[len(lo):] for (p,) in self._db.execute(
            "SELECT path FROM files WHERE path >= ? AND path < ? AND NOT deleted", (lo, hi))
            if "/" not in p[len(lo):]]

    # --- states (for status): every local entry with what peers hold of it

    def iter_states(self, chunk: int = 2000) -> Iterator[tuple[FileEntry, bool, bool]]:
        """(entry, some peer holds exactly it, some peer announced another version), for
        every local entry in path order, `chunk` at a time."""
        sql = (f"SELECT {_FILE_COLS}, "
               "EXISTS (SELECT 1 FROM remote_same s WHERE s.path = files.path) "
               "OR EXISTS (SELECT 1 FROM remote_files r WHERE r.path = files.path "
               "AND r.version = files.version), "
               "EXISTS (SELECT 1 FROM remote_files r WHERE r.path = files.path "
               "AND r.version != files.version) "
               "FROM files WHERE path > ? ORDER BY path LIMIT ?")
        after = ""
        while True:
            with self._reading():
                rows = self._db.execute(sql, (after, chunk)).fetchall()
                dev = self._devices
                out = [(self._entry(r, dev), bool(r[15]), bool(r[16])) for r in rows]
            yield from out
            if len(rows) < chunk:
                return
            after = rows[-1][0]


    def iter_peer_view(self, device: str, chunk: int = 2000
                       ) -> Iterator[tuple[FileEntry, FileEntry | None, bool]]:
        """(our entry, the row `device` announced of that path in full or None, whether it
        holds exactly our entry), for every local entry in path order, `chunk` at a time:
        what the preview plans that device's side from."""
        with self._reading():
            ref = self._devices.find(device)
        ref = -1 if ref is None else ref
        sql = (f"SELECT {_cols('f.', _FILE_COLS)}, s.seq IS NOT NULL, r.path, r.kind, r.size, "
               "r.mtime_ns, r.mode, r.version, r.modified_by, r.deleted, r.seq, 0, 0, '', "
               "r.target, r.hash, r.blocks FROM files f "
               "LEFT JOIN remote_same s ON s.path = f.path AND s.device = ? "
               "LEFT JOIN remote_files r ON r.path = f.path AND r.device = ? "
               "WHERE f.path > ? ORDER BY f.path LIMIT ?")
        after = ""
        while True:
            with self._reading():
                rows = self._db.execute(sql, (ref, ref, after, chunk)).fetchall()
                dev = self._devices
                out = [(self._entry(r[:15], dev), None if r[16] is None
                        else self._entry(r[16:], dev), bool(r[15])) for r in rows]
            yield from out
            if len(rows) < chunk:
                return
            after = rows[-1][0]


    @_reads
    def remote_only_live(self, device: str) -> int:
        """Live files and links `device` announced at paths we have no entry of: with the
        ones it holds of ours, what its mass-deletion guard counts (the preview asks)."""
        ref = self._devices.find(device)
        if ref is None:
            return 0
        return self._db.execute(
            "SELECT COUNT(*) FROM remote_files r WHERE r.device = ? AND NOT r.deleted "
            "AND r.kind != ? AND NOT EXISTS (SELECT 1 FROM files f WHERE f.path = r.path)",
            (ref, _DIR)).fetchone()[0]

    @_reads
    def by_seq(self, device: str, seqs: Collection[int]
               ) -> dict[int, tuple[str, bool, int, int, bool]]:
        """seq -> (path, deleted, kind, mtime_ns, whether `device` announced anything of that
        path) of our entries at these seqs: a move is a tombstone and its new path at
        neighbouring seqs, with the same mtime (the preview pairs them for a peer)."""
        ref = self._devices.find(device)
        ref = -1 if ref is None else ref
        out: dict[int, tuple[str, bool, int, int, bool]] = {}
        for chunk in _chunks(sorted(seqs)):
            marks = ", ".join("?" * len(chunk))
            for seq, path, deleted, kind, mtime_ns, known in self._db.execute(
                    f"SELECT f.seq, f.path, f.deleted, f.kind, f.mtime_ns, "
                    "EXISTS (SELECT 1 FROM remote_same s WHERE s.path = f.path AND s.device = ?) "
                    "OR EXISTS (SELECT 1 FROM remote_files r WHERE r.path = f.path "
                    f"AND r.device = ?) FROM files f WHERE f.seq IN ({marks})",
                    (ref, ref, *chunk)):
                out[seq] = (path, bool(deleted), kind, mtime_ns, bool(known))
        return out


_UPSERT = ", ".join(f"{c} = excluded.{c}" for c in
                    (c.strip() for c in f"{_FILE_COLS}, brief_key".split(",")) if c != "path")
# "/" is 0x2F and "0" is 0x30: the range holds exactly the paths below `under`
_UNDER = "(path = ? OR (path >= ? AND path < ?))"


def _under_args(under: str) -> tuple[str, str, str]:
    return under, under + "/", under + "0"


def _numbered(n: int) -> str:
    """?1, ..., ?n: marks a statement can use more than once (contentindex's levels)."""
    return ", ".join(f"?{i}" for i in range(1, n + 1))


def _chunks(items: list[T], size: int = 500) -> Iterator[list[T]]:
    """Pieces small enough for one `IN (...)` list (SQLite caps the number of ? marks)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


_ROWS_PER_STATEMENT = 400


# What a scan saw of unchanged entries goes in through a temporary table, a few hundred
# rows a statement (`_many`), and from there into `files` in one statement: one
# executemany step a row let go of the GIL each time, and 2,000 rows held the index's
# lock 0.86 s beside a busy thread. (UPDATE ... FROM would do it too, from SQLite 3.33.)
_STATS_TABLE = ("CREATE TEMP TABLE IF NOT EXISTS stats_in (path TEXT PRIMARY KEY, "
                "inode INTEGER, ctime_ns INTEGER, mode INTEGER) WITHOUT ROWID")
_STAT_IN = "(SELECT {} FROM temp.stats_in s WHERE s.path = files.path)"
_NEW_MODE, _NEW_INODE, _NEW_CTIME = (_STAT_IN.format(c) for c in ("mode", "inode", "ctime_ns"))
# the brief key of the new values in the same statement: one that left it would have it
# dropped by a trigger and then need another statement to make it (see briefkeys)
_SET_STATS = (
    f"UPDATE files SET inode = {_NEW_INODE}, ctime_ns = {_NEW_CTIME}, mode = {_NEW_MODE}, "
    f"brief_key = p2psync_brief_key(path, kind, size, mtime_ns, {_NEW_MODE}, {_NEW_INODE}, "
    f"{_NEW_CTIME}, deleted, error) WHERE path IN (SELECT path FROM temp.stats_in)")


_BLOCK_ROWS_AT_ONCE = 20_000  # rows of `blocks` built before they are written


def _many(db: sqlite3.Connection, head: str, rows: list[tuple], tail: str = "") -> None:
    """`head VALUES (?, ...), (?, ...) tail` for all rows, a few hundred per statement.

    One statement for many rows, not one per row as executemany: the sqlite3 module
    lets go of the GIL at every step, and a busy worker thread then keeps it for up to
    the switch interval each time; a thousand rows cost the event loop a second.
    """
    if not rows:
        return
    mark = "(" + ", ".join("?" * len(rows[0])) + ")"
    for part in _chunks(rows, _ROWS_PER_STATEMENT):
        db.execute(f"{head} VALUES {', '.join([mark] * len(part))} {tail}",
                   [v for r in part for v in r])


def _where_in(db: sqlite3.Connection, head: str, cols: str, keys: list[tuple]) -> None:
    """`head WHERE (cols) IN (...)` for all keys, a few hundred per statement.

    The first column (`path`, where there are more) leads the keys, and is listed
    alone: SQLite scans the whole table for a row value IN a list, not for a plain IN.
    Keys of more columns go per value of their second (`device`), which is given too:
    SQLite then finds each row by both, where `path IN (...)` alone visited every
    device's row of each path (on an index that knew 86 devices, 100,000 keys took
    1.7 s, against 0.14 s so). What follows (a seq) is matched as a row value.
    """
    if not keys:
        return
    first, *more = (c.strip() for c in cols.split(","))
    if not more:
        for part in _chunks(keys, _ROWS_PER_STATEMENT):
            db.execute(f"{head} WHERE {first} IN ({', '.join('?' * len(part))})",
                       [k[0] for k in part])
        return
    by_second: dict[object, list[tuple]] = {}
    for k in keys:
        by_second.setdefault(k[1], []).append(k)
    rest = ", ".join([first, *more[1:]])
    for second, group in by_second.items():
        for part in _chunks(group, _ROWS_PER_STATEMENT):
            sql = f"{head} WHERE {more[0]} = ? AND {first} IN ({', '.join('?' * len(part))})"
            args = [second, *(k[0] for k in part)]
            if len(more) > 1:
                mark = "(" + ", ".join("?" * len(more)) + ")"
                sql += f" AND ({rest}) IN (VALUES {', '.join([mark] * len(part))})"
                args += [v for k in part for v in (k[0], *k[2:])]
            db.execute(sql, args)


def inode_to_db(inode: int) -> int:
    """st_ino is unsigned 64-bit; SQLite integers are signed: store it wrapped."""
    return inode - (1 << 64) if inode >= (1 << 63) else inode


class Shared(NamedTuple):
    """A shared file as the index holds it (`Index.shared_stats`)."""

    size: int
    mtime_ns: int
    inode: int
    ctime_ns: int
    blocks: bytes | None  # its block hashes if it has at most one block, else None

    @property
    def stat(self) -> tuple[int, int, int, int]:
        """What the scanner compares: (size, mtime_ns, inode, ctime_ns)."""
        return (self.size, self.mtime_ns, self.inode, self.ctime_ns)


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
