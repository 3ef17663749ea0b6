"""What to do now: one pass over the planning window of the index, off the event loop.

The node asks for an assessment whenever the index, its peers or the rules changed;
`assess` runs in a worker thread (the index gives windows of at most a few tens of
thousands of rows, read a chunk at a time), so a folder of a million files costs
the loop nothing but the hand-off. It gives the plan, how many paths each peer
still has for us, and the deletions the mass-deletion guard holds back. Rows that
planned to nothing are settled in the index, so the next window moves on. Every
read of one assessment sees one snapshot of the index (`Index.snapshot`): the pull
writes beside it, and half a move made between two reads would look like a deletion.

Deletions also wait for moves: a file whose content a peer announces at another
path stays until that path is fetched, which then renames it (see the puller) and
nothing is copied or archived.
"""

from __future__ import annotations

import bisect
import contextlib
import sqlite3
from collections import Counter
from collections.abc import Collection, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace

from app.core.ignore import Ignore
from app.core.index import Index
from app.core.massdelete import HeldDeletions, counted, hold_mass_deletions
from app.core.model import FileEntry, Kind
from app.core.planner import DELETE, FETCH, Action, plan_path


@dataclass(frozen=True)
class Inputs:
    """What the node knew when it asked (read on the loop, used in the thread)."""

    peers: frozenset[str]  # connected
    streaming: frozenset[str]  # peers halfway through sending their index
    ignore: Ignore
    blocked: frozenset[str]  # paths that cannot be synced now, whatever a peer sends
    approved: frozenset[str]  # held deletions the user confirmed
    allow_mass_delete: bool


@dataclass
class Assessment:
    key: tuple  # what it was made of (see Node._assess_key): equal key, same answer
    actions: list[Action] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # device -> paths needed from it
    held: HeldDeletions | None = None  # deletions the mass-deletion guard took out of actions
    deleting: frozenset[str] = frozenset()  # paths the plan would delete (held ones too)
    renames: list[tuple[Action, Action]] = field(default_factory=list)  # (deletion, fetch)
    seen: dict[str, int] = field(default_factory=dict)  # device -> its seq this plan holds
    ids: dict[str, bytes] = field(default_factory=dict)  # device -> the index id of that seq
    # (device, deleted) -> the seq its window ended at: the next window starts past it
    ends: dict[tuple[str, bool], int] = field(default_factory=dict)


def assess(index: Index, key: tuple, inputs: Inputs,
           after: Mapping[tuple[str, bool], int] | None = None) -> Assessment:
    """Plan the index's window (call in a worker thread), from one snapshot of it;
    `after`: the window that follows the one of that plan's `ends` (Node._plan_ahead)."""
    with index.snapshot():
        result = _assess(index, key, inputs, after)
        held = {d: index.remote_state(d) for d in inputs.peers}
    result.ids = {d: h[0] for d, h in held.items()}
    result.seen = {d: h[1] for d, h in held.items()}
    return result


def without_deletions(assessed: Assessment, paged: AbstractSet[str]) -> Assessment:
    """The plan less the deletions announced by `paged` (moves stay): peers an index
    page of which was stored while it was made.

    The snapshot may then hold a page of a peer that was not streaming when the
    inputs were read: its deletions would be judged without the pages still to come
    (1,000 of 1,500 deleted files went through the guard that way, one run in ten).
    They wait for the next assessment: this one's key (made of the inputs) is no key
    the node makes, so it is not kept as up to date for them. Only theirs, as with a
    peer still streaming its index (`_guard`): a peer that sends pages without end
    delays its own deletions, not the others'.
    """
    return replace(assessed, key=(), actions=[
        a for a in assessed.actions if a.op != DELETE or paged.isdisjoint(a.sources)])


def arrivals_only(assessed: Assessment) -> bool:
    """Whether a plan only brings things in: it deletes, moves and holds back nothing.

    Such a plan can be made while the round before it runs (Node._plan_ahead): what a
    deletion waits for, or what the mass-deletion guard counts, depends on that round.
    """
    return not assessed.renames and assessed.held is None and \
        all(a.op != DELETE for a in assessed.actions)


def _assess(index: Index, key: tuple, inputs: Inputs,
            after: Mapping[tuple[str, bool], int] | None) -> Assessment:
    ends: dict[tuple[str, bool], int] = {}
    actions: list[Action] = []
    counts = dict.fromkeys(inputs.peers, 0)
    deleting: dict[str, tuple[FileEntry | None, list[str]]] = {}  # -> (ours, who counts it)
    settled_rows: list[tuple[str, str, int]] = []
    settled_deletions: list[str] = []  # planned to nothing: still pending in the snapshot
    for rel, local, remotes in index.differing_entries(after, ends):
        action = None if inputs.ignore.matches(rel) else plan_path(local, remotes)
        if action is None:  # nothing comes of these rows until our entry changes
            settled_rows.extend((device, rel, r.seq) for device, r in remotes.items())
            if any(r.deleted for r in remotes.values()):
                settled_deletions.append(rel)
            continue
        actions.append(action)
        if action.op == DELETE:
            deleting[rel] = (local, [])
        if rel in inputs.blocked:
            continue  # retried, but nothing a peer could send would help now
        for device in counts.keys() & remotes.keys():
            needed = len(remotes) == 1 or \
                plan_path(local, {device: remotes[device]}) is not None
            counts[device] += needed
            if needed and rel in deleting:
                deleting[rel][1].append(device)
    with contextlib.suppress(sqlite3.Error):  # the index's disk full: planned again, later
        index.settle(settled_rows)
    renames, actions = _pair_renames(index, actions, inputs.ignore)
    actions = _wait_for_moves(index, actions, deleting)
    actions, held = _guard(index, actions, deleting, settled_deletions, inputs)
    if held is not None:  # a file or link waits, as for `_wait_for_moves`, for those inside
        actions = [a for a in actions if not a.replaces_dir
                   or not any(p.startswith(a.path + "/") for p in held.paths)]
    for rel in held.paths if held is not None else ():
        for device in deleting[rel][1]:  # held back is settled, not needed
            counts[device] -= 1
    return Assessment(key, actions, counts, held, frozenset(deleting), renames, ends=ends)


def _pair_renames(index: Index, actions: list[Action], ignore: Ignore
                  ) -> tuple[list[tuple[Action, Action]], list[Action]]:
    """Pair a new file with a file of ours of the same content that a peer deleted: a
    move, not a transfer. The deletion need not be in this plan (it waits for the move,
    see `_wait_for_moves`): it is looked up in the index."""
    fetches = [a for a in actions if a.op == FETCH and not a.conflict_copy and a.target.size]
    if not fetches:
        return [], actions
    holders = index.live_with_content([a.target.blocks for a in fetches])
    if not holders:
        return [], actions
    planned = {a.path: a for a in actions if a.op == DELETE and not a.conflict_copy}
    deletions = _deletions_of(index, {p for paths in holders.values() for p in paths},
                              planned, ignore)
    here = index.get_many([a.path for a in fetches])
    pairs, used = [], set()
    for a in fetches:
        current = here.get(a.path)
        if current is not None and not current.deleted:
            continue
        for old in holders.get(a.target.blocks, ()):
            d = deletions.get(old)
            if d is not None and id(d) not in used:
                pairs.append((d, a))
                used.update((id(d), id(a)))
                break
    return pairs, [a for a in actions if id(a) not in used]


def _deletions_of(index: Index, rels: set[str], planned: dict[str, Action], ignore: Ignore
                  ) -> dict[str, Action]:
    """rel -> the deletion a plan of it would carry out (for those where it would)."""
    out = {rel: a for rel, a in planned.items() if rel in rels}
    rest = sorted(index.remotely_deleted(sorted(rels - out.keys())))
    local = index.get_many(rest)
    remote = index.remote_entries(rest)
    for rel in rest:
        mine = local.get(rel)
        if mine is None or mine.deleted or mine.kind != Kind.FILE or ignore.matches(rel):
            continue
        a = plan_path(mine, remote.get(rel, {}))
        if a is not None and a.op == DELETE and not a.conflict_copy:
            out[rel] = a
    return out


def _wait_for_moves(index: Index, actions: list[Action],
                    deleting: dict[str, tuple[FileEntry | None, list[str]]]) -> list[Action]:
    """The plan without the deletions that must wait (still needed, so counted):

    * of files whose content is wanted at another path: the fetch of that path renames
      them, and nothing is copied or archived;
    * of directories that still hold entries whose deletion is pending and not in this
      plan: removing one first would find it not empty, which means "keep it"; so too
      the fetch of a file or link that replaces such a directory (`replaces_dir`).
    """
    mine = [e for e, _ in deleting.values() if e is not None and e.kind == Kind.FILE]
    waiting = index.wanted_elsewhere(mine) if mine else set()
    now = sorted(a.path for a in actions if a.op == DELETE and a.path not in waiting)
    dirs = [p for p in now if (e := deleting[p][0]) is not None and e.kind == Kind.DIR]
    dirs += [a.path for a in actions if a.replaces_dir]
    for rel in sorted(dirs, key=lambda p: -p.count("/")):  # the deepest first
        below = bisect.bisect_left(now, rel + "0") - bisect.bisect_left(now, rel + "/")
        if index.pending_deletions_under(rel) > below:
            waiting.add(rel)
            if (at := bisect.bisect_left(now, rel)) < len(now) and now[at] == rel:
                del now[at]
    return [a for a in actions if not (a.op == DELETE or a.replaces_dir)
            or a.path not in waiting]


def _guard(index: Index, actions: list[Action],
           deleting: dict[str, tuple[FileEntry | None, list]],
           settled_deletions: Collection[str],
           inputs: Inputs) -> tuple[list[Action], HeldDeletions | None]:
    """The plan without the deletions the mass-deletion guard holds back, and those.

    The window holds a few tens of thousands of deletions at most: the guard counts
    every pending one of our live files (`Index.pending_deletions`), so a mass
    deletion larger than a window is still seen as what it is. That count reads every
    pending deletion of the folder (4 s at a million), so it is made only for a plan
    that deletes a file or a link: a directory is planned for deletion only once
    nothing below it waits for a deletion outside the plan (`_wait_for_moves`), so
    holding back a plan of directories alone would keep nothing but empty directories.
    The deletions this plan settled (`settled_deletions`) are not counted: its
    snapshot still sees them.
    """
    if inputs.allow_mass_delete:
        return actions, None
    approved = inputs.approved
    streaming = inputs.streaming
    if streaming:
        # A peer is halfway through sending its index (a first exchange, or thousands
        # of changes): judge its deletions once they are all here, not 1,000 at a time.
        # Only its own: the others' are judged now (a member that never finishes its
        # index must not hold every deletion of the share back for ever).
        later = {a.path for a in actions if a.op == DELETE and a.path not in approved
                 and streaming.intersection(a.sources)}
        actions = [a for a in actions if a.path not in later]
        deleting = {rel: v for rel, v in deleting.items() if rel not in later}
    if not any(a.op == DELETE and a.path not in approved and counted(deleting[a.path][0])
               for a in actions):
        return actions, None  # directories alone never trip the guard: see the docstring
    local = {rel: e for rel, (e, _) in deleting.items() if e is not None}
    return hold_mass_deletions(actions, local, index.live_file_count(), allowed=approved,
                               more=_beyond_window(index, actions, streaming, approved,
                                                   settled_deletions))


def _beyond_window(index: Index, actions: list[Action], streaming: Collection[str],
                   approved: Collection[str], settled_deletions: Collection[str]
                   ) -> dict[str, int]:
    """device -> its pending deletions of our live files that the plan does not hold."""
    planned = Counter(a.target.modified_by or (a.sources[0] if a.sources else "")
                      for a in actions if a.op == DELETE and a.path not in approved)
    pending = index.pending_deletions(exclude=streaming, skip=settled_deletions)
    return {device: n - planned[device] for device, n in pending.items()
            if n > planned[device]}
