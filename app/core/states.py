"""Each file's sync state, derived from the local index alone (for `status` and the GUI),
and its `why` (app/core/why.py puts it into words; a running node adds who is
connected and what is being fetched, see `why.Devices`).
"""

from __future__ import annotations

import heapq
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from app.core import configdir, why
from app.core.apply import conflict_original as _original_of
from app.core.apply import is_conflict_copy
from app.core.ignore import Ignore, own_dirs
from app.core.index import Index
from app.core.model import FileEntry, Kind
from app.core.planner import Action, plan_path
from app.core.why import Devices

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


def _originals(index: Index) -> dict[str, list[str]]:
    """original -> its live conflict copies (the copy names the original; a shortened
    one, of a long name, is found among the names of its directory)."""
    found: dict[str, list[str]] = {}
    for copy in index.live_conflict_copies():
        head = copy.rpartition("/")[0]
        original = conflict_original(copy)
        if not index.is_live(original):
            original = conflict_original(copy, index.live_names_in(head))
        found.setdefault(original, []).append(copy)
    return found


def _row(e: FileEntry, state: str, reason: str = "", why: str | None = None) -> dict:
    """A row of `status --json`; `reason` (error and ignored rows, as recorded) is kept
    beside `why` for the scripts that read it."""
    row = {"path": e.path, "size": e.size, "hash": e.hash.hex(),
           "mtime": e.mtime_ns / 1e9, "state": state}
    if reason:
        row["reason"] = reason
    row["why"] = why if why is not None else (reason or None)
    return row


def file_states(index: Index, root: Path | None = None, devices: Devices | None = None
                ) -> list[dict]:
    """One row per regular file and link: what `status --json` lists as `files`."""
    return list(iter_file_states(index, root, devices))


class _Facts:
    """What one listing works from besides the index rows (read once, all small)."""

    def __init__(self, index: Index, root: Path | None, devices: Devices | None,
                 copies: dict[str, list[str]] | None = None) -> None:
        self.index = index
        self.root = root
        self.ignore = None if root is None else \
            Ignore(root, own_dirs(configdir.of_index(index.path)))
        self.failures = index.failures()
        self.copies = _originals(index) if copies is None else copies
        self.copy_of = {c: original for original, cs in self.copies.items() for c in cs}
        if devices is None:
            devices = Devices(names=index.device_names(), last_seen=index.last_seen())
        devices.own = devices.own or index.device_id
        self.devices = devices
        self.known = [d for d in index.remote_devices() if d != index.device_id]


def iter_file_states(index: Index, root: Path | None = None, devices: Devices | None = None,
                     only: Iterable[str] | None = None) -> Iterator[dict]:
    """`file_states`, in path order, a few thousand index rows at a time: a folder of a
    million files is listed without holding it.

    A path the node last failed to sync (no space, a name refused...) is `error` with
    that reason, whatever its state would be otherwise; so is a local file the scanner
    had to skip (a name that is not UTF-8...). `devices`: what the running node says
    of the other devices, for the `why`s (default: what the index remembers). `only`:
    these paths and what is below them, nothing else (files the index has are looked
    up one by one; anything else costs the pass over the index, filtered).
    """
    wanted = sorted({p.strip("/") for p in only}) if only is not None else None
    if wanted is not None and all(_one_file(index, p) for p in wanted):
        rows = (state_of(index, p, root, devices) for p in wanted)
        yield from (r for r in rows if r is not None)
        return
    facts = _Facts(index, root, devices)
    local = ((e.path, 0, (e, equal, other)) for e, equal, other in index.iter_states())
    remote = ((p, 1, None) for chunk in index.iter_differing() for p in chunk)
    ignored = ((p, 2, None) for p in index.iter_ignored())
    skipped = ((p, 3, reason) for p, reason in sorted(index.skipped().items()))
    rows = _merged(facts, heapq.merge(local, remote, ignored, skipped, key=lambda t: t[:2]))
    if wanted is None:
        yield from rows
        return
    yield from (r for r in rows if any(r["path"] == p or r["path"].startswith(p + "/")
                                       or not p for p in wanted))


def _one_file(index: Index, path: str) -> bool:
    """Whether `path` names one file of ours (or one the scanner skipped), nothing below."""
    if path in index.skipped():
        return True
    e = index.get(path) if path else None
    return e is not None and e.kind != Kind.DIR


def state_of(index: Index, path: str, root: Path | None = None,
             devices: Devices | None = None) -> dict | None:
    """One path's row, as `iter_file_states` would list it (None when it lists none):
    for the app's details pane, without a pass over the folder."""
    skipped = index.skipped()
    if path in skipped:
        return {"path": path, "size": 0, "hash": None, "mtime": 0.0, "state": ERROR,
                "reason": skipped[path], "why": skipped[path]}
    facts = _Facts(index, root, devices, _copies_near(index, path))
    e = index.get(path)
    remotes = index.remote_for_path(path)
    if e is None:
        if path in index.ignored():
            return _ignored_row(root, path, facts.ignore)
        if remotes and facts.ignore is not None and facts.ignore.matches(path):
            return _ignored_row(root, path, facts.ignore) if _offered(index, path) else None
        return _remote_only(facts, path) if remotes else None
    equal = any(r.version == e.version for r in remotes.values())
    other = any(r.version != e.version for r in remotes.values())
    if e.deleted and path in index.ignored():
        return _ignored_row(root, path, facts.ignore)
    return _local_state(facts, e, equal, other)


def _copies_near(index: Index, path: str) -> dict[str, list[str]]:
    """original -> live conflict copies, for path (as an original or as a copy): only
    the names of its directory are read."""
    head = path.rpartition("/")[0]
    names = index.live_names_in(head)
    rels = [f"{head}/{n}" if head else n for n in names]
    copies = [r for r in rels if is_conflict_copy(r) and conflict_original(r, names) == path]
    near = {path: copies} if copies else {}
    if is_conflict_copy(path):
        near[conflict_original(path, names)] = [path]
    return near


def details(index: Index, path: str, root: Path | None = None,
            devices: Devices | None = None) -> dict:
    """What the app's details pane shows of one path: its row (None when no state
    is listed for it) and its history (app.core.why.history)."""
    devices = devices or Devices(index.device_names(), index.last_seen())
    devices.own = devices.own or index.device_id
    return {"row": state_of(index, path, root, devices),
            "history": why.history(devices, index.get(path), index.remote_for_path(path))}


def _merged(facts: _Facts, items: Iterator[tuple[str, int, object]]) -> Iterator[dict]:
    here, here_live = None, False  # the latest local entry's path, and whether it is live
    shown = None  # the path of the latest row
    for path, stream, item in items:
        if stream == 0:
            e, equal, other = item
            here, here_live = path, not e.deleted
            row = _local_state(facts, e, equal, other)
        elif stream == 3:
            row = {"path": path, "size": 0, "hash": None, "mtime": 0.0, "state": ERROR,
                   "reason": item, "why": item}
        elif path == here:  # we have an entry: a peer's says nothing more here
            row = _ignored_row(facts.root, path, facts.ignore) \
                if stream == 2 and not here_live else None
        elif stream == 1 and not (facts.ignore is not None and facts.ignore.matches(path)):
            row = _remote_only(facts, path)
        else:  # an ignored path, or one a peer has that our rules ignore
            row = _ignored_row(facts.root, path, facts.ignore) \
                if stream == 2 or _offered(facts.index, path) else None
        if row is not None and path != shown:  # a peer's ignored path is listed once
            shown = path
            yield row


def _local_state(facts: _Facts, e: FileEntry, equal: bool, other: bool) -> dict | None:
    if e.deleted or e.kind == Kind.DIR:
        return None
    if e.path in facts.failures:
        return _row(e, ERROR, facts.failures[e.path])
    if facts.ignore is not None and facts.ignore.matches(e.path):  # indexed, then ignored
        return _ignored_row(facts.root, e.path, facts.ignore)
    return _local_row(facts, e, other, equal)


def _remote_only(facts: _Facts, path: str) -> dict | None:
    action = plan_path(None, facts.index.remote_for_path(path))
    if action is None or action.target.deleted or action.target.kind == Kind.DIR:
        return None
    if path in facts.failures:
        return _row(action.target, ERROR, facts.failures[path])
    return _remote_row(facts, action.target, action)


def _remote_row(facts: _Facts, e: FileEntry, action: Action) -> dict:
    return _row(e, REMOTE_CHANGE, why=why.remote_change(facts.devices, e.path, action))


def _offered(index: Index, path: str) -> bool:
    """Whether a peer has a live file at path (an ignored path we do not have)."""
    action = plan_path(None, index.remote_for_path(path))
    return action is not None and not action.target.deleted and action.target.kind != Kind.DIR


def _local_row(facts: _Facts, e: FileEntry, differs: bool, synced: bool) -> dict:
    if e.error:
        return _row(e, ERROR, e.error, why.error(e.error))
    if is_conflict_copy(e.path):
        original = facts.copy_of.get(e.path) or conflict_original(e.path)
        return _row(e, CONFLICT, why=why.conflict_copy(facts.devices, e.path, original))
    if e.path in facts.copies:
        copies = facts.copies[e.path]
        return _row(e, CONFLICT, why=why.conflict_original(facts.devices, copies))
    if differs:
        action = plan_path(e, facts.index.remote_for_path(e.path))
        if action is not None:
            return _remote_row(facts, e, action)
    if synced:  # a peer holds exactly our version
        return _row(e, SYNCED)
    return _row(e, LOCAL_CHANGE, why=why.local_change(facts.devices, facts.known))


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
        row["reason"] = ignore.why(path, is_dir)
    row["why"] = row.get("reason") or "ignored by the folder's ignore rules"
    return row
