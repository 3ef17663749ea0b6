"""Each file's sync state, derived from the local index alone (for `status` and the GUI)."""

from __future__ import annotations

import heapq
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from app.core.apply import conflict_original as _original_of
from app.core.apply import is_conflict_copy
from app.core.ignore import Ignore
from app.core.index import Index
from app.core.model import FileEntry, Kind
from app.core.planner import plan_path

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


def _originals(index: Index) -> set[str]:
    """The originals of the live conflict copies (the copy names the original; a
    shortened one, of a long name, is found among the names of its directory)."""
    found = set()
    for copy in index.live_conflict_copies():
        head = copy.rpartition("/")[0]
        original = conflict_original(copy)
        if not index.is_live(original):
            original = conflict_original(copy, index.live_names_in(head))
        found.add(original)
    return found


def _row(e: FileEntry, state: str, reason: str = "") -> dict:
    row = {"path": e.path, "size": e.size, "hash": e.hash.hex(),
           "mtime": e.mtime_ns / 1e9, "state": state}
    if reason:
        row["reason"] = row["why"] = reason
    return row


def file_states(index: Index, root: Path | None = None) -> list[dict]:
    """One row per regular file and link: what `status --json` lists as `files`."""
    return list(iter_file_states(index, root))


def iter_file_states(index: Index, root: Path | None = None) -> Iterator[dict]:
    """`file_states`, in path order, a few thousand index rows at a time: a folder of a
    million files is listed without holding it.

    A path the node last failed to sync (no space, a name refused...) is `error` with
    that reason, whatever its state would be otherwise.
    """
    ignore = Ignore(root) if root is not None else None
    failures = index.failures()
    copies = _originals(index)
    local = ((e.path, 0, (e, equal, other)) for e, equal, other in index.iter_states())
    remote = ((p, 1, None) for chunk in index.iter_differing() for p in chunk)
    ignored = ((p, 2, None) for p in index.iter_ignored())
    here, here_live = None, False  # the latest local entry's path, and whether it is live
    shown = None  # the path of the latest row
    for path, stream, item in heapq.merge(local, remote, ignored, key=lambda t: t[:2]):
        if stream == 0:
            e, equal, other = item
            here, here_live = path, not e.deleted
            row = _local_state(index, e, equal, other, copies, failures, root, ignore)
        elif path == here:  # we have an entry: a peer's says nothing more here
            row = _ignored_row(root, path, ignore) if stream == 2 and not here_live else None
        elif stream == 1 and not (ignore is not None and ignore.matches(path)):
            row = _remote_only(index, path, failures)
        else:  # an ignored path, or one a peer has that our rules ignore
            row = _ignored_row(root, path, ignore) if stream == 2 or _offered(index, path) \
                else None
        if row is not None and path != shown:  # a peer's ignored path is listed once
            shown = path
            yield row


def _local_state(index: Index, e: FileEntry, equal: bool, other: bool, copies: set[str],
                 failures: dict[str, str], root: Path | None, ignore: Ignore | None
                 ) -> dict | None:
    if e.deleted or e.kind == Kind.DIR:
        return None
    if e.path in failures:
        return _row(e, ERROR, failures[e.path])
    if ignore is not None and ignore.matches(e.path):  # indexed before the rules said so
        return _ignored_row(root, e.path, ignore)
    return _local_row(index, e, other, equal, copies)


def _remote_only(index: Index, path: str, failures: dict[str, str]) -> dict | None:
    action = plan_path(None, index.remote_for_path(path))
    if action is None or action.target.deleted or action.target.kind == Kind.DIR:
        return None
    return _row(action.target, ERROR, failures[path]) if path in failures \
        else _row(action.target, REMOTE_CHANGE)


def _offered(index: Index, path: str) -> bool:
    """Whether a peer has a live file at path (an ignored path we do not have)."""
    action = plan_path(None, index.remote_for_path(path))
    return action is not None and not action.target.deleted and action.target.kind != Kind.DIR


def _local_row(index: Index, e: FileEntry, differs: bool, synced: bool,
               copies: set[str]) -> dict:
    if e.error:
        return _row(e, ERROR, e.error)
    if is_conflict_copy(e.path) or e.path in copies:
        return _row(e, CONFLICT)
    if differs and plan_path(e, index.remote_for_path(e.path)) is not None:
        return _row(e, REMOTE_CHANGE)
    if synced:  # a peer holds exactly our version
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
