"""Walk a folder, re-hash only what changed, and record the changes in the index.

The walk trusts (size, mtime_ns, inode, mode, ctime) of regular files: an unchanged
file costs one lstat and no read, so rescans of large folders stay cheap.

Memory stays bounded for any folder size: the disk is walked in path order (each
directory listed and sorted, a heap merges them) alongside the index read in path
order, a chunk at a time (a merge join); changes are written every few thousand
entries (`FLUSH_EVERY`), or sooner once their block lists reach `FLUSH_BYTES` (a
2 GiB file's is 512 KiB). What is held is about one directory listing per level.

Safety rules, all of which keep a scan from destroying data on peers:
- a folder root that is missing or unreadable raises instead of turning every
  indexed path into a deletion (an unmounted drive looks exactly like that);
- a subdirectory that cannot be listed protects everything indexed beneath it;
- paths that became ignored keep their entries (they are not deleted on peers);
- what cannot be indexed (a name that is not UTF-8 or holds a backslash, a directory
  that cannot be listed) is skipped, and listed with why (`Index.skipped`, at most
  SKIPPED_KEPT) for `status` to show as an error;
- symlinked directories are never entered, the `.p2psync` folder never at all;
- a path the engine wrote to the index while we were scanning is left alone (the
  scan's view of it is stale; the next scan sees it again);
- with `settle`, a file changed (ctime or mtime) less than that many seconds ago is
  left as indexed and listed in `unsettled`: it is probably still being written, and
  a half-written version sent to the peers would also be archived there. The engine
  scans it again once it has been still long enough.

A directory moved within the folder is seen as such: a new directory whose inode an
indexed directory had, which is gone from its old place, keeps the content hashes of
the files that moved with it (same size, mtime, inode and ctime: not read again),
and each one's deletion at the old path is recorded just before its entry at the
new one, so that a peer sees both halves of every move together and renames. The
deletions of vanished directories are recorded at the end of the scan, children
first (so the moved ones can still be looked up until then).
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import os
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from app.core import modes, versions
from app.core.hashing import hash_file, link_hash
from app.core.holes import may_have_holes
from app.core.ignore import IGNORE_FILE, Ignore
from app.core.index import (
    BRIEF_DELETED,
    BRIEF_ERROR,
    SKIPPED_KEPT,
    SPARSE_RECHECK_KEY,
    Brief,
    Index,
    inode_to_db,
)
from app.core.model import HASH_LEN, MAX_FILE_SIZE, FileEntry, Kind
from app.core.namerules import LINUX, NameRules, Spelling
from app.core.paths import (
    META_DIR,
    TEMP_PREFIX,
    BadPath,
    ancestors,
    is_temp_name,
    link_escapes,
    on_disk,
    safe_join,
    validate,
    validate_child,
)
from app.core.units import human_size

if TYPE_CHECKING:
    from app.core.survey import Survey

log = logging.getLogger(__name__)

_FILE = int(Kind.FILE)
_DIR = int(Kind.DIR)
LINK_OUTSIDE = "link leads outside the folder"
LINK_NOT_UTF8 = "link target is not valid UTF-8"


@dataclass
class ScanResult:
    # written with a new version; a list of more than one block hash is left out (the
    # first scan of 500 files of 2 GiB held 256 MB of them here until it ended)
    changed: list[FileEntry] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # ignored paths seen (full scans only)
    temps: list[str] = field(default_factory=list)  # our temp files seen
    hashed_bytes: int = 0
    # entries written by this scan that carry an error (unreadable files, links that
    # lead outside...); some are also in `changed`, unreadable files are not (their
    # content is unknown, so they get no new version)
    errors: list[FileEntry] = field(default_factory=list)
    changed_count: int = 0  # all of them (`changed` lists the first CHANGED_KEPT)
    written: int = 0  # rows written, with a new version or without (an error cleared...)
    ignore_file_changed: bool = False  # .p2psyncignore is among them
    # files left alone because they changed within `settle` seconds (the first
    # CHANGED_KEPT of them; `unsettled_count` counts all), and when the first of them
    # settles (seconds since the epoch)
    unsettled: list[str] = field(default_factory=list)
    unsettled_count: int = 0
    settles_at: float = 0.0
    # parents of subpaths found gone (or no directory now): nothing below them was
    # recorded; the caller scans each as a whole later (see `_Scan._scan_subpath`)
    parents_gone: list[str] = field(default_factory=list)


FLUSH_EVERY = 2000  # entries written per index transaction
FLUSH_BYTES = 8 * 1024 * 1024  # or fewer: block lists held for the next transaction
BRIEF_CHUNK = 2000  # index entries read at a time
CHANGED_KEPT = 10_000  # changed entries a result lists (the count is exact)


def scan(
    root: Path,
    index: Index,
    ignore: Ignore,
    subpaths: Iterable[str] | None = None,
    settle: float = 0.0,
    names: NameRules = LINUX,
) -> ScanResult:
    """Scan the whole folder, or only `subpaths` (relative; each with all beneath it).

    `settle` > 0: files changed within that many seconds are not picked up yet (see
    the module docstring); the engine's watching nodes pass it, a one-shot scan not.
    `names`: the folder's file-name rules, by which a listed name is indexed under the
    spelling the index already holds for it (see app.core.namerules.Spelling).

    Does not reload the ignore file: the engine calls `ignore.reload_if_changed()`
    so that it also learns when the rules changed.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"folder root is missing or not a directory: {root}")
    if not names.case_sensitive:
        index.index_case()  # what Spelling looks names up by (made once, here: a thread)
    job = _Scan(root, index, ignore, full=subpaths is None, settle=settle, names=names)
    if subpaths is None:
        from app.core import survey  # it builds on this module

        # (a survey would pass over the directories whose files' stat is as indexed)
        job.sparse_recheck = bool(index.get_meta(SPARSE_RECHECK_KEY))
        started = time.monotonic()
        found = None if job.sparse_recheck else survey.survey(root, index, ignore, names)
        if found is not None:
            log.debug("surveyed in %.2f s: %d path(s) to scan", time.monotonic() - started,
                      len(found.dirty))
        if found is None:
            job.run_full()
        else:
            job.run_surveyed(found)
    else:
        job.run_subpaths([subpaths] if isinstance(subpaths, str) else list(subpaths))
    job.commit()
    if job.sparse_recheck:
        index.set_meta(SPARSE_RECHECK_KEY, None)
    return job.result


def maybe_changed(root: Path, index: Index, ignore: Ignore, subpaths: Iterable[str],
                  names: NameRules = LINUX) -> list[str]:
    """The subpaths a scan could find changed: less the indexed files whose lstat is
    the indexed one (see `_Scan._maybe_changed`).

    Needs no disk lock, unlike `scan`: a file is left out only when the disk and the
    index agree on it at the moment it is looked at, and whatever changes it after that
    is reported again. A watching node's rescans of the files it wrote itself held the
    lock the pull publishes under for ~0.6 s of a 10,000-file pull. Only reads the
    index (where case does not count, the node made its case index when it started).
    """
    job = _Scan(Path(root), index, ignore, full=False, names=names)
    return list(job._maybe_changed(_outermost([job.spelling.indexed(sp) for sp in subpaths])))


def _brief_of(e: FileEntry) -> Brief:
    state = BRIEF_DELETED if e.deleted else BRIEF_ERROR if e.error else int(e.kind)
    return (e.path, state, e.size, e.mtime_ns, e.mode, inode_to_db(e.inode), e.ctime_ns)


def _live(e: FileEntry | None, kind: Kind) -> bool:
    """A present (not deleted) entry of this kind."""
    return e is not None and e.kind == kind and not e.deleted


def _perm(st: os.stat_result) -> int:
    return st.st_mode & 0o777


def _join(rel_dir: str, name: str) -> str:
    return f"{rel_dir}/{name}" if rel_dir else name


def _outermost(subpaths: list[str]) -> list[str]:
    """Valid subpaths without those already covered by another one in the list."""
    valid = []
    for sp in subpaths:
        try:
            valid.append(validate(sp))
        except BadPath as exc:
            log.warning("not scanning %r: %s", sp, exc)
    kept: set[str] = set()
    for sp in sorted(set(valid), key=lambda p: p.count("/")):
        if not any(a in kept for a in ancestors(sp)):
            kept.add(sp)
    return sorted(kept)


class _SortedWalk:
    """Directory entries in path order, listed a directory at a time (a heap of them).

    Path order is the index's order too ("a", "a b", "a/x", "a0"): that is what lets
    the scan merge the two without holding either.
    """

    def __init__(self) -> None:
        self.heap: list[tuple[str, str, os.DirEntry[str] | None]] = []

    def push(self, rel: str, abs_path: str, de: os.DirEntry[str] | None = None) -> None:
        heapq.heappush(self.heap, (rel, abs_path, de))


class _Scan:
    """The state of one scan; methods are the steps, `commit` writes what is left."""

    def __init__(self, root: Path, index: Index, ignore: Ignore, full: bool,
                 settle: float = 0.0, names: NameRules = LINUX) -> None:
        self.root = root
        self.settle = settle
        self.index = index
        self.ignore = ignore
        self.full = full
        self.device = index.device_id
        self.protected: list[str] = []  # dirs whose indexed subtree must be kept
        self.gone_dirs: list[str] = []  # indexed dirs gone from disk: deleted at the end
        # (new dir, old dir, whether another directory has the old name) of dirs moved
        self.moves: list[tuple[str, str, bool]] = []
        self.writes: list[FileEntry] = []
        self.writes_bytes = 0  # their block lists
        self.stats: list[tuple[str, int, int, int]] = []  # (path, inode, ctime_ns, mode)
        self.result = ScanResult()
        self.start_seq = 0
        self.own: list[tuple[int, int]] = []  # seq ranges this scan wrote
        self._versioned: set[str] = set()  # paths of self.writes that got a new version
        self.visited_dirs: set[str] = set()  # parents of subpaths already recorded
        self.skipped: dict[str, str] = {}  # what could not be indexed: path shown -> why
        self.skipped_more = 0  # beyond SKIPPED_KEPT
        self.scanned: list[str] = []  # the subpaths of a partial scan
        self.sparse_recheck = False  # files with holes hashed again (SPARSE_RECHECK_KEY)
        self.spelling = Spelling(names, index.case_variants, self._indexed_alive)
        # no ignore rule and modes as the disk has them: an unchanged file is told by
        # its lstat alone (`_visit_dirent`), the hot path of a rescan
        self.plain = names.keeps_modes and not ignore.patterns

    # --- entry points

    def run_full(self) -> None:
        self.start_seq = self.index.max_seq()
        walk = _SortedWalk()
        self._list_into(walk, os.fspath(self.root), "", root=True)
        self._merge(walk, None)

    def run_surveyed(self, found: Survey) -> None:
        """A full scan of what a survey found different (the rest is as indexed)."""
        self.result.ignored += found.ignored
        self.result.temps += found.temps
        for rel, why in found.skipped.items():
            self._skip(rel, why)
        self.skipped_more += found.skipped_more
        self.run_subpaths(found.dirty)

    def run_subpaths(self, subpaths: list[str]) -> None:
        self.start_seq = self.index.max_seq()
        # where case does not count, "README" asked is the indexed "Readme"
        self.scanned = _outermost([self.spelling.indexed(sp) for sp in subpaths])
        for sp in self._maybe_changed(self.scanned):
            self._scan_subpath(sp)

    def _maybe_changed(self, subpaths: list[str]) -> Iterator[str]:
        """The subpaths less the indexed files whose lstat is the indexed one.

        A watching node is told of every file it wrote itself (three inotify events
        each); the scan of a subpath reads its ancestors and a range of the index, and
        for a pull of 10,000 files that work took as long as the pull. One query for all
        of them and an lstat each tells the same files apart, by the test of a full scan
        (`_unchanged_file`).
        """
        briefs = self.index.briefs_of(subpaths)
        real_dirs: set[str] = set()  # parents safe_join found real (once each, not per file)
        for sp in subpaths:
            brief = briefs.get(sp)
            if brief is not None and brief[1] == _FILE:
                parent = sp.rpartition("/")[0]
                try:
                    if parent in real_dirs and sp.isascii():
                        st = os.lstat(os.path.join(self.root, sp))
                    else:
                        st = os.lstat(safe_join(self.root, sp))
                        real_dirs.add(parent)
                except (OSError, BadPath):
                    pass  # the scan of sp says what it is now
                else:
                    if stat.S_ISREG(st.st_mode) and \
                            self._unchanged_file(sp, self.spelling.shown(st, brief), brief):
                        continue
            yield sp

    def commit(self) -> None:
        """Deletions of the vanished directories (what moved out of them is written
        first, so it is not deleted twice), then whatever is not written yet."""
        if self.gone_dirs:
            self._flush()
        for rel in self.gone_dirs:
            self._delete_subtree(rel)
        self._flush()
        self._record_skipped()

    def _skip(self, rel: str, why: str) -> None:
        """Note a path that cannot be indexed (bounded), for `status`."""
        if len(self.skipped) < SKIPPED_KEPT:
            self.skipped[rel] = why
        else:
            self.skipped_more += 1

    def _record_skipped(self) -> None:
        """The skipped paths into the index: all of them after a full scan, those below
        the scanned subpaths after a partial one (the others are as they were)."""
        if self.skipped_more:
            log.warning("%d more path(s) could not be indexed; status lists the first %d",
                        self.skipped_more, SKIPPED_KEPT)
        if self.full:
            skipped = self.skipped
        else:
            kept = {p: w for p, w in self.index.skipped().items()
                    if not any(p == sp or p.startswith(sp + "/") for sp in self.scanned)}
            skipped = dict(list({**kept, **self.skipped}.items())[:SKIPPED_KEPT])
        self.index.set_skipped(skipped)

    # --- the merge of disk and index

    def _merge(self, walk: _SortedWalk, under: str | None, after: str = "",
               upto: str | None = None) -> None:
        """Walk and index side by side, in path order (below `under`, or everything).

        Only the paths past `after` and up to `upto` are looked at (a survey's share,
        app/core/survey.py): the directories before `after` are only ways down to it,
        and the walk stops past `upto`, after which nothing comes back into the range.
        """
        briefs = self._briefs(under, after, upto)
        brief = next(briefs, None)
        heap = walk.heap  # peek and pop by hand: a million entries pay for every call
        while True:
            disk = heap[0][0] if heap else None
            if disk is not None and upto is not None and disk > upto:
                disk = None
            if disk is None and brief is None:
                return
            if brief is not None and (disk is None or brief[0] < disk):
                self._gone(brief)
                brief = next(briefs, None)
                continue
            here = None
            if brief is not None and brief[0] == disk:
                here, brief = brief, next(briefs, None)
            rel, abs_path, de = heapq.heappop(heap)
            if rel > after:
                self._visit_dirent(walk, rel, abs_path, de, here)
            elif after < rel + "0" and de is not None and de.is_dir(follow_symlinks=False):
                self._list_into(walk, abs_path, rel)  # the range starts below it

    def _briefs(self, under: str | None, after: str = "", upto: str | None = None
                ) -> Iterator[Brief]:
        """The index's briefs in path order, read a chunk at a time; the subtrees of
        vanished directories are skipped (`commit` deletes them)."""
        while True:
            chunk = self.index.brief_range(after, under, BRIEF_CHUNK)
            for b in chunk:
                if upto is not None and b[0] > upto:
                    return
                if self.gone_dirs and b[0].startswith(self.gone_dirs[-1] + "/"):
                    continue
                yield b
            if len(chunk) < BRIEF_CHUNK:
                return
            after = chunk[-1][0]

    def _list_into(self, walk: _SortedWalk, abs_dir: str, rel_dir: str,
                   root: bool = False) -> None:
        """Put a directory's entries on the walk; an unlistable one protects its subtree."""
        try:
            with os.scandir(abs_dir) as it:
                listed = [de for de in it if rel_dir or de.name != META_DIR]
            # as the index spells them (a case-insensitive disk, a name stored NFD)
            for de, name in zip(listed, self.spelling.names(rel_dir, listed), strict=True):
                try:
                    rel = validate_child(rel_dir, name)
                except BadPath as exc:
                    log.warning("skipping %r: %s", _join(rel_dir, de.name), exc)
                    self._bad_name(rel_dir, de)
                    continue
                walk.push(rel, de.path, de)
        except FileNotFoundError:
            if root:
                raise
            # removed while we walked: its indexed children are deletions
        except OSError as exc:
            if root:
                raise
            log.warning("cannot list %s: %s", rel_dir, exc)
            self.protected.append(rel_dir)
            self._skip(rel_dir, f"cannot be read here: this user may not list this directory "
                                f"({(exc.strerror or str(exc)).lower()}); give it read access, "
                                f"or add it to {IGNORE_FILE}")

    def _bad_name(self, rel_dir: str, de: os.DirEntry[str]) -> None:
        """A name no device could take as it is: listed (shown with U+FFFD for the bytes
        that are not UTF-8) unless the ignore rules say to leave it alone."""
        shown = _join(rel_dir, os.fsencode(de.name).decode("utf-8", "replace"))
        try:
            is_dir = de.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if self.ignore.matches(shown, is_dir):
            return
        if not _utf8(de.name):
            why = "the name is not valid UTF-8"
        elif "\\" in de.name:
            why = "the name holds a backslash, a path separator on Windows"
        else:
            why = "the name or the path is too long to sync"
        self._skip(shown, f"not synced: {why}; rename it")

    def _visit_dirent(self, walk: _SortedWalk, rel: str, abs_path: str,
                      de: os.DirEntry[str] | None, brief: Brief | None) -> None:
        try:
            st = de.stat(follow_symlinks=False) if de is not None else os.lstat(abs_path)
        except FileNotFoundError:
            if brief is not None:
                self._gone(brief)
            return
        except OSError as exc:
            log.warning("cannot stat %s: %s", rel, exc)
            self._protect(rel)
            return
        if self.plain and stat.S_ISREG(st.st_mode) and self._unchanged_file(rel, st, brief) \
                and not rel.startswith(TEMP_PREFIX, rel.rfind("/") + 1):
            return  # `_visit` would find it unchanged: no rule to ignore it, not a temp
        if self._visit(rel, abs_path, st, brief):
            self._list_into(walk, abs_path, rel)

    def _scan_subpath(self, sp: str) -> None:
        for anc in ancestors(sp):
            if not self._visit_ancestor(anc):
                # A parent is gone or no directory now: what became of it is its own
                # scan's to say, as one change. Taken here, path by path, a directory
                # moved out of the folder (its files' events come before the move's,
                # which the watcher holds to pair it) reached the peers as two sets of
                # deletions, each too small for the mass-deletion guard; moved within
                # the folder, its files lost their move; and a parent that could not
                # be looked at (EACCES) had its files deleted.
                if anc not in self.result.parents_gone:
                    self.result.parents_gone.append(anc)
                return
        try:
            path = safe_join(self.root, sp)
            os.lstat(path)
        except (BadPath, FileNotFoundError, NotADirectoryError):
            pass  # missing: its indexed subtree becomes deletions
        except OSError as exc:
            log.warning("cannot stat %s: %s", sp, exc)
            self._protect(sp)
            return
        else:
            walk = _SortedWalk()
            walk.push(sp, os.fspath(path))
            self._merge(walk, sp)
            return
        found = self.index.brief_range("", sp, limit=2)  # sp itself, the first below it
        if found and found[0][0] == sp:
            self._gone(found.pop(0))
        # What is below goes too, even where sp itself is indexed as deleted: a pull
        # makes a file's directory on disk before the directory's own entry comes.
        if found and not self._is_protected(sp):
            self._gone_subtree(sp)

    def _visit_ancestor(self, anc: str) -> bool:
        """Record a parent of a subpath (new parents need entries too); False if not a dir."""
        try:
            st = os.lstat(self.root / on_disk(self.root, anc))
        except OSError:
            return False
        if not stat.S_ISDIR(st.st_mode):
            return False
        if anc not in self.visited_dirs and not self.ignore.matches(anc, is_dir=True):
            self.visited_dirs.add(anc)
            old = self.index.get(anc)
            brief = _brief_of(old) if old is not None else None
            self._dir(anc, self.spelling.shown(st, brief), brief)
        return True

    def _visit(self, rel: str, abs_path: str, st: os.stat_result, brief: Brief | None) -> bool:
        """Handle one existing path; True when it is a directory to descend into."""
        st = self.spelling.shown(st, brief)  # a disk without modes: the index's bits
        is_dir = stat.S_ISDIR(st.st_mode)
        if self._passed_over(rel, is_dir):
            return False
        if stat.S_ISREG(st.st_mode):
            if not self._unchanged_file(rel, st, brief) and \
                    not self._file(rel, abs_path, st, brief) and brief is not None:
                self._gone(brief)  # vanished while we looked
        elif is_dir:
            self._dir(rel, st, brief)
            if brief is None or brief[1] != _DIR:
                self._moved_dir(rel, st)
            return True
        elif stat.S_ISLNK(st.st_mode):
            self._link(rel, abs_path, st, brief)
        else:
            log.debug("skipping special file %s", rel)
            if brief is not None:
                self._gone(brief)
        return False

    def _passed_over(self, rel: str, is_dir: bool) -> bool:
        """Our temp files and ignored paths: noted in the result, not indexed."""
        name = rel[rel.rfind("/") + 1 :]
        if not is_dir and name.startswith(TEMP_PREFIX) and is_temp_name(name):
            self.result.temps.append(rel)
            return True
        if self.ignore.matches(rel, is_dir):
            if self.full:
                self.result.ignored.append(rel)
            return True
        return False

    def _indexed_alive(self, rel: str) -> bool:
        old = self.index.get(rel)
        return old is not None and not old.deleted

    def _protect(self, rel: str) -> None:
        self.protected.append(rel)

    # --- what is in the index and no longer on disk

    def _gone(self, b: Brief) -> None:
        """An indexed path not on disk (any more): its deletion, unless it must be kept."""
        rel, state = b[0], b[1]
        if state == BRIEF_DELETED or self._is_protected(rel):
            return
        if state == _DIR:
            self._gone_subtree(rel)
            return
        old = self.index.get(rel)
        if old is None or old.deleted:
            return
        if self.ignore.matches(rel, is_dir=old.kind == Kind.DIR):
            return  # now ignored: keep the entry, peers keep the file
        self._delete(old)

    def _gone_subtree(self, rel: str) -> None:
        """A vanished directory: its subtree is deleted at the end (it may have moved)."""
        if self.gone_dirs and (rel == self.gone_dirs[-1]
                               or rel.startswith(self.gone_dirs[-1] + "/")):
            return
        self.gone_dirs.append(rel)

    def _delete_subtree(self, top: str) -> None:
        """Deletions of what is still live of a vanished directory, children first."""
        before = "\U0010ffff"
        while True:
            chunk = self.index.brief_range_desc(before, top, BRIEF_CHUNK)
            live = [b[0] for b in chunk
                    if b[1] != BRIEF_DELETED and not self._is_protected(b[0])]
            olds = self.index.get_many(live)
            for rel in live:
                old = olds.get(rel)
                if old is None or old.deleted or \
                        self.ignore.matches(rel, is_dir=old.kind == Kind.DIR):
                    continue
                self._delete(old)
            if len(chunk) < BRIEF_CHUNK:
                return
            before = chunk[-1][0]

    def _delete(self, old: FileEntry) -> None:
        gone = FileEntry(old.path, old.kind, 0, old.mtime_ns, old.mode, deleted=True)
        self._new_version(gone, old)

    def _is_protected(self, rel: str) -> bool:
        return any(rel == p or rel.startswith(p + "/") for p in self.protected)

    # --- directories moved within the folder

    def _moved_dir(self, rel: str, st: os.stat_result) -> None:
        """A new directory that an indexed, now vanished one was: remember old -> new."""
        old = self.index.dir_with_inode(st.st_ino)
        if old is None or old == rel or rel.startswith(old + "/"):
            return
        try:
            if os.lstat(self.root / old).st_ino == st.st_ino:
                return  # still there: a coincidence of inode numbers, not a move
            taken = True
        except OSError:
            taken = False
        self.moves.append((rel, old, taken))

    def _moved_from(self, rel: str) -> str | None:
        """Where the file at rel was before its directory moved, if it did.

        Not where a directory made since under the old name holds a file at that
        name: the index's entry there is that file's now, decided by its own visit
        (before or after this one, and maybe still in an unwritten batch), never this
        move's deletion.
        """
        while self.moves and not rel.startswith(self.moves[-1][0] + "/"):
            self.moves.pop()
        if not self.moves:
            return None
        new, old, taken = self.moves[-1]
        was = old + rel[len(new):]
        return None if taken and os.path.lexists(self.root / was) else was

    # --- the three kinds

    def _unchanged_file(self, rel: str, st: os.stat_result, brief: Brief | None) -> bool:
        """The hot path of a rescan: same size, mtime, inode, mode and ctime -> same content.

        ctime cannot be set by user tools, so a rewrite that restores the mtime (cp -p,
        touch -r) still shows here. A survey compares the same fields a directory at a
        time (`survey._tuples`, `briefkeys.listing_digest`): a field added here must be
        added there.
        """
        return brief == (
            rel, _FILE, st.st_size, st.st_mtime_ns, st.st_mode & 0o777,
            inode_to_db(st.st_ino), st.st_ctime_ns,
        ) and not (self.sparse_recheck and may_have_holes(st))

    def _file(self, rel: str, abs_path: str, st: os.stat_result, brief: Brief | None) -> bool:
        """A new or changed file; False when it vanished before it could be looked at."""
        if (brief is None or brief[1] == BRIEF_DELETED) and self.moves and \
                self._file_moved(rel, st, brief):
            return True
        if self.settle and self._unsettled(rel, st):
            return True
        if st.st_size > MAX_FILE_SIZE:
            self._unsyncable(rel, st, f"too large to sync (files of more than "
                             f"{human_size(MAX_FILE_SIZE)} are not synced)", brief)
            return True
        try:
            size, h, blocks = hash_file(abs_path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            self._unsyncable(rel, st, f"cannot read: {exc.strerror or exc}", brief)
            return True
        self.result.hashed_bytes += size
        if not self._still_same(abs_path, st, size):
            log.debug("%s changed while hashing; a later scan picks it up", rel)
            if self.settle:
                self._defer(rel, time.time())
            return True
        old = self.index.get(rel) if brief is not None else None
        if _live(old, Kind.FILE) and (old.hash, old.size) == (h, size) \
                and self.spelling.rules.same_time(old.mtime_ns, st.st_mtime_ns) \
                and modes.same_synced_bits(old.mode, _perm(st)):
            self._same_file(old, st)  # other permission bits are this device's business
            return True
        self._new_version(
            FileEntry(rel, Kind.FILE, size, st.st_mtime_ns, _perm(st), h, blocks,
                      inode=st.st_ino, ctime_ns=st.st_ctime_ns),
            old,
        )
        return True

    def _file_moved(self, rel: str, st: os.stat_result, brief: Brief | None) -> bool:
        """A new path in a moved directory whose old entry matches it: the old one's
        deletion and its content at the new path, without reading it."""
        was = self._moved_from(rel)
        old = self.index.get(was) if was is not None else None
        if not _live(old, Kind.FILE) or old.error or (
                old.size, old.mtime_ns, old.inode, old.ctime_ns, old.mode) != (
                st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, _perm(st)):
            return False
        self._delete(old)
        self._new_version(FileEntry(rel, Kind.FILE, old.size, old.mtime_ns, old.mode,
                                    old.hash, old.blocks, inode=st.st_ino,
                                    ctime_ns=st.st_ctime_ns),
                          self.index.get(rel) if brief is not None else None)
        return True

    def _unsettled(self, rel: str, st: os.stat_result) -> bool:
        """Whether the file changed too lately to be taken as written (then deferred).

        ctime counts because no tool sets it (`cp -p` sets an old mtime on new bytes);
        a time more than `settle` in the future (a clock set back) does not hold the
        file back for ever.
        """
        changed = max(st.st_ctime, st.st_mtime)
        if not -self.settle < time.time() - changed < self.settle:
            return False
        self._defer(rel, changed)
        return True

    def _defer(self, rel: str, changed: float) -> None:
        r = self.result
        r.unsettled_count += 1
        if len(r.unsettled) < CHANGED_KEPT:
            r.unsettled.append(rel)
        settles = changed + self.settle
        r.settles_at = settles if not r.settles_at else min(r.settles_at, settles)

    @staticmethod
    def _still_same(abs_path: str, st: os.stat_result, size: int) -> bool:
        """Whether the file looks as it did before hashing (else it is being written)."""
        try:
            after = os.lstat(abs_path)
        except OSError:
            return False
        return (size, after.st_size, after.st_mtime_ns, after.st_ino) == (
            st.st_size, st.st_size, st.st_mtime_ns, st.st_ino
        )

    def _same_file(self, old: FileEntry, st: os.stat_result) -> None:
        """Same content and metadata: no new version, only bookkeeping if needed.

        The mtime too, where the disk keeps it coarser than it was set (NTFS: 100 ns):
        the same time as far as this disk can tell, recorded as the disk has it.
        """
        if old.error or old.mtime_ns != st.st_mtime_ns:
            self._write(dataclasses.replace(old, error="", inode=st.st_ino,
                                            ctime_ns=st.st_ctime_ns, mode=_perm(st),
                                            mtime_ns=st.st_mtime_ns))
        elif (old.inode, old.ctime_ns, old.mode) != (st.st_ino, st.st_ctime_ns, _perm(st)):
            self._stat(old.path, st.st_ino, st.st_ctime_ns, _perm(st))

    def _unsyncable(self, rel: str, st: os.stat_result, msg: str, brief: Brief | None
                    ) -> None:
        """Record why a file cannot be synced, without a new version (content unknown)."""
        old = self.index.get(rel) if brief is not None else None
        if _live(old, Kind.FILE):
            if old.error == msg:
                return
            entry = dataclasses.replace(old, error=msg)
        else:
            entry = FileEntry(
                rel, Kind.FILE, st.st_size, st.st_mtime_ns, _perm(st),
                version=dict(old.version) if old else {},
                modified_by=old.modified_by if old else "",
                inode=st.st_ino, error=msg,
            )
        log.warning("%s: %s", rel, msg)
        self._write(entry)
        self.result.errors.append(entry)

    def _dir(self, rel: str, st: os.stat_result, b: Brief | None) -> None:
        # a dir's mtime changes whenever its contents do: not a change of the dir itself
        if b is not None and b[1] == _DIR and b[4] == _perm(st):
            return
        old = self.index.get(rel) if b is not None else None
        if _live(old, Kind.DIR):
            if old.error:  # set by someone else: the dir is there as recorded
                self._write(dataclasses.replace(old, error="", inode=st.st_ino,
                                                mode=_perm(st)))
            else:  # only its mode moved, which is this device's business
                self._stat(rel, st.st_ino, old.ctime_ns, _perm(st))
            return
        self._new_version(
            FileEntry(rel, Kind.DIR, 0, st.st_mtime_ns, _perm(st), inode=st.st_ino), old
        )

    def _link(self, rel: str, abs_path: str, st: os.stat_result, brief: Brief | None) -> None:
        try:
            target = os.readlink(abs_path)
        except FileNotFoundError:
            if brief is not None:
                self._gone(brief)
            return
        except OSError as exc:
            log.warning("cannot read link %s: %s", rel, exc)
            return
        h = link_hash(target)
        error = _link_error(rel, target)
        old = self.index.get(rel) if brief is not None else None  # links are rare
        if _live(old, Kind.LINK) and old.hash == h and old.error == error:
            return
        raw = os.fsencode(target)
        shown = raw.decode("utf-8", "backslashreplace")  # storable even if not UTF-8
        entry = FileEntry(rel, Kind.LINK, len(raw), st.st_mtime_ns, _perm(st), h,
                          target=shown, inode=st.st_ino, error=error)
        self._new_version(entry, old)

    def _new_version(self, entry: FileEntry, old: FileEntry | None) -> None:
        """Give entry the next local version (bumped from old, even a tombstone)."""
        entry.version = versions.bump(old.version if old else {}, self.device)
        entry.modified_by = self.device
        self._write(entry)
        self._versioned.add(entry.path)
        self.result.changed_count += 1
        if len(self.result.changed) < CHANGED_KEPT:
            self.result.changed.append(entry)  # its block list goes once written (_flush)
        if entry.path == IGNORE_FILE:
            self.result.ignore_file_changed = True
        if entry.error:
            self.result.errors.append(entry)

    # --- writing, a batch at a time

    def _write(self, entry: FileEntry) -> None:
        self.writes.append(entry)
        self.writes_bytes += len(entry.blocks)
        if len(self.writes) >= FLUSH_EVERY or self.writes_bytes >= FLUSH_BYTES:
            self._flush()

    def _stat(self, path: str, inode: int, ctime_ns: int, mode: int) -> None:
        self.stats.append((path, inode, ctime_ns, mode))
        if len(self.stats) >= FLUSH_EVERY:
            self._flush()

    def _flush(self) -> None:
        """Write what is decided, but not about paths the engine wrote meanwhile."""
        with self.index.lock:
            touched = [e.path for e in self.writes] + [s[0] for s in self.stats]
            raced = {p for p, seq in self.index.changed_since(self.start_seq, touched).items()
                     if not any(lo <= seq <= hi for lo, hi in self.own)}
            if raced:
                self._drop(raced)
            if self.stats:
                self.index.set_stats(self.stats)
            if self.writes:
                self.index.put_local(self.writes)
                self.own.append((self.writes[0].seq, self.writes[-1].seq))
                self.result.written += len(self.writes)
                for e in self.writes:  # in the index now; `result.changed` keeps them light
                    if len(e.blocks) > HASH_LEN:
                        e.blocks = b""
        self.writes, self.stats = [], []
        self.writes_bytes = 0
        self._versioned = set()

    def _drop(self, raced: set[str]) -> None:
        """Forget decisions about paths written by someone else during the scan."""
        log.debug("scan raced with index writes on %d paths; leaving them", len(raced))
        self.writes = [e for e in self.writes if e.path not in raced]
        self.stats = [item for item in self.stats if item[0] not in raced]
        self.result.changed = [e for e in self.result.changed if e.path not in raced]
        self.result.changed_count -= len(raced & self._versioned)
        self._versioned -= raced
        self.result.errors = [e for e in self.result.errors if e.path not in raced]


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8, as os.fsdecode kept them
        return False
    return True


def _link_error(rel: str, target: str) -> str:
    try:
        target.encode("utf-8")
    except UnicodeEncodeError:
        return LINK_NOT_UTF8
    return LINK_OUTSIDE if link_escapes(rel, target) else ""
