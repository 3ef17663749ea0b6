"""Tell apart, on every core, the few paths a full scan of a big folder must look at.

A full scan of an unchanged million files is a million lstats and comparisons with
the index, on one core (the GIL: threads did not help): 7.6 s here. A survey splits the
folder's path order into one range a process, each of which walks its range beside
the index as the scan does (`_Scan._merge`) but writes nothing: it lists the paths
whose disk and index differ. The scan then looks at those (as subpaths) and nothing
else. A path is left out only when disk and index agreed when it was looked at: what
changes after that is the next scan's, as in a scan that passed it.

Where the survey would not pay or cannot be made (a small index, one core, a file
system where case does not count, more differences than `MAX_DIRTY`, a process that
would not start), it says None and the scan walks everything itself.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sqlite3
import stat
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from app.core import platform
from app.core.ignore import Ignore, Rules
from app.core.index import _BRIEF_SQL, BRIEF_DELETED, Brief, Index
from app.core.namerules import NameRules
from app.core.scanner import _DIR, _perm, _Scan, _SortedWalk

log = logging.getLogger(__name__)

SURVEY_FROM = 200_000  # indexed paths from which a full scan is surveyed first
MAX_DIRTY = 20_000  # differences past which a share gives up: the scan walks it all
MAX_SHARES = 4


@dataclass
class Survey:
    """What a full scan would have found, but for the paths in `dirty`."""

    dirty: list[str] = field(default_factory=list)  # to scan (each with all below it)
    ignored: list[str] = field(default_factory=list)
    temps: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    skipped_more: int = 0


def survey(root: Path, index: Index, ignore: Ignore, names: NameRules) -> Survey | None:
    """The differences of the folder with its index, found by one process a range;
    None where a survey does not pay or failed (see the module docstring)."""
    shares = min(platform.usable_cores(), MAX_SHARES)
    if shares < 2 or not names.case_sensitive:
        return None
    try:
        bounds = _bounds(index.path, shares)
        if bounds is None:
            return None
        ranges = list(zip(["", *bounds], [*bounds, None], strict=True))
        args = [(os.fspath(root), index.path, index.device_id, ignore.patterns, names,
                 after, upto) for after, upto in ranges]
        with ProcessPoolExecutor(len(ranges), mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_deaf_to_ctrl_c) as pool:
            parts = list(pool.map(_survey_range, *zip(*args, strict=True)))
    except Exception as exc:  # noqa: BLE001 - any failure: the scan walks everything
        log.debug("no survey (%s: %s); scanning the whole folder", type(exc).__name__, exc)
        return None
    if any(p is None for p in parts):
        return None
    whole = Survey()
    for p in parts:
        assert p is not None
        whole.dirty += p.dirty
        whole.ignored += p.ignored
        whole.temps += p.temps
        whole.skipped.update(p.skipped)
        whole.skipped_more += p.skipped_more
    return whole


def _bounds(db_path: str, shares: int) -> list[str] | None:
    """The paths that cut the index into `shares` ranges of about as many entries
    (None when it holds fewer than SURVEY_FROM)."""
    db = _reader(db_path)
    try:
        count = db.execute("SELECT MAX(rowid) FROM files").fetchone()[0] or 0
        if count < SURVEY_FROM:
            return None
        count = db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
        if count < SURVEY_FROM:
            return None
        cuts = [db.execute("SELECT path FROM files ORDER BY path LIMIT 1 OFFSET ?",
                           (count * i // shares,)).fetchone() for i in range(1, shares)]
    finally:
        db.close()
    if any(c is None for c in cuts):
        return None
    return sorted({c[0] for c in cuts})


def _reader(db_path: str) -> sqlite3.Connection:
    return sqlite3.connect(f"{Path(db_path).resolve().as_uri()}?mode=ro", uri=True, timeout=30)


class _TooMany(Exception):
    pass


class _Briefs:
    """The little of an Index a survey reads: briefs in path order, on its own
    read-only connection (in a process of its own)."""

    def __init__(self, db_path: str, device_id: str) -> None:
        self.device_id = device_id
        self.db = _reader(db_path)
        self.db.execute("BEGIN")  # one snapshot for the whole range

    def brief_range(self, after: str, under: str | None = None, limit: int = 2000
                    ) -> list[Brief]:
        assert under is None
        return self.db.execute(_BRIEF_SQL + " WHERE path > ? ORDER BY path LIMIT ?",
                               (after, limit)).fetchall()

    def case_variants(self, paths: list[str]) -> list[tuple[str, bool]]:
        raise AssertionError("surveys are made only where case counts")


class _Survey(_Scan):
    """A scan of a range that writes nothing: it notes what differs (see `_visit`)."""

    def __init__(self, root: Path, reader: _Briefs, ignore: Ignore, names: NameRules) -> None:
        super().__init__(root, reader, ignore, full=True, names=names)  # type: ignore[arg-type]
        self.dirty: list[str] = []

    def run_range(self, after: str, upto: str | None) -> Survey:
        self.after, self.upto = after, upto
        walk = _SortedWalk()
        self._list_into(walk, os.fspath(self.root), "", root=True)
        self._merge(walk, None, after, upto)
        return Survey(self.dirty, self.result.ignored, self.result.temps, self.skipped,
                      self.skipped_more)

    def _note(self, rel: str) -> None:
        self.dirty.append(rel)
        if len(self.dirty) > MAX_DIRTY:
            raise _TooMany

    def _visit(self, rel: str, abs_path: str, st: os.stat_result, brief: Brief | None) -> bool:
        """A file whose lstat is the indexed one, or a directory indexed with these
        permissions (to walk into), is as indexed; anything else is noted: a new or
        changed directory with all below it, and every link (links keep no ctime in
        the index: the scan reads them)."""
        st = self.spelling.shown(st, brief)
        is_dir = stat.S_ISDIR(st.st_mode)
        if self._passed_over(rel, is_dir):
            return False
        if is_dir and brief is not None and brief[1] == _DIR and brief[4] == _perm(st):
            return True
        if not stat.S_ISREG(st.st_mode) or not self._unchanged_file(rel, st, brief):
            self._note(rel)
        return False

    def _gone(self, b: Brief) -> None:
        if b[1] == BRIEF_DELETED:
            return
        self._note(b[0])
        if b[1] == _DIR:
            self._gone_subtree(b[0])  # what was below it is the scan's too

    def _skip(self, rel: str, why: str) -> None:
        """Names that cannot be indexed are found by listing, which a share does also
        on its way down to its range: each is kept by the share whose range holds it."""
        if self.after < rel and (self.upto is None or rel <= self.upto):
            super()._skip(rel, why)

    def _protect(self, rel: str) -> None:
        self._note(rel)  # the scan protects it, and says why

    def _list_into(self, walk: _SortedWalk, abs_dir: str, rel_dir: str,
                   root: bool = False) -> None:
        before = len(self.protected)
        super()._list_into(walk, abs_dir, rel_dir, root)
        if len(self.protected) > before:
            self._note(rel_dir)


def _deaf_to_ctrl_c() -> None:
    """Ctrl-C reaches the whole process group: the node that started us stops, and we
    end with it (a traceback from each process would be all the user saw)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _survey_range(root: str, db_path: str, device_id: str, patterns: list[str],
                  names: NameRules, after: str, upto: str | None) -> Survey | None:
    """One process's share (None: more differences than are worth listing)."""
    ignore = Ignore(Path(root))
    ignore.rules = Rules(patterns)  # the scan's rules, not the file's of this moment
    reader = _Briefs(db_path, device_id)
    try:
        return _Survey(Path(root), reader, ignore, names).run_range(after, upto)
    except _TooMany:
        return None
    finally:
        reader.db.close()
