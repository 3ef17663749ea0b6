"""What to do about one path, given this device's entry and what the peers announced.

Pure decisions, no I/O: the node asks `plan_path` for each path whose versions
differ and carries the answer out. The rules (see docs/architecture.md):

* the best version among all announced ones is the one no other dominates; between
  concurrent versions a change beats a deletion, a directory beats a file, then the
  newer mtime, then the larger device ID of its author, then what the entries hold (so
  every device picks the same);
* if that best version is ours, or older, nothing to do here (peers fetch from us);
* if it dominates ours, take it;
* if it is concurrent with ours and wins, we are the losing side: take it with the
  merged version vector, after keeping our content as a conflict copy (unless ours is
  a deletion or the same content, where nothing is lost).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from app.core import paths
from app.core.model import FileEntry, Kind
from app.core.versions import Order, compare, merge

FETCH = "fetch"  # build a file from blocks (local or remote)
META = "meta"  # same content: only mode / mtime change
MKDIR = "mkdir"
LINK = "link"
DELETE = "delete"
ADOPT = "adopt"  # index only: nothing on disk changes


@dataclass
class Action:
    op: str
    path: str
    target: FileEntry  # the entry this path will have locally afterwards
    sources: list[str] = field(default_factory=list)  # devices that hold the content
    conflict_copy: bool = False  # keep our current content as a conflict copy first
    # our directory at path gives way to a file or a link: it may hold what the peer
    # that replaced it never saw (Puller._kept_dir)
    replaces_dir: bool = False


def _rank(e: FileEntry) -> tuple:
    """The rules' order, then what an entry holds: two different entries never tie.

    Concurrent versions of one author and one mtime happen: A records a chmod (the
    mtime stays) while B, not yet told, merges A's previous change with one of its own
    and announces the result under A's name. Tied, each side took the other's: both
    ended with one merged version and two modes, the chmod undone where it was made,
    and equal versions are never planned again (found by fuzzing two watching nodes)."""
    return (not e.deleted, e.kind == Kind.DIR and not e.deleted, e.mtime_ns, e.modified_by,
            e.mode, bytes(e.hash), e.target)


def beats(a: FileEntry, b: FileEntry) -> bool:
    """Tie-break between concurrent versions; the same answer on every device."""
    return _rank(a) > _rank(b)


def best_remote(remotes: dict[str, FileEntry]) -> tuple[FileEntry, list[str]] | None:
    """The winning announced version and the devices that hold exactly it."""
    if len(remotes) == 1:  # the common case, a first sync above all: nothing to weigh
        [(dev, r)] = remotes.items()
        if r.error or (r.kind == Kind.LINK and not r.deleted
                       and paths.link_escapes(r.path, r.target)):
            return None
        return r, [dev]
    best: FileEntry | None = None
    for dev in sorted(remotes):
        r = remotes[dev]
        if r.error or (r.kind == Kind.LINK and not r.deleted
                       and paths.link_escapes(r.path, r.target)):
            continue
        if best is None:
            best = r
            continue
        order = compare(r.version, best.version)
        if order == Order.NEWER or (order == Order.CONCURRENT and beats(r, best)):
            best = r
    if best is None:
        return None
    holders = [d for d in sorted(remotes)
               if compare(remotes[d].version, best.version) == Order.EQUAL]
    return best, holders


def _op_for(local: FileEntry | None, target: FileEntry) -> str:
    if target.deleted:
        return DELETE if local is not None and not local.deleted else ADOPT
    if target.kind == Kind.DIR:
        return MKDIR
    if target.kind == Kind.LINK:
        return LINK
    if (local is not None and not local.deleted and local.kind == Kind.FILE
            and local.hash == target.hash):
        return META
    return FETCH


def _replaces_dir(local: FileEntry, target: FileEntry) -> bool:
    """A live directory of ours that the target (a file or a link) takes the place of.
    Only a newer version does: a concurrent one loses to a directory (`_rank`)."""
    return (local.kind == Kind.DIR and not local.deleted and not target.deleted
            and target.kind != Kind.DIR)


def plan_path(local: FileEntry | None, remotes: dict[str, FileEntry]) -> Action | None:
    found = best_remote(remotes)
    if found is None:
        return None
    best, holders = found
    if local is None:
        return Action(_op_for(None, best), best.path, best, holders)
    order = compare(best.version, local.version)
    if order in (Order.EQUAL, Order.OLDER):
        return None
    if order == Order.NEWER:
        return Action(_op_for(local, best), best.path, best, holders,
                      replaces_dir=_replaces_dir(local, best))
    if beats(local, best):
        return None  # we win; the other side keeps its copy and merges
    target = replace(best, version=merge(local.version, best.version))
    keep_ours = not local.deleted and not local.same_content(best)
    return Action(_op_for(local, target), best.path, target, holders, conflict_copy=keep_ours)
