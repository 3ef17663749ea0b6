"""The preview of "Sync now" (`sync --dry-run`, the app's Preview): what a sync would do.

Two halves, each from the same planner the node runs:

* our side: the node's assessment (renames paired, deletions that wait for moves, the
  mass-deletion guard), window after window of the index;
* each peer's side: what it would fetch from us, planned from its side, with its
  announced entry of each path as its local one and ours as the only remote. A path
  it holds exactly as ours (`remote_same`) plans to nothing and costs one row read.

Everything streams: steps are yielded a window (or a chunk of our index) at a time,
and only per-peer totals are kept, so a million files cost no more memory than ten.

A dry run changes nothing. `PreviewNode` works on a scratch copy of the index: the
peers' indexes are stored there, and its rows are settled there to move from one
window to the next. It never sends our index (so no peer changes anything either: it
cannot fetch, delete or conflict over what it has not heard of), pulls nothing, prunes
no versions, removes no temp file and makes no `.p2psync/` marker. What a peer has of
ours is known from what it announced back and from the `have` of its `start` message:
a deletion of ours it has not seen, with no entry of its own for that path, is taken
for one it would carry out (a path it never had cannot be told apart from that).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from app.core import marker, namerules
from app.core.apply import conflict_name
from app.core.hashing import zero_hash
from app.core.index import Index
from app.core.massdelete import MIN_DELETES, THRESHOLD, UNMOUNTED, HeldDeletions, unmounted
from app.core.model import BLOCK_SIZE, FileEntry, Kind
from app.core.paths import META_DIR
from app.core.planner import ADOPT, DELETE, FETCH, MKDIR, Action, plan_path
from app.engine.assessment import Assessment, Inputs, assess
from app.engine.node import NAME_RULES_KEY, Node, PeerState

PEER_BATCH = 2000  # our entries planned from a peer's side at a time
MOVE_REACH = 8  # how far apart (in seqs) the scanner may record the two halves of a move
_NEAR = [d for d in range(-MOVE_REACH, MOVE_REACH + 1) if d]
_REACH2 = range(-2 * MOVE_REACH, 2 * MOVE_REACH + 1)  # the halves' own halves too
COPY_TRIES = 5  # copies of an index that a running node keeps writing to
# the contract's actions (`sync --dry-run --json`)
ACTIONS = ("fetch", "send", "delete", "delete_on_peer", "rename", "conflict", "mkdir", "error")


@dataclass(frozen=True)
class Step:
    """One thing a sync would do to one path, with one peer."""

    path: str
    action: str  # one of ACTIONS
    peer: str  # device ID
    bytes: int = 0  # what would cross the network
    source: str | None = None  # rename: the old path
    copy: str | None = None  # conflict: the conflict copy's name
    why: str | None = None  # error
    on_peer: bool = False  # rename: the peer renames its copy (else this device does)

    @property
    def kind(self) -> str:
        """The action, told apart by side where the contract's name is the same."""
        return "rename_on_peer" if self.on_peer else self.action

    def as_json(self) -> dict:
        out: dict = {"path": self.path, "action": self.action, "peer": self.peer,
                     "bytes": self.bytes}
        for key, value in (("from", self.source), ("copy", self.copy), ("why", self.why)):
            if value is not None:
                out[key] = value
        if self.on_peer:
            out["on_peer"] = True
        return out


@dataclass
class Totals:
    """What one peer's steps add up to."""

    counts: Counter[str] = field(default_factory=Counter)  # action -> paths
    bytes: int = 0

    def add(self, step: Step) -> None:
        self.counts[step.kind] += 1
        self.bytes += step.bytes


@dataclass(frozen=True)
class PeerSide:
    """What we know of a peer's side: its name, and the seq of our index it has seen."""

    device: str
    name: str
    have: int


class Preview:
    """The steps of one preview; `steps()` runs in a worker thread (it reads the index).

    `totals`, `held` and `held_on_peer` are complete once `steps()` is exhausted (`held`
    from the first window on: the guard counts every pending deletion, beyond the window
    too).
    """

    def __init__(self, folder: Path, device_id: str, index: Index, inputs: Inputs,
                 peers: list[PeerSide], blocked: dict[str, str], *,
                 first: Assessment | None = None, held: HeldDeletions | None = None) -> None:
        self.folder = folder
        self.device_id = device_id
        self.index = index
        self.inputs = inputs
        self.peers = peers
        self.blocked = blocked
        self.held = held
        self.held_on_peer: dict[str, HeldDeletions] = {}  # device -> what its guard holds
        self._first = first  # the live node's assessment: one window, nothing settled
        self.totals: dict[str, Totals] = {p.device: Totals() for p in peers}

    def steps(self) -> Iterator[Step]:
        for step in self._all_steps():
            self.totals.setdefault(step.peer, Totals()).add(step)
            yield step

    def _all_steps(self) -> Iterator[Step]:
        if self.held is not None and self.held.reason == UNMOUNTED:
            return  # nothing is scanned, written or sent while the folder looks unmounted
        if self._first is not None:
            self.held = self.held or self._first.held
            yield from self._ours(self._first)
        else:
            yield from self._windows()
        for peer in self.peers:
            yield from self._theirs(peer)

    # --- our side ------------------------------------------------------------------
    def _windows(self) -> Iterator[Step]:
        """Window after window: each one's rows are settled in the (scratch) index once
        planned, so the next one moves on, as fetching them would in a real sync."""
        self.index.unsettle()  # plan every row, whatever earlier runs settled
        first, last = True, set()
        while True:
            result = assess(self.index, (), self.inputs)
            if first:
                self.held = self.held or result.held
                first = False
            elif self.held is not None:  # held once, held all along
                result.actions = [a for a in result.actions if a.op != DELETE]
            yield from self._ours(result)
            window = {a.path for a in result.actions} | result.deleting | \
                {a.path for pair in result.renames for a in pair}
            if result.held is not None:
                window |= result.held.paths
            if not window or window == last:
                return  # the rest planned to nothing, and assess settled it
            self.index.settle_paths(window)
            last = window

    def _ours(self, result: Assessment) -> Iterator[Step]:
        moved = set()
        for deletion, fetch in result.renames:
            moved.add(deletion.path)
            yield Step(fetch.path, "rename", self._peer_of(fetch), source=deletion.path)
        fetches = [a.target for a in result.actions if a.op == FETCH]
        here = self.index.find_blocks([h for t in fetches for h in t.block_hashes()])
        planned = set()
        for a in result.actions:
            planned.add(a.path)
            step = self._our_step(a, here)
            if step is not None:
                yield step
        if self.held is not None:
            return  # the deletions waiting for a move are held back with the rest
        for rel in sorted(result.deleting - planned - moved):  # they wait for a move
            yield Step(rel, "delete", self._deleted_by(rel))

    def _our_step(self, a: Action, here: Collection[bytes]) -> Step | None:
        peer = self._peer_of(a)
        if a.path in self.blocked:
            return Step(a.path, "error", peer, why=self.blocked[a.path])
        if a.op == ADOPT:
            return None
        size = _missing_bytes(a.target, here) if a.op == FETCH else 0
        if a.conflict_copy:
            mine = self.index.get(a.path)
            copy = conflict_name(a.path, mine.mtime_ns, mine.modified_by) if mine else None
            return Step(a.path, "conflict", peer, size, copy=copy)
        action = {DELETE: "delete", MKDIR: "mkdir"}.get(a.op, "fetch")
        return Step(a.path, action, peer, size)

    def _deleted_by(self, rel: str) -> str:
        remotes = self.index.remote_entries([rel]).get(rel, {})
        gone = [d for d, r in remotes.items() if r.deleted and d in self.inputs.peers]
        return (gone or list(remotes) or [""])[0]

    def _peer_of(self, a: Action) -> str:
        connected = [d for d in a.sources if d in self.inputs.peers]
        return (connected or a.sources or [a.target.modified_by])[0]

    # --- a peer's side --------------------------------------------------------------
    def _theirs(self, peer: PeerSide) -> Iterator[Step]:
        """Two passes: the first counts what its mass-deletion guard would weigh (its
        deletions of files, of how many files it holds), the second lists the steps."""
        count = _Count(live=self.index.remote_only_live(peer.device))
        for _ in self._their_steps(peer, count):
            pass
        held = count.held(self.device_id)
        if held is not None:
            self.held_on_peer[peer.device] = held
        for step in self._their_steps(peer):
            if held is None or step.action != "delete_on_peer":
                yield step

    def _their_steps(self, peer: PeerSide, count: _Count | None = None) -> Iterator[Step]:
        rows = self.index.iter_peer_view(peer.device)
        while batch := list(itertools.islice(rows, PEER_BATCH)):
            yield from self._their_batch(peer, batch, count or _Count())

    def _their_batch(self, peer: PeerSide, batch: list, count: _Count) -> Iterator[Step]:
        me = self.device_id
        unseen = [m for m, theirs, same in batch if _unseen(m, theirs, same, peer)]
        near = self.index.by_seq(peer.device, {m.seq + d for m in unseen for d in _REACH2})
        for mine, theirs, same in batch:
            count.see(mine, theirs, same, peer)
            if same or mine.error or self.inputs.ignore.matches(mine.path):
                continue
            if _unseen(mine, theirs, same, peer):
                moved = _moved(mine, near, peer)
                if moved is not None:  # it renames its copy: no bytes, no deletion
                    if not mine.deleted:
                        yield Step(mine.path, "rename", peer.device, source=moved,
                                   on_peer=True)
                    continue
            if theirs is None and mine.deleted:
                if mine.seq > peer.have:  # a deletion it has not seen yet
                    count.deletes += mine.kind != Kind.DIR
                    yield Step(mine.path, "delete_on_peer", peer.device)
                continue
            a = plan_path(theirs, {me: mine})
            if a is None or a.op == ADOPT:
                continue
            if a.op == DELETE:
                count.deletes += mine.kind != Kind.DIR
                yield Step(mine.path, "delete_on_peer", peer.device)
                continue
            size = _send_bytes(mine, theirs) if a.op == FETCH else 0
            if a.conflict_copy and theirs is not None:
                copy = conflict_name(mine.path, theirs.mtime_ns, theirs.modified_by)
                yield Step(mine.path, "conflict", peer.device, size, copy=copy)
            else:
                yield Step(mine.path, "send", peer.device, size)


@dataclass
class _Count:
    """What a peer's mass-deletion guard would weigh, as far as we know its folder."""

    live: int = 0  # files and links it holds
    deletes: int = 0  # of those, the ones it would delete

    def see(self, mine: FileEntry, theirs: FileEntry | None, same: bool,
            peer: PeerSide) -> None:
        if same:
            self.live += not mine.deleted and mine.kind != Kind.DIR
        elif theirs is not None:
            self.live += not theirs.deleted and theirs.kind != Kind.DIR
        elif mine.deleted and mine.seq > peer.have:  # it holds what we deleted since
            self.live += mine.kind != Kind.DIR

    def held(self, by: str) -> HeldDeletions | None:
        """The guard's own rule (app/core/massdelete.py) over these counts."""
        if self.deletes <= MIN_DELETES or 2 * self.deletes <= self.live:
            return None
        return HeldDeletions(THRESHOLD, self.deletes, self.live, ((by, self.deletes),))


def _unseen(mine: FileEntry, theirs: FileEntry | None, same: bool, peer: PeerSide) -> bool:
    """A file of ours the peer has neither seen nor announced anything of."""
    return theirs is None and not same and mine.seq > peer.have and mine.kind == Kind.FILE


def _moved(mine: FileEntry, near: dict, peer: PeerSide) -> str | None:
    """The other half of the move `mine` is half of, if it is one.

    The scanner records a move as a tombstone and the new path at nearby seqs (a new
    directory may come between) with the old mtime, the content unchanged. Each half
    takes the best other half (`_best_half`), and only halves that take each other
    pair: the same answer whichever half is asked about, so no two moves share a half.
    """
    other = _best_half(mine.seq, mine.deleted, mine.path, mine.mtime_ns, near, peer)
    if other is None:
        return None
    path = near[other][0]
    back = _best_half(other, not mine.deleted, path, mine.mtime_ns, near, peer)
    return path if back == mine.seq else None


def _best_half(seq: int, deleted: bool, path: str, mtime_ns: int, near: dict,
               peer: PeerSide) -> int | None:
    """The seq of the best other half for the entry at `seq`: the other liveness, a file of
    the same mtime, unseen by the peer; one of the same name first, then the nearest."""
    name = path.rpartition("/")[2]
    best = None
    for d in _NEAR:
        row = near.get(seq + d)
        if row is None or seq + d <= peer.have:
            continue
        other, other_deleted, kind, other_mtime, known = row
        if other_deleted == deleted or kind != int(Kind.FILE) or other_mtime != mtime_ns \
                or known:
            continue
        key = (other.rpartition("/")[2] != name, abs(d), seq + d)
        best = key if best is None else min(best, key)
    return best[2] if best is not None else None


def _send_bytes(mine: FileEntry, theirs: FileEntry | None) -> int:
    """Our file's bytes but its holes, and the blocks its own version of the path shares."""
    if theirs is None or theirs.deleted:
        return _missing_bytes(mine, ())
    if theirs.same_content(mine):
        return 0
    return _missing_bytes(mine, set(theirs.block_hashes()))


def _missing_bytes(target: FileEntry, here: Collection[bytes]) -> int:
    """The bytes of target's blocks that are neither `here` nor holes."""
    zero = zero_hash()
    return sum(min(BLOCK_SIZE, target.size - i * BLOCK_SIZE)
               for i, h in enumerate(target.block_hashes()) if h != zero and h not in here)


# --- the dry run's node ----------------------------------------------------------------
class PreviewNode(Node):
    """A node that looks and changes nothing (see the module docstring)."""

    def _open_index(self) -> Index:
        self.scratch = Path(tempfile.mkdtemp(prefix="preview-", dir=self.config.dir))
        copy = self.scratch / "index.db"
        try:
            if self.fpaths.db_path.exists():
                _copy_database(self.fpaths.db_path, copy)
            self.have: dict[str, int] = {}
            return Index(copy, self.device_id)
        except BaseException:  # no stop() will remove it (a full disk, say)
            shutil.rmtree(self.scratch, ignore_errors=True)
            raise

    def _empty_here(self) -> bool:
        return False  # nothing is put in place: no contents come with the peers' pages

    async def _send_index(self, peer: PeerState) -> None:
        self.have[peer.conn.device_id] = peer.sent_seq  # what it holds of ours: its `have`

    def _learn_names(self) -> None:
        """The rules the last real node found here (a probe writes in `.p2psync/`, and a
        dry run writes nothing); the OS defaults before any node ran."""
        try:
            saved = json.loads(self.index.get_meta(NAME_RULES_KEY) or "null")
        except ValueError:
            saved = None
        self.name_rules = self.puller.names = \
            namerules.os_default() if saved is None else namerules.from_wire(saved)

    async def _pull_loop(self) -> None:
        await asyncio.Future()  # nothing is fetched; stop() cancels this

    def _prune_versions(self, days: float) -> None:
        pass

    async def _cleanup_temps(self, actions: list[Action] | None = None) -> None:
        pass

    async def _check_folder(self) -> bool:
        """Like the node's, but without making the marker of a folder that has none."""
        if os.path.isdir(self.root / META_DIR):
            return True
        found = await asyncio.to_thread(marker.lost, self.root, self.index)
        if found is not None and self.opts.allow_mass_delete:
            found = None  # a sync would take the missing files for deleted: so does its preview
        self.unmounted = None if found is None else \
            unmounted(found.missing, found.live, self.device_id)
        return self.unmounted is None

    async def stop(self) -> None:
        try:
            await super().stop()
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def exchanged(self, devices: list[str]) -> bool:
        """Whether our first scan is done and we hold each peer's whole index."""
        if not self._first_scan_done():
            return False
        for device in devices:
            peer = self.peers.get(device)
            if peer is None or peer.last_state is None or peer.index_streaming \
                    or device not in self.have:
                return False
            if peer.last_state["seq"] > self.index.remote_state(device)[1]:
                return False
        return True

    def preview(self, devices: list[str]) -> Preview:
        """The preview of what a sync with these (connected) peers would do."""
        inputs = Inputs(frozenset(self.peers), frozenset(), self.ignore,
                        frozenset(self.blocked), frozenset(), self.opts.allow_mass_delete)
        sides = [PeerSide(d, self.peers[d].conn.info.name, self.have.get(d, 0))
                 for d in devices if d in self.peers]
        return Preview(self.root, self.device_id, self.index, inputs, sides,
                       dict(self.blocked), held=self.unmounted)


def _copy_database(src: Path, dst: Path) -> None:
    """Byte copies of the index and its WAL, never opened in SQLite here: even a read-only
    connection leaves -wal and -shm files behind. Copied again if a node running for the
    folder wrote to them meanwhile."""
    for _ in range(COPY_TRIES):
        before = _stamps(src)
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                shutil.copyfile(f"{src}{suffix}", f"{dst}{suffix}")
        if _stamps(src) == before:
            return


def _stamps(db: Path) -> list[tuple[int, int] | None]:
    out: list[tuple[int, int] | None] = []
    for suffix in ("", "-wal"):
        try:
            st = os.stat(f"{db}{suffix}")
            out.append((st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            out.append(None)
    return out


async def live_preview(node: Node) -> Preview:
    """The preview of the app's running node: a fresh plan of its window (its own may be
    spent by a round that just ran) and what its connected peers would fetch from us,
    as far as they told us (`seen`: the seq of our index each has read)."""
    streaming = frozenset(d for d, p in node.peers.items() if p.index_streaming)
    inputs = Inputs(frozenset(node.peers), streaming, node.ignore, frozenset(node.blocked),
                    frozenset(), node.opts.allow_mass_delete)
    first = await asyncio.to_thread(assess, node.index, (), inputs)
    sides = [PeerSide(d, p.conn.info.name, p.last_state["seen"] if p.last_state else 0)
             for d, p in node.peers.items()]
    return Preview(node.root, node.device_id, node.index, inputs, sides, dict(node.blocked),
                   first=first, held=node.unmounted)
