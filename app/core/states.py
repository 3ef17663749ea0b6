"""Each file's sync state, derived from the local index alone (for `status` and the GUI)."""

from __future__ import annotations

import os
import stat
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from app.core.apply import conflict_original as _original_of
from app.core.apply import is_conflict_copy
from app.core.ignore import Ignore
from app.core.index import Index
from app.core.model import FileEntry, Kind
from app.core.planner import plan_path
from app.core.versions import encode

SYNCED = "synced"
LOCAL_CHANGE = "local_change"
REMOTE_CHANGE = "remote_change"
CONFLICT = "conflict"
ERROR = "error"
IGNORED = "ignored"


def conflict_original(rel: str, siblings: Iterable[str] = ()) -> str:
    """The path a conflict copy stands beside (rel itself when it is not a copy).

    siblings: the names in the copy's directory, which only a copy of a long name
    (shortened, see app.core.apply.conflict_name) needs to find its original.
    """
    return _original_of(rel, siblings) or rel


def _originals(live: set[str]) -> set[str]:
    """The originals of the conflict copies among the live paths (those on disk)."""
    by_dir: dict[str, list[str]] | None = None  # made only for a copy that needs it
    found = set()
    for p in live:
        if not is_conflict_copy(p):
            continue
        original = conflict_original(p)
        if original not in live:  # a copy of a long name? its original is a sibling
            if by_dir is None:
                by_dir = defaultdict(list)
                for q in live:
                    head, _, name = q.rpartition("/")
                    by_dir[head].append(name)
            original = conflict_original(p, by_dir.get(p.rpartition("/")[0], ()))
        found.add(original)
    return found


def _row(e: FileEntry, state: str, reason: str = "") -> dict:
    row = {"path": e.path, "size": e.size, "hash": e.hash.hex(),
           "mtime": e.mtime_ns / 1e9, "state": state}
    if reason:
        row["reason"] = row["why"] = reason
    return row


def file_states(index: Index, root: Path | None = None) -> list[dict]:
    """One row per regular file and link: what `status --json` lists as `files`.

    A path the node last failed to sync (no space, a name refused...) is `error` with
    that reason, whatever its state would be otherwise.
    """
    local = {e.path: e for e in index.all_local()}
    ignore = Ignore(root) if root is not None else None
    failures = index.failures()
    differing = set(index.differing_paths())
    announced = index.remote_version_blobs()
    copies = _originals({p for p, e in local.items() if not e.deleted})
    rows = []
    for path, e in local.items():
        if e.deleted or e.kind == Kind.DIR:
            continue
        if path in failures:
            rows.append(_row(e, ERROR, failures[path]))
            continue
        if ignore is not None and ignore.matches(path):  # indexed before the rules said so
            rows.append(_ignored_row(root, path, ignore))
            continue
        rows.append(_local_row(index, e, path in differing, announced.get(path, set()),
                               copies))
    for path in sorted(differing - local.keys()):
        action = plan_path(None, index.remote_for_path(path))
        if action is not None and not action.target.deleted and action.target.kind != Kind.DIR:
            rows.append(_row(action.target, ERROR, failures[path]) if path in failures
                        else _row(action.target, REMOTE_CHANGE))
    for path in index.ignored():
        if path not in local or local[path].deleted:
            rows.append(_ignored_row(root, path, ignore))
    rows.sort(key=lambda r: r["path"])
    return rows


def _local_row(index: Index, e: FileEntry, differs: bool, announced: set[bytes],
               copies: set[str]) -> dict:
    if e.error:
        return _row(e, ERROR, e.error)
    if is_conflict_copy(e.path) or e.path in copies:
        return _row(e, CONFLICT)
    if differs and plan_path(e, index.remote_for_path(e.path)) is not None:
        return _row(e, REMOTE_CHANGE)
    if encode(e.version) in announced:  # a peer holds exactly our version
        return _row(e, SYNCED)
    return _row(e, LOCAL_CHANGE)


def _ignored_row(root: Path | None, path: str, ignore: Ignore | None = None) -> dict:
    """An ignored path; its `why` names the pattern and the file that ignore it."""
    size, mtime, is_dir = 0, 0.0, False
    if root is not None:
        try:
            st = os.lstat(root / path)
            size, mtime, is_dir = st.st_size, st.st_mtime, stat.S_ISDIR(st.st_mode)
        except OSError:
            pass
    row = {"path": path, "size": size, "hash": None, "mtime": mtime, "state": IGNORED}
    if ignore is not None:
        row["reason"] = row["why"] = ignore.why(path, is_dir)
    return row
