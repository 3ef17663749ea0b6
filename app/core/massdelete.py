"""The mass-deletion guard: which deletions of a plan wait for a person to confirm them.

A device that loses its files (a buggy script, a disk that is not mounted, a folder
emptied by mistake) announces every one of them as deleted; without this guard every
other device would faithfully delete them too. So, before a plan runs: when it would
delete more than half of the folder's files, and more than MIN_DELETES of them, none
of its deletions run; they are held back until the user confirms (`--allow-mass-delete`,
or "Delete them" in the app) or keeps the files ("Keep them").

Pure decisions over planner Actions, no I/O: the node counts its live files and asks.
A deletion paired with a fetch of the same content is a move (the puller renames it),
not a loss, and does not count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from app.core.model import FileEntry, Kind
from app.core.planner import DELETE, FETCH, Action

MIN_DELETES = 10  # up to this many deletions always go through
THRESHOLD = "threshold"  # more than half of the files deleted elsewhere
UNMOUNTED = "unmounted"  # this folder lost its .p2psync marker and its files


@dataclass(frozen=True)
class HeldDeletions:
    """What is held back and why; `by` says whose deletions they are."""

    reason: str  # THRESHOLD or UNMOUNTED
    deletes: int  # files and links that would be deleted
    of: int  # live files and links the folder holds
    by: tuple[tuple[str, int], ...]  # (device ID, its deletions), most first
    paths: frozenset[str] = frozenset()  # every held path, directories too

    @property
    def device(self) -> str:
        """The device with the most of these deletions."""
        return self.by[0][0] if self.by else ""

    def key(self) -> tuple:
        """Equal for the same held deletions: report a change once, not every round.

        Not the file count: it moves whenever other files arrive. The number of held
        paths: a directory whose deletion arrived after its files' is held with them,
        and the app's list of what is held must show it too.
        """
        return (self.reason, self.by, len(self.paths))

    def as_json(self) -> dict:
        """The contract's `held_back` object of `sync --dry-run --json`."""
        return {"deletes": self.deletes, "of": self.of, "from": self.device}


def counted(e: FileEntry | None) -> bool:
    """A live file or link: what "the folder's files" counts (directories never trip
    the guard: emptied, they hold nothing to lose)."""
    return e is not None and not e.deleted and e.kind != Kind.DIR


def hold_mass_deletions(
    actions: list[Action],
    local: Mapping[str, FileEntry],
    live_files: int,
    *,
    allowed: Collection[str] = (),
    more: Mapping[str, int] | None = None,
) -> tuple[list[Action], HeldDeletions | None]:
    """Split a plan into what runs now and what is held back.

    `local`: this device's entries of (at least) the deleted paths; `live_files`: how
    many live files and links the folder holds; `allowed`: paths the user already
    confirmed for deletion (they run, and do not count); `more`: device -> deletions of
    our files it announced beyond the plan's (a plan is a window). Over the threshold every
    deletion of the plan is held, directories too (removing one whose files stay would
    only make it come back elsewhere), except the moves.
    """
    moved = Counter(a.target.hash for a in actions
                    if a.op == FETCH and not a.conflict_copy and a.target.size)
    held: list[Action] = []
    by: Counter[str] = Counter()
    for a in actions:
        if a.op != DELETE or a.path in allowed:
            continue
        mine = local.get(a.path)
        if mine is not None and mine.kind == Kind.FILE and mine.size and moved[mine.hash]:
            moved[mine.hash] -= 1  # a move: the content stays in the folder
            continue
        held.append(a)
        if counted(mine):
            by[a.target.modified_by or (a.sources[0] if a.sources else "")] += 1
    by.update(more or {})
    deletes = sum(by.values())
    if deletes <= MIN_DELETES or 2 * deletes <= live_files:
        return actions, None
    out = set(map(id, held))
    return ([a for a in actions if id(a) not in out],
            HeldDeletions(THRESHOLD, deletes, live_files, _ranked(by),
                          frozenset(a.path for a in held)))


def unmounted(missing: int, live_files: int, device: str) -> HeldDeletions:
    """This folder's own files, which a scan would record as deleted."""
    return HeldDeletions(UNMOUNTED, missing, live_files, ((device, missing),))


def _ranked(by: Counter[str]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(by.items(), key=lambda kv: (-kv[1], kv[0])))


def describe(held: HeldDeletions, name_of: Callable[[str], str]) -> str:
    """One sentence: how many files, of how many, from which device(s), nothing deleted.

    `name_of(device_id)` gives a device as people know it, e.g. "laptop (ABCDEFG)".
    """
    if held.reason == UNMOUNTED:
        return (f"the folder looks unmounted or emptied (its .p2psync marker is gone): "
                f"{held.deletes} of {held.of} files are missing on this device, "
                f"{name_of(held.device)}; nothing was deleted")
    (first, n), *rest = held.by
    whose = f"{n} of {held.of} files deleted on {name_of(first)}"
    whose += "".join(f" and {m} on {name_of(d)}" for d, m in rest)
    return f"held back a mass deletion: {whose}; nothing was deleted"
