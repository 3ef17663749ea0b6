"""Walk a folder, re-hash only what changed, and record the changes in the index.

The walk trusts (size, mtime_ns, inode, mode) of regular files: an unchanged file
costs one lstat and no read, so rescans of large folders stay cheap. Everything the
scan decides is written with one `Index.put_local` call at the end.

Safety rules, all of which keep a scan from destroying data on peers:
- a folder root that is missing or unreadable raises instead of turning every
  indexed path into a deletion (an unmounted drive looks exactly like that);
- a subdirectory that cannot be listed protects everything indexed beneath it;
- paths that became ignored keep their entries (they are not deleted on peers);
- symlinked directories are never entered, the `.p2psync` folder never at all;
- a path the engine wrote to the index while we were scanning is left alone (the
  scan's view of it is stale; the next scan sees it again).

Rename detection is the engine's job: here a rename is a deletion plus a new file.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from app.core import modes, versions
from app.core.hashing import hash_file, link_hash
from app.core.ignore import Ignore
from app.core.index import BRIEF_DELETED, BRIEF_ERROR, Brief, Index, inode_to_db
from app.core.model import FileEntry, Kind
from app.core.namerules import LINUX, NameRules, Spelling
from app.core.paths import (
    META_DIR,
    TEMP_PREFIX,
    BadPath,
    is_temp_name,
    link_escapes,
    on_disk,
    safe_join,
    validate,
    validate_child,
)

log = logging.getLogger(__name__)

_FILE = int(Kind.FILE)
_DIR = int(Kind.DIR)
LINK_OUTSIDE = "link leads outside the folder"
LINK_NOT_UTF8 = "link target is not valid UTF-8"


@dataclass
class ScanResult:
    changed: list[FileEntry] = field(default_factory=list)  # written with a new version
    ignored: list[str] = field(default_factory=list)  # ignored paths seen (full scans only)
    temps: list[str] = field(default_factory=list)  # our temp files seen
    hashed_bytes: int = 0
    # entries written by this scan that carry an error (unreadable files, links that
    # lead outside...); some are also in `changed`, unreadable files are not (their
    # content is unknown, so they get no new version)
    errors: list[FileEntry] = field(default_factory=list)


def scan(
    root: Path,
    index: Index,
    ignore: Ignore,
    subpaths: Iterable[str] | None = None,
    names: NameRules = LINUX,
) -> ScanResult:
    """Scan the whole folder, or only `subpaths` (relative; each with all beneath it).

    `names`: the folder's file-name rules, by which a listed name is indexed under the
    spelling the index already holds for it (see app.core.namerules.Spelling).

    Does not reload the ignore file: the engine calls `ignore.reload_if_changed()`
    so that it also learns when the rules changed.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"folder root is missing or not a directory: {root}")
    job = _Scan(root, index, ignore, full=subpaths is None, names=names)
    if subpaths is None:
        job.run_full()
    else:
        job.run_subpaths([subpaths] if isinstance(subpaths, str) else list(subpaths))
    job.commit()
    return job.result


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


def _ancestors(rel: str) -> list[str]:
    """"a/b/c" -> ["a", "a/b"] (shallowest first)."""
    parts = rel.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


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
        if not any(a in kept for a in _ancestors(sp)):
            kept.add(sp)
    return sorted(kept)


class _Scan:
    """The state of one scan; methods are the steps, `commit` writes the outcome."""

    def __init__(self, root: Path, index: Index, ignore: Ignore, full: bool,
                 names: NameRules = LINUX) -> None:
        self.root = root
        self.index = index
        self.ignore = ignore
        self.full = full
        self.device = index.device_id
        self.brief: dict[str, Brief] = {}  # what the index held when we looked
        self.area: set[str] = set()  # indexed paths this scan may turn into deletions
        self.seen: set[str] = set()  # paths found on disk (or that must not be deleted)
        self.protected: list[str] = []  # dirs whose indexed subtree must be kept
        self.visited_dirs: set[str] = set()
        self.writes: list[FileEntry] = []
        self.stats: list[tuple[str, int, int, int]] = []  # (path, inode, ctime_ns, mode)
        self.result = ScanResult()
        self.start_seq = 0
        # a full scan's brief holds the whole index; a subpath scan's, only its part
        self.spelling = Spelling(names, self.brief, lambda: self.brief if full
                                 else self.index.local_brief(),
                                 (lambda rel: False) if full else self._indexed_alive)

    # --- entry points

    def run_full(self) -> None:
        with self.index.lock:
            self.start_seq = self.index.max_seq()
            self.brief.update(self.index.local_brief())  # the dict Spelling reads
        self.area = set(self.brief)
        self._walk([(os.fspath(self.root), "")])

    def run_subpaths(self, subpaths: list[str]) -> None:
        # where case does not count, "README" asked is the indexed "Readme"
        todo = _outermost([self.spelling.indexed(sp) for sp in subpaths])
        with self.index.lock:
            self.start_seq = self.index.max_seq()
            for sp in todo:
                below = self.index.local_brief(under=sp)
                self.brief.update(below)
                self.area.update(below)
        for sp in todo:
            self._scan_subpath(sp)

    def commit(self) -> None:
        """Add deletions, drop what the engine changed meanwhile, write in one batch."""
        self._add_deletions()
        with self.index.lock:
            raced = self.index.paths_changed_since(self.start_seq)
            if raced:
                self._drop(raced)
            if self.stats:
                self.index.set_stats(self.stats)
            self.index.put_local(self.writes)

    # --- walking

    def _scan_subpath(self, sp: str) -> None:
        for anc in _ancestors(sp):
            if not self._visit_ancestor(anc):
                return  # a parent is gone or not a real directory: sp is gone too
        try:
            path = safe_join(self.root, sp)
            st = os.lstat(path)
        except (BadPath, FileNotFoundError, NotADirectoryError):
            return  # missing: commit turns its indexed subtree into deletions
        except OSError as exc:
            log.warning("cannot stat %s: %s", sp, exc)
            self._protect(sp)
            return
        child = self._visit(sp, os.fspath(path), st)
        if child is not None:
            self._walk([child])

    def _visit_ancestor(self, anc: str) -> bool:
        """Record a parent of a subpath (new parents need entries too); False if not a dir."""
        try:
            st = self.spelling.shown(anc, os.lstat(self.root / on_disk(self.root, anc)))
        except OSError:
            return False
        if not stat.S_ISDIR(st.st_mode):
            return False
        if anc not in self.visited_dirs and not self.ignore.matches(anc, is_dir=True):
            self.visited_dirs.add(anc)
            old = self.index.get(anc)
            if old is not None:
                self.brief[anc] = _brief_of(old)
            self._dir(anc, st)
        return True

    def _walk(self, stack: list[tuple[str, str]]) -> None:
        """Iterative walk below (abs_dir, rel_dir) items; never follows symlinks."""
        while stack:
            abs_dir, rel_dir = stack.pop()
            try:
                with os.scandir(abs_dir) as it:
                    dirents = list(it)
            except FileNotFoundError:
                if not rel_dir:
                    raise
                continue  # removed while we walked: its indexed children are deletions
            except OSError as exc:
                if not rel_dir:
                    raise
                log.warning("cannot list %s: %s", rel_dir, exc)
                self._protect(rel_dir)
                continue
            for de in dirents:
                child = self._visit_dirent(de, rel_dir)
                if child is not None:
                    stack.append(child)

    def _visit_dirent(self, de: os.DirEntry[str], rel_dir: str) -> tuple[str, str] | None:
        if not rel_dir and de.name == META_DIR:
            return None
        try:
            rel = validate_child(rel_dir, self.spelling.name(rel_dir, de))
        except BadPath as exc:
            log.warning("skipping %r: %s", _join(rel_dir, de.name), exc)
            return None
        try:
            st = de.stat(follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot stat %s: %s", rel, exc)
            self._protect(rel)
            return None
        return self._visit(rel, de.path, st)

    def _visit(self, rel: str, abs_path: str, st: os.stat_result) -> tuple[str, str] | None:
        """Handle one existing path; returns (abs, rel) when it is a dir to descend into."""
        st = self.spelling.shown(rel, st)  # a disk without modes: the index's bits
        is_dir = stat.S_ISDIR(st.st_mode)
        name = rel[rel.rfind("/") + 1 :]
        if not is_dir and name.startswith(TEMP_PREFIX) and is_temp_name(name):
            self.result.temps.append(rel)
            return None
        if self.ignore.matches(rel, is_dir):
            if self.full:
                self.result.ignored.append(rel)
            return None
        if stat.S_ISREG(st.st_mode):
            self.seen.add(rel)
            if not self._unchanged_file(rel, st):
                self._file(rel, abs_path, st)
        elif is_dir:
            self.seen.add(rel)
            self._dir(rel, st)
            return (abs_path, rel)
        elif stat.S_ISLNK(st.st_mode):
            self.seen.add(rel)
            self._link(rel, abs_path, st)
        else:
            log.debug("skipping special file %s", rel)
        return None

    def _indexed_alive(self, rel: str) -> bool:
        old = self.index.get(rel)
        return old is not None and not old.deleted

    def _protect(self, rel: str) -> None:
        self.seen.add(rel)
        self.protected.append(rel)

    # --- the three kinds

    def _unchanged_file(self, rel: str, st: os.stat_result) -> bool:
        """The hot path of a rescan: same size, mtime, inode, mode and ctime -> same content.

        ctime cannot be set by user tools, so a rewrite that restores the mtime (cp -p,
        touch -r) still shows here.
        """
        return self.brief.get(rel) == (
            rel, _FILE, st.st_size, st.st_mtime_ns, st.st_mode & 0o777,
            inode_to_db(st.st_ino), st.st_ctime_ns,
        )

    def _file(self, rel: str, abs_path: str, st: os.stat_result) -> None:
        try:
            size, h, blocks = hash_file(abs_path)
        except FileNotFoundError:
            self.seen.discard(rel)
            return
        except OSError as exc:
            self._unreadable(rel, st, exc)
            return
        self.result.hashed_bytes += size
        if not self._still_same(abs_path, st, size):
            log.debug("%s changed while hashing; a later scan picks it up", rel)
            return
        old = self.index.get(rel) if rel in self.brief else None
        if _live(old, Kind.FILE) and (old.hash, old.size) == (h, size) \
                and self.spelling.rules.same_time(old.mtime_ns, st.st_mtime_ns) \
                and modes.same_synced_bits(old.mode, _perm(st)):
            self._same_file(old, st)  # other permission bits are this device's business
            return
        self._new_version(
            FileEntry(rel, Kind.FILE, size, st.st_mtime_ns, _perm(st), h, blocks,
                      inode=st.st_ino, ctime_ns=st.st_ctime_ns),
            old,
        )

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
            self.writes.append(dataclasses.replace(old, error="", inode=st.st_ino,
                                                   ctime_ns=st.st_ctime_ns, mode=_perm(st),
                                                   mtime_ns=st.st_mtime_ns))
        elif (old.inode, old.ctime_ns, old.mode) != (st.st_ino, st.st_ctime_ns, _perm(st)):
            self.stats.append((old.path, st.st_ino, st.st_ctime_ns, _perm(st)))

    def _unreadable(self, rel: str, st: os.stat_result, exc: OSError) -> None:
        """Record why a file cannot be synced, without a new version (content unknown)."""
        msg = f"cannot read: {exc.strerror or exc}"
        old = self.index.get(rel) if rel in self.brief else None
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
        self.writes.append(entry)
        self.result.errors.append(entry)

    def _dir(self, rel: str, st: os.stat_result) -> None:
        b = self.brief.get(rel)
        # a dir's mtime changes whenever its contents do: not a change of the dir itself
        if b is not None and b[1] == _DIR and b[4] == _perm(st):
            return
        old = self.index.get(rel) if b is not None else None
        if _live(old, Kind.DIR):
            if old.error:  # set by someone else: the dir is there as recorded
                self.writes.append(dataclasses.replace(old, error="", inode=st.st_ino,
                                                       mode=_perm(st)))
            else:  # only its mode moved, which is this device's business
                self.stats.append((rel, st.st_ino, old.ctime_ns, _perm(st)))
            return
        self._new_version(
            FileEntry(rel, Kind.DIR, 0, st.st_mtime_ns, _perm(st), inode=st.st_ino), old
        )

    def _link(self, rel: str, abs_path: str, st: os.stat_result) -> None:
        try:
            target = os.readlink(abs_path)
        except FileNotFoundError:
            self.seen.discard(rel)
            return
        except OSError as exc:
            log.warning("cannot read link %s: %s", rel, exc)
            return
        h = link_hash(target)
        error = _link_error(rel, target)
        old = self.index.get(rel) if rel in self.brief else None  # links are rare
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
        self.writes.append(entry)
        self.result.changed.append(entry)
        if entry.error:
            self.result.errors.append(entry)

    # --- finishing

    def _add_deletions(self) -> None:
        """Indexed paths of the scanned area no longer on disk (children before parents)."""
        for rel in sorted(self.area - self.seen, reverse=True):
            if self.brief[rel][1] == BRIEF_DELETED or self._is_protected(rel):
                continue
            old = self.index.get(rel)
            if old is None or old.deleted:
                continue
            if self.ignore.matches(rel, is_dir=old.kind == Kind.DIR):
                continue  # now ignored: keep the entry, peers keep the file
            gone = FileEntry(rel, old.kind, 0, old.mtime_ns, old.mode, deleted=True)
            self._new_version(gone, old)

    def _is_protected(self, rel: str) -> bool:
        return any(rel.startswith(p + "/") for p in self.protected)

    def _drop(self, raced: set[str]) -> None:
        """Forget decisions about paths written by someone else during the scan."""
        log.debug("scan raced with index writes on %d paths; leaving them", len(raced))
        self.writes = [e for e in self.writes if e.path not in raced]
        self.stats = [item for item in self.stats if item[0] not in raced]
        self.result.changed = [e for e in self.result.changed if e.path not in raced]
        self.result.errors = [e for e in self.result.errors if e.path not in raced]


def _link_error(rel: str, target: str) -> str:
    try:
        target.encode("utf-8")
    except UnicodeEncodeError:
        return LINK_NOT_UTF8
    return LINK_OUTSIDE if link_escapes(rel, target) else ""
