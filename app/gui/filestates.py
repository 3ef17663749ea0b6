"""Every file's sync state for the window, kept current at little cost. Qt-free.

`app.core.states.file_states` recomputes every row from fully decoded index entries:
about 4 s for 100,000 files, too slow to repeat after each change. The tracker
gives the same rows (tests/gui/test_filestates.py holds it to that) in two steps:

* `snapshot()`: all rows from one SQL pass over the index's covering indexes
  (about 0.3 s for 100,000 files);
* `poll()`: only the rows of paths whose local entry, or an entry a peer announced,
  changed since the last call (found by sequence numbers, so an idle poll is two
  tiny queries), and only those whose row really changed.

Each row carries its `why` (app/core/why.py), the tooltip of its row: which device
has the newer version and whether it is connected (`online`, set by the worker: the
rows that depend on it are worked out again when it changes), what a conflict or an
error is and what to do about it.

It reads the index database through its own connection (WAL mode: a reader never
blocks the engine's writer) and needs schema version 3 of app/core/index.py; on any
other version it falls back to `file_states` for every poll. It is called from a
worker thread, never from the GUI thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from app.core import configdir, why
from app.core.apply import is_conflict_copy
from app.core.ignore import Ignore, own_dirs
from app.core.index import FAILURES_GEN_KEY, Index
from app.core.model import Kind
from app.core.planner import Action, plan_path
from app.core.states import (
    CONFLICT,
    ERROR,
    IGNORED,
    LOCAL_CHANGE,
    REMOTE_CHANGE,
    SYNCED,
    conflict_original,
    file_states,
)
from app.core.why import Devices

log = logging.getLogger(__name__)

# path, size, mtime (seconds), state, why ("" when synced)
Row = tuple[str, int, float, str, str]
# the index schemas whose columns these queries read: 4-8 add indexes, tables, triggers,
# a column, a meta key (app/core/index.py)
KNOWN_SCHEMAS = (3, 4, 5, 6, 7, 8)
BATCH = 500
RECOMPUTE_CHUNK = 5000  # rows worked out again at a time (`StateTracker._recompute`)

_LOCAL_SQL = """
SELECT f.path, f.kind, f.size, f.mtime_ns, f.error, f.deleted,
  EXISTS (SELECT 1 FROM remote_same s WHERE s.path = f.path)
  OR EXISTS (SELECT 1 FROM remote_files r WHERE r.path = f.path AND r.version = f.version),
  EXISTS (SELECT 1 FROM remote_files r WHERE r.path = f.path AND r.version != f.version)
FROM files f
"""
# the live conflict copies, and what merely looks like one (is_conflict_copy decides)
_COPIES_SQL = "SELECT path FROM files WHERE NOT deleted AND path LIKE '%.sync-conflict-%'"
# what a device announced after a seq: rows kept in full, and copies of our versions
_REMOTE_SINCE = """
SELECT path FROM remote_files WHERE device = (SELECT id FROM devices WHERE device = ?)
  AND seq > ?
UNION SELECT path FROM remote_same WHERE device = (SELECT id FROM devices WHERE device = ?)
  AND seq > ?
"""


@dataclass
class Update:
    """What changed since the last poll: a whole new table, or some rows."""

    reset: list[Row] | None = None
    rows: list[Row] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.reset is not None or bool(self.rows) or bool(self.removed)


class StateTracker:
    def __init__(self, index: Index, db_path: Path, root: Path | None) -> None:
        self.index = index
        self.root = root
        self._db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(os.fspath(db_path), check_same_thread=False, timeout=30)
            version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if version is not None and int(version[0]) in KNOWN_SCHEMAS:
                self._db = db
            else:
                db.close()
                log.info("index schema %s: file states via file_states()", version)
        except (sqlite3.Error, ValueError) as e:
            log.info("cannot read the index directly (%s): file states via file_states()", e)
        self._rows: dict[str, Row] = {}
        self._local_seq = 0
        self._remotes: dict[str, tuple[bytes, int]] = {}
        self._copies: dict[str, set[str]] = {}  # original -> its live conflict copies
        self._ignored: set[str] = set()
        self._ignore: Ignore | None = None  # for the why of ignored rows, made when needed
        self._failures: dict[str, str] = {}
        self._failures_gen: object = None
        self.online: frozenset[str] | None = None  # devices connected now; None: no node
        self._devices = Devices(own=index.device_id)
        self._known: list[str] = []  # devices that announced anything
        # the why of every local change: it depends on the two above alone
        self._local_why = why.local_change(self._devices, self._known)
        self._skipped: dict[str, str] = {}  # local names the scanner could not take

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    @property
    def fast(self) -> bool:
        return self._db is not None

    # --- public --------------------------------------------------------------------
    def snapshot(self) -> list[Row]:
        """Every row, in no particular order (the table sorts its own: `prepare_rows`);
        the starting point of later polls."""
        self._read_devices()
        if self._db is None:
            rows = [_from_state(r) for r in file_states(self.index, self.root, self._devices)]
            self._rows = {r[0]: r for r in rows}
            return rows
        self._rules_changed()
        self._local_seq, self._remotes = self._marks()
        self._copies = {}
        for (path,) in self._db.execute(_COPIES_SQL):
            if is_conflict_copy(path):
                self._copies.setdefault(self._original(path), set()).add(path)
        # row by row from the cursor: a dict of every local entry first held a million
        # tuples of seven beside the rows made of them
        rows: dict[str, Row] = {}
        rowless: set[str] = set()  # local entries that are no row (directories, deletions)
        for r in self._db.execute(_LOCAL_SQL):
            row = self._local_row(r[0], r[1:])
            if row is not None:
                rows[r[0]] = row
            else:
                rowless.add(r[0])
        for path in self.index.differing_paths():
            if path not in rows and path not in rowless:
                row = self._remote_only_row(path)
                if row is not None:
                    rows[path] = row
        del rowless
        self._ignored = set(self.index.ignored())
        for path in self._ignored:
            rows[path] = self._ignored_row(path)
        self._read_failures()
        for path, reason in self._failures.items():
            if path in rows:
                rows[path] = (path, rows[path][1], rows[path][2], ERROR, reason)
        self._skipped = self.index.skipped()
        for path, reason in self._skipped.items():
            rows[path] = (path, 0, 0.0, ERROR, reason)
        self._rows = rows
        return list(rows.values())

    def poll(self, extra: Iterable[str] = ()) -> Update:
        """Rows that changed since the last snapshot or poll (plus those of `extra`)."""
        if self._db is None:
            old = self._rows
            new_rows = self.snapshot()
            changed = [r for r in new_rows if old.get(r[0]) != r]
            return Update(rows=changed, removed=[p for p in old if p not in self._rows])
        if self._rules_changed():
            return Update(reset=self.snapshot())
        local_seq, remotes = self._marks()
        todo = set(extra)
        devices_moved = self._read_devices()
        if devices_moved:  # who is connected: the rows that say so change
            todo |= {p for p, r in self._rows.items() if r[3] == REMOTE_CHANGE}
        if local_seq != self._local_seq:
            todo |= self.index.paths_changed_since(self._local_seq)
        for device, (index_id, max_seq) in remotes.items():
            old_id, old_seq = self._remotes.get(device, (index_id, 0))
            if old_id != index_id:
                return Update(reset=self.snapshot())  # the peer's history started over
            if max_seq != old_seq:
                todo.update(r[0] for r in self._db.execute(
                    _REMOTE_SINCE, (device, old_seq, device, old_seq)))
        ignored = set(self.index.ignored()) if todo or local_seq != self._local_seq else \
            self._ignored
        todo |= ignored ^ self._ignored
        self._ignored = ignored
        skipped = self.index.skipped()
        if skipped != self._skipped:  # names the scanner cannot take, come or gone
            todo |= {p for p in skipped.keys() | self._skipped.keys()
                     if skipped.get(p) != self._skipped.get(p)}
            self._skipped = skipped
        before = self._failures
        if self._read_failures():
            todo |= {p for p in before.keys() | self._failures.keys()
                     if before.get(p) != self._failures.get(p)}
        self._local_seq, self._remotes = local_seq, remotes
        update = self._recompute(todo) if todo else Update()
        if devices_moved:
            self._relabel_local_changes(todo, update)
        return update

    # --- internals -----------------------------------------------------------------
    def _original(self, copy: str) -> str:
        """The path a conflict copy stands beside, a shortened copy's (long name) included.

        Only a shortened copy needs to look at its siblings: the live names of its
        directory that begin as its own name does, one small range query.
        """
        original = conflict_original(copy)
        head, _, name = copy.rpartition("/")
        stem = name.rpartition(".sync-conflict-")[0]
        if "~" not in stem:
            return original
        start = f"{head}/{stem.rpartition('~')[0]}" if head else stem.rpartition("~")[0]
        assert self._db is not None
        siblings = [r[0].rpartition("/")[2] for r in self._db.execute(
            "SELECT path FROM files WHERE path >= ? AND path < ? AND NOT deleted",
            (start, start + "\U0010ffff")) if r[0].rpartition("/")[0] == head]
        return conflict_original(copy, siblings)

    def _read_devices(self) -> bool:
        """Names, last-seen times and who is connected, for the whys; True if they moved."""
        names, seen = self.index.device_names(), self.index.last_seen()
        known = [x for x in self.index.remote_devices() if x != self.index.device_id]
        d = self._devices
        if (names, seen, self.online, known) == (d.names, d.last_seen, d.online, self._known):
            return False
        self._devices = Devices(names, seen, self.online, own=self.index.device_id)
        self._known = known
        self._local_why = sys.intern(why.local_change(self._devices, known))
        return True

    def _read_failures(self) -> bool:
        """Reload the node's list of files it could not sync, if it moved; True if it did."""
        assert self._db is not None
        row = self._db.execute("SELECT value FROM meta WHERE key = ?",
                               (FAILURES_GEN_KEY,)).fetchone()
        gen = row[0] if row else None
        if gen == self._failures_gen:
            return False
        self._failures_gen = gen
        self._failures = self.index.failures()
        return True

    def _marks(self) -> tuple[int, dict[str, tuple[bytes, int]]]:
        assert self._db is not None
        seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM files").fetchone()[0]
        remotes = {r[0]: (bytes(r[1]), r[2]) for r in self._db.execute(
            "SELECT device, index_id, max_seq FROM remotes")}
        return seq, remotes

    def _local(self, paths: list[str]) -> dict[str, tuple]:
        """path -> (kind, size, mtime_ns, error, deleted, equal_remote, other_remote)."""
        assert self._db is not None
        out: dict[str, tuple] = {}
        for i in range(0, len(paths), BATCH):
            chunk = paths[i : i + BATCH]
            sql = _LOCAL_SQL + f" WHERE f.path IN ({', '.join('?' * len(chunk))})"
            out.update((r[0], r[1:]) for r in self._db.execute(sql, chunk))
        return out

    def _recompute(self, todo: set[str]) -> Update:
        """The rows of these paths again, a chunk of RECOMPUTE_CHUNK at a time: who is
        connected changes the why of every incoming and local change, a million rows in
        a fresh folder, whose local entries read at once held 350 MB."""
        # a conflict copy that came or went changes the state of its original too
        copies = sorted(p for p in todo if is_conflict_copy(p))
        for i in range(0, len(copies), RECOMPUTE_CHUNK):
            chunk = copies[i : i + RECOMPUTE_CHUNK]
            local = self._local(chunk)
            for path in chunk:
                original = self._original(path)
                todo.add(original)
                info = local.get(path)
                live = self._copies.setdefault(original, set())
                if info is not None and not info[4]:
                    live.add(path)
                else:
                    live.discard(path)
                if not live:
                    del self._copies[original]
        paths = list(todo)  # unsorted: a sort of a million paths held the GIL 0.5 s
        update = Update()
        for i in range(0, len(paths), RECOMPUTE_CHUNK):
            chunk = paths[i : i + RECOMPUTE_CHUNK]
            self._recompute_chunk(chunk, self._local(chunk), update)
        return update

    def _relabel_local_changes(self, done: set[str], update: Update) -> None:
        """Who is connected changed: every local change says so, in one why they all
        share. A local change nothing else moved stays one (its entry and the peers'
        did not change), so its row is not worked out again: in a fresh folder of a
        million files that was a million rows read and judged, each time a device came
        or went: 9.9-10.2 s of the worker's CPU, now 0.6-0.8 s (scratch, 2026-12-04)."""
        text = self._local_why
        for path, row in self._rows.items():  # values replaced, no key added or removed
            if row[3] == LOCAL_CHANGE and row[4] != text and path not in done:
                row = self._rows[path] = (path, row[1], row[2], LOCAL_CHANGE, text)
                update.rows.append(row)

    def _recompute_chunk(self, paths: list[str], local: dict[str, tuple],
                         update: Update) -> None:
        for path in paths:
            if path in self._skipped:
                row = (path, 0, 0.0, ERROR, self._skipped[path])
            elif path in self._ignored:
                row = self._ignored_row(path)
            elif path in local:
                row = self._local_row(path, local[path])
            else:
                row = self._remote_only_row(path)
            if row is not None and path in self._failures:
                row = (path, row[1], row[2], ERROR, self._failures[path])
            old = self._rows.get(path)
            if row is None:
                if old is not None:
                    del self._rows[path]
                    update.removed.append(path)
            elif row != old:
                self._rows[path] = row
                update.rows.append(row)

    def _local_row(self, path: str, info: tuple) -> Row | None:
        kind, size, mtime_ns, error, deleted, equal, other = info
        if deleted or kind == Kind.DIR:
            return None
        if self.root is not None and self._rules().matches(path):  # indexed, then ignored
            return self._ignored_row(path)
        mtime = mtime_ns / 1e9
        if error:
            return (path, size, mtime, ERROR, why.error(error))
        if is_conflict_copy(path):
            text = why.conflict_copy(self._devices, path, self._original(path))
            return (path, size, mtime, CONFLICT, text)
        if path in self._copies:
            return (path, size, mtime, CONFLICT, why.conflict_original(
                self._devices, sorted(self._copies[path])))
        if other:
            action = plan_path(self.index.get(path), self.index.remote_for_path(path))
            if action is not None:
                return (path, size, mtime, REMOTE_CHANGE, self._incoming(path, action))
        if equal:
            return (path, size, mtime, SYNCED, "")
        return (path, size, mtime, LOCAL_CHANGE, self._local_why)

    def _remote_only_row(self, path: str) -> Row | None:
        action = plan_path(None, self.index.remote_for_path(path))
        if action is None or action.target.deleted or action.target.kind == Kind.DIR:
            return None
        if self.root is not None and self._rules().matches(path):  # a peer's, ignored here
            return self._ignored_row(path)
        t = action.target
        return (path, t.size, t.mtime_ns / 1e9, REMOTE_CHANGE, self._incoming(path, action))

    def _incoming(self, path: str, action: Action) -> str:
        # one string for the many rows that say the same: a million new files each held
        # their own copy of "newer version on laptop, ...", 100 MB
        return sys.intern(why.remote_change(self._devices, path, action))

    def _ignored_row(self, path: str) -> Row:
        size, mtime, why = 0, 0.0, "ignored by the folder's ignore rules"
        if self.root is not None:
            is_dir = False
            try:
                st = os.lstat(self.root / path)
                size, mtime, is_dir = st.st_size, st.st_mtime, stat.S_ISDIR(st.st_mode)
            except OSError:
                pass
            why = self._rules().why(path, is_dir)  # "ignored by `build/` in .p2psyncignore"
        return (path, size, mtime, IGNORED, why)

    def _rules(self) -> Ignore:
        """The folder's ignore rules, as they were at the last snapshot."""
        if self._ignore is None:
            self._ignore = Ignore(self.root, own_dirs(configdir.of_index(self.index.path)))
        return self._ignore

    def _rules_changed(self) -> bool:
        """Whether .p2psyncignore changed: then every row is worked out again."""
        return self.root is not None and self._rules().reload_if_changed()


def _from_state(r: dict) -> Row:
    return (r["path"], r["size"], r["mtime"], r["state"], r.get("why") or "")
