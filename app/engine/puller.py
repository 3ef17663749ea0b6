"""Carrying out the planner's actions: fetch, rename, delete, mkdir, link, adopt.

A file is built in a temp file beside its final path from blocks found anywhere:
the temp file of an interrupted transfer (resume), any local file that holds the
block (so renames and copies move nothing), and only then the peers. Every block is
checked against its hash; the finished file is chmod-ed, dated, and renamed into
place, after the old content went to `.p2psync/versions/`. Blocks of large files are
written with O_DIRECT where the file system allows it: a copy nobody reads soon
should not cost page-cache pages. Disk-changing steps run
under the node's disk lock, so a scan never sees half of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import mmap
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from app.aio import opened_in_thread
from app.core import (
    apply,
    batchwrite,
    cannotwrite,
    diskio,
    hashing,
    holes,
    modes,
    namerules,
    paths,
    platform,
)
from app.core.dirfds import DirFds
from app.core.index import Index
from app.core.model import BLOCK_SIZE, FileEntry, Kind
from app.core.planner import ADOPT, DELETE, FETCH, LINK, META, MKDIR, Action
from app.core.versions import bump, merge
from app.engine.linkfetch import Fetcher, FetchJob
from app.errors import without_traceback

log = logging.getLogger(__name__)
T = TypeVar("T")

FILE_CONCURRENCY = 256
WINDOW_BLOCKS = 64  # blocks in flight per file (8 MiB)
MAX_INFLIGHT_BLOCKS = 256  # over all files: at most 32 MiB of requested data in flight
COMMIT_BATCH = 500
OFFLOOP_WRITES = 1024 * 1024  # files larger than this verify and write in a thread, O_DIRECT
DIRECT_RUN = 16  # whole blocks per O_DIRECT write at most (2 MiB)
SMALL_BATCH_FILES = 1000  # files of at most one block are fetched and written in batches
SMALL_BATCH_BYTES = 2 * 1024 * 1024
SMALL_BATCHES_IN_FLIGHT = 4  # one being written while the next ones arrive
LINKED_MIN = 2 * 1024 * 1024  # a file missing this much comes over data links (where there are any)
RENAME_BATCH = 1000  # moves carried out (and indexed) in one step of the writer thread
MKDIR_BATCH = 1000  # directories made in one step of the writer thread
BATCH_DIRS = 64  # directories one batch works in (a descriptor each, two batches at once)
WRONG_KEPT = 4096  # block hashes remembered per connection that sent wrong bytes for them


class NoSource(Exception):
    """No connected peer could give a block we need."""


@dataclass
class RoundResult:
    done: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # path -> why, this round
    # the failures that will not go away by themselves (no space, a name refused...)
    blocked: dict[str, str] = field(default_factory=dict)
    waiting: int = 0  # actions that need a peer that is not connected
    bytes_fetched: int = 0
    bytes_reused: int = 0


class Puller:
    def __init__(
        self,
        root: Path,
        index: Index,
        disk_lock: asyncio.Lock,
        connections: Callable[[], dict],
        request_rescan: Callable[[str], None],
        emit: Callable[[str, dict], None],
    ) -> None:
        self.root = root
        self.index = index
        self.lock = disk_lock
        self.connections = connections  # device_id -> PeerConnection (connected now)
        self.request_rescan = request_rescan
        self.emit = emit
        self.in_progress: dict[str, tuple[int, int]] = {}  # path -> (bytes done, size)
        self._pending: list[FileEntry] = []  # applied on disk, index write batched
        self._slots = asyncio.Semaphore(MAX_INFLIGHT_BLOCKS)
        # Two: one block's hash runs while the other's write waits in the kernel.
        self._writer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="p2psync-write")
        self._reported: dict[str, str] = {}  # path -> the failure last logged
        self.temps: set[str] = set()  # temp files this puller made and did not finish
        self.active: set[str] = set()  # temp files of transfers running now: never removed
        self._promised = 0  # bytes of files being written now, not on the disk yet
        self._holes: bool | None = None  # whether the file system keeps holes (_holes_here)
        self.on_indexed: Callable[[], None] = lambda: None  # entries went into the index
        # device -> the data links to fetch from it over (app/engine/linkfetch.py), if any
        self.links_for: Callable[[str], Fetcher | None] = lambda device: None
        self.names = namerules.LINUX  # the names this folder holds (the node probes them)
        self._asked_as: dict[str, str] = {}  # a case twin's copy -> the peer's path of it
        # device -> (its connection, the hashes of blocks it sent wrong bytes for): never
        # asked of it again while that connection lasts (a round's own memory ends with
        # the round, and the next one resumes the temp file, which lacks just those)
        self._sent_wrong: dict[str, tuple[object, set[bytes]]] = {}

    # --- index writes, batched ----------------------------------------------------------
    def _commit(self, *entries: FileEntry) -> None:
        """Record what is now on disk; written in batches (call under the disk lock):
        `_run_one` writes them once there are COMMIT_BATCH, `run_round` at its end."""
        self._pending.extend(entries)

    async def _flush_if_full(self) -> None:
        """The pending entries into the index once there are COMMIT_BATCH, on the writer
        thread: a COMMIT waits for the disk, and on the loop it stalled it 100-136 ms."""
        if len(self._pending) >= COMMIT_BATCH:
            await self._on_writer(self.flush)

    def flush(self) -> None:
        """Write pending entries; the node calls this before any scan (under the lock)."""
        if self._pending:
            batch, self._pending = self._pending, []
            try:
                self.index.put_local(batch)
            except BaseException:
                self._pending = batch + self._pending  # on disk already: record them later
                raise

    def close(self) -> None:
        try:
            self.flush()
        except (OSError, sqlite3.Error) as e:  # the index on a full disk: the files are
            # in place, and the next scan records them
            log.warning("could not record %d file(s) put in place: %s (the next scan "
                        "will)", len(self._pending), e)
        finally:
            self._writer.shutdown(wait=True)

    # --- a round -------------------------------------------------------------------
    async def run_round(self, actions: list[Action],
                        renames: list[tuple[Action, Action]] = ()) -> RoundResult:
        """Carry out a plan: `renames` are (deletion, fetch) pairs of one content, moves."""
        result = RoundResult()
        rest, renames = self._screen_plan(actions, renames, result)
        adopts = sorted((a for a in rest if a.op == ADOPT), key=lambda a: a.path)
        mkdirs = sorted((a for a in rest if a.op == MKDIR), key=lambda a: a.path)  # parents first
        small, files = [], []
        over_dirs = [a for a in rest if a.replaces_dir]  # once the deletions inside ran
        for a in rest:
            if a.replaces_dir:
                continue
            if a.op == FETCH and not a.conflict_copy and a.target.size <= BLOCK_SIZE:
                small.append(a)
            elif a.op in (FETCH, LINK, META):
                files.append(a)
        deletes = sorted((a for a in rest if a.op == DELETE),
                         key=lambda a: (a.target.kind == Kind.DIR, -a.path.count("/"), a.path))
        await self._run_in_turn(adopts, result)
        await self._run_mkdirs(mkdirs, result)
        await self._run_renames(renames, result)
        sem = asyncio.Semaphore(FILE_CONCURRENCY)

        async def limited(a: Action) -> None:
            async with sem:
                await self._run_one(a, result)

        await asyncio.gather(self._fetch_small_files(small, result),
                             *(limited(a) for a in files))
        await self._run_in_turn(deletes, result)
        await self._run_in_turn(over_dirs, result)
        await self._on_writer(self.flush)  # a COMMIT on the loop stalled it 105 ms
        return result

    async def _on_writer(self, fn: Callable[..., T], *args: object) -> T:
        """fn(*args) on the writer thread, under the disk lock; cancelled, it still waits
        for fn to finish, so that the lock is kept until the disk work is done."""
        async with self.lock:
            return await _until_done(self._writer, fn, *args)

    async def _run_in_turn(self, actions: list[Action], result: RoundResult) -> None:
        """One after the other, giving the loop a turn after each: a step takes the disk
        lock, which does not yield when free, and 10,000 directories removed in a row
        blocked the loop for 14 s (the peer dropped us for not answering)."""
        for a in actions:
            await self._run_one(a, result)
            await asyncio.sleep(0)

    async def _run_one(self, a: Action, result: RoundResult) -> None:
        try:
            if a.op == FETCH and not self._live_sources(a) and \
                    not await asyncio.to_thread(self._all_local, a):
                result.waiting += 1
                return
            if not (a.replaces_dir and await self._on_writer(self._kept_dir, a)):
                await getattr(self, f"_do_{a.op}")(a, result)
            result.done += 1
        except Exception as e:  # noqa: BLE001 - one file's failure must not end the round
            self._failed_unexpectedly(a, e, result)
        finally:
            self.in_progress.pop(a.path, None)
        await self._flush_if_full()

    def _failed_unexpectedly(self, a: Action, e: Exception, result: RoundResult) -> None:
        """`_failed`, with the traceback logged where e is none of the failures a round
        expects (a bug, not a disk that changed or a peer that left)."""
        if not isinstance(e, apply.DiskChanged | NoSource | OSError | paths.BadPath
                          | ValueError | sqlite3.Error):  # (the index on a full disk)
            log.exception("unexpected failure syncing %s", a.path, exc_info=e)
        self._failed(a, e, result)

    def _failed(self, a: Action, e: Exception, result: RoundResult) -> None:
        if isinstance(e, apply.DiskChanged):
            self._changed_on_disk(a.path, result)
        elif isinstance(e, NoSource):
            result.waiting += 1
            log.debug("%s: %s", a.path, e)
        else:
            if diskio.is_no_space(e) and not isinstance(e, diskio.NoSpace):
                e = diskio.refused(self.root, a.target.size, self._room(), e)  # as users need it
            self._blocked(a.path, self._reason(e, a.path), result)

    def _changed_on_disk(self, rel: str, result: RoundResult) -> None:
        """A path that is not as the index says: rescan it, unless what is there is
        something the scanner never indexes (a FIFO...): then it is blocked, not
        retried for ever."""
        in_the_way = cannotwrite.in_the_way(self.root, rel)
        if in_the_way is not None:
            self._blocked(rel, in_the_way, result)
            return
        self.request_rescan(rel)
        result.failed[rel] = "changed on disk meanwhile; rescanning"

    @staticmethod
    def _reason(e: Exception, rel: str) -> str:
        """What a user reads (status, `sync`'s exit 5, the peers' state messages)."""
        if isinstance(e, OSError) and not isinstance(e, diskio.NoSpace) and e.errno:
            return cannotwrite.reason(e, rel)
        return str(e)[:cannotwrite.MAX_CHARS]

    def _blocked(self, rel: str, why: str, result: RoundResult) -> None:
        result.failed[rel] = result.blocked[rel] = why
        if self._reported.get(rel) != why:  # say it once, not at every retry
            self._reported[rel] = why
            log.warning("could not sync %s: %s", rel, why)
            self.emit("error", {"path": rel, "reason": why})

    # --- names this device cannot hold (app/core/namerules.py) ------------------------
    def _screen_plan(self, actions: list[Action], renames: list[tuple[Action, Action]],
                     result: RoundResult) -> tuple[list[Action], list[tuple[Action, Action]]]:
        """`_screen_names` over the plan and both halves of its moves: a move whose new
        name cannot be here (or must wait) is its deletion alone, as without the move."""
        if not self.names.strict and self.names.case_sensitive:
            return actions, list(renames)
        kept = self._screen_names([*actions, *(a for pair in renames for a in pair)], result)
        ids = {id(a) for a in kept}
        moves = [(old, new) for old, new in renames if id(old) in ids and id(new) in ids]
        paired = {id(a) for pair in moves for a in pair}
        return [a for a in kept if id(a) not in paired], moves

    def _screen_names(self, actions: list[Action], result: RoundResult) -> list[Action]:
        """The plan without what this device cannot hold, which becomes an error here.

        Never fetched, and not retried every few seconds (blocked, not failed): the
        path is planned again when its entry changes. A file whose name only differs
        in case from one we hold comes in as a conflict copy beside it instead.
        """
        if not self.names.strict and self.names.case_sensitive:
            return actions
        self._asked_as.clear()
        made = {a.path for a in actions if a.op in (FETCH, MKDIR, LINK) and not a.target.deleted}
        local = self.index.get_many(list(made))

        def creates(a: Action) -> bool:
            mine = local.get(a.path)
            return a.path in made and (mine is None or mine.deleted)

        screened = namerules.screen(self.names, actions, creates, self._held_keys)
        for path, why in screened.refused.items():
            self._refuse(path, why, result)
        kept = screened.actions
        twins = {a.path: a for a in actions if a.path in screened.twins}
        for path, holder in screened.twins.items():
            copy = self._twin_copy(twins[path], holder, result)
            if copy is not None:
                kept.append(copy)
        result.waiting += screened.later
        return kept

    def _held_keys(self, paths: list[str]) -> dict[str, str]:
        """key -> our live path under that name, for these paths (a plan's worth, looked
        up by case in the index: never the whole folder)."""
        return {self.names.key(rel): rel
                for rel, deleted in self.index.case_variants(namerules.case_forms(paths))
                if not deleted}

    def _twin_copy(self, a: Action, holder: str, result: RoundResult) -> Action | None:
        """The fetch of a case twin's content into its conflict copy (None: kept already).

        A copy someone deleted (the conflict resolved on a device that holds both
        names) is not made again: that version stays where it is, an error here.
        """
        copy = apply.conflict_name(a.path, a.target.mtime_ns,
                                   a.target.modified_by or self.index.device_id)
        mine = self.index.get(copy)
        if mine is not None and mine.deleted:
            self._refuse(a.path, f"same name here as {holder!r} (this device ignores case)",
                         result)
            return None
        kept = mine is not None and not mine.deleted and mine.hash == a.target.hash
        if not kept:
            copy = self._free_conflict_name(a.path, a.target)
        self._refuse(a.path, f"same name here as {holder!r} (this device ignores case); "
                     f"its content is kept as {copy!r}", result)
        if kept:
            return None
        self._asked_as[copy] = a.path
        target = replace(a.target, path=copy, version=self._fresh_version(copy),
                         modified_by=self.index.device_id)
        return Action(FETCH, copy, target, a.sources)

    def _asked(self, a: Action) -> str:
        """The path to ask the peers for: a twin's copy is their file under its own name."""
        return self._asked_as.get(a.path, a.path)

    def _refuse(self, path: str, why: str, result: RoundResult) -> None:
        result.blocked[path] = why
        if self._reported.get(path) != why:  # say it once, not at every round
            self._reported[path] = why
            log.warning("cannot sync %s here: %s", path, why)
            self.emit("error", {"path": path, "reason": why})

    # --- renames ---------------------------------------------------------------------
    async def _run_renames(self, pairs: list[tuple[Action, Action]], result: RoundResult
                           ) -> None:
        """Carry out the moves, a batch at a time on the writer thread (no data moves)."""
        for chunk in _batches(pairs, key=lambda pair: (pair[0].path, pair[1].path), size=None,
                              files=RENAME_BATCH):
            outcomes = await self._on_writer(self._rename_many, chunk)
            self.on_indexed()
            for (old, new), out in zip(chunk, outcomes, strict=True):
                if out is None:
                    result.done += 2
                    self.emit("renamed", {"from": old.path, "to": new.path})
                elif isinstance(out, apply.DiskChanged):
                    log.debug("move of %s to %s: not as indexed (%s); rescanning",
                              old.path, new.path, out or type(out).__name__)
                    self.request_rescan(old.path)
                    self._changed_on_disk(new.path, result)
                else:
                    self._blocked(new.path, self._reason(out, new.path), result)

    def _rename_many(self, pairs: list[tuple[Action, Action]]) -> list[Exception | None]:
        """On the writer thread, under the disk lock: each old file to its new name, then
        both entries in one index write. Per pair: None, or why it was not moved.

        Relative to directory descriptors (each directory resolved once, no link
        followed), a hard link to the new name (which never replaces anything there)
        and the old name's unlink: a few system calls per file.
        """
        self.flush()  # what the index says is on disk, before it is checked
        local = self.index.get_many([old.path for old, _ in pairs])
        entries: list[FileEntry] = []
        out: list[Exception | None] = []
        with DirFds(self.root, create=False) as olds, DirFds(self.root, create=True) as news:
            for old, new in pairs:
                try:
                    mine = local.get(old.path)
                    apply.check_planned(mine, old.target.version)
                    # as the disk spells them (a name stored NFD): one lstat, beyond ASCII
                    odir, _, oname = paths.on_disk(self.root, old.path).rpartition("/")
                    ndir, _, nname = paths.on_disk(self.root, new.path).rpartition("/")
                    try:
                        ofd = olds.open(odir)
                    except FileNotFoundError:  # moved or removed here since it was indexed
                        raise apply.DiskChanged("the old name's directory is gone") from None
                    if mine is None or not apply.stat_matches(mine, platform.stat_in(ofd, oname)):
                        raise apply.DiskChanged("the old name is not as indexed")
                    nfd = news.open(ndir)
                    try:
                        platform.move_between(ofd, oname, nfd, nname)
                    except FileExistsError:
                        raise apply.DiskChanged("the new name is taken") from None
                    mode = modes.file_mode(new.target.mode, mine.mode)
                    st = platform.stat_in(nfd, nname)
                    if st is None:
                        raise apply.DiskChanged
                    if (st.st_mode & 0o777, st.st_mtime_ns) != (mode, new.target.mtime_ns):
                        fd = platform.open_in(nfd, nname, os.O_RDONLY)
                        try:
                            platform.set_mode_in(nfd, nname, fd, mode)
                            platform.set_times_in(nfd, nname, fd, new.target.mtime_ns)
                            st = os.fstat(fd)
                        finally:
                            os.close(fd)
                    entries += [new.target.recorded(st.st_ino, st.st_ctime_ns,
                                                    _mode_kept(st)),
                                old.target.recorded()]
                    out.append(None)
                except (apply.DiskChanged, OSError, paths.BadPath) as e:
                    out.append(without_traceback(e))
        self.index.put_local(entries)
        return out

    def _planned_local(self, a: Action) -> FileEntry | None:
        """The index's entry at a's path, if it is still the one a was planned against
        (`apply.check_planned`); the caller holds the disk lock."""
        local = self.index.get(a.path)
        apply.check_planned(local, a.target.version)
        return local

    # --- simple operations -----------------------------------------------------------
    async def _do_adopt(self, a: Action, result: RoundResult) -> None:
        async with self.lock:
            local = self._planned_local(a)
            if not apply.matches_disk(self.root, local, a.path) and not (
                    local is not None and not local.deleted):
                raise apply.DiskChanged
            self._commit(a.target.recorded())

    # mkdir, chmod, rmdir and the archive's rename wait for the file system's journal:
    # on the writer thread, not the loop (a renamed million's mkdirs held it 136 ms)
    async def _run_mkdirs(self, actions: list[Action], result: RoundResult) -> None:
        """A round's directories (in path order: parents first), MKDIR_BATCH at a time
        on the writer thread. One at a time, each waited for the writer thread and the
        disk lock: a first sync of 100,000 tiny files spent 0.9 s of its 12 s making its
        1,000 directories, with nothing fetched meanwhile."""
        for i in range(0, len(actions), MKDIR_BATCH):
            chunk = actions[i:i + MKDIR_BATCH]
            outcomes = await self._on_writer(self._mkdir_many, chunk)
            for a, out in zip(chunk, outcomes, strict=True):
                if out is None:
                    result.done += 1
                else:
                    self._failed_unexpectedly(a, out, result)
            await self._flush_if_full()

    def _mkdir_many(self, actions: list[Action]) -> list[Exception | None]:
        """On the writer thread, under the disk lock: per directory, None or why not."""
        out: list[Exception | None] = []
        for a in actions:
            try:
                self._mkdir(a)
                out.append(None)
            except Exception as e:  # noqa: BLE001 - one directory's failure is its own
                # (a bug's exception keeps its traceback: it is logged whole)
                out.append(without_traceback(e) if isinstance(e, OSError) else e)
        return out

    def _mkdir(self, a: Action) -> None:
        local = self._planned_local(a)
        full = paths.safe_join(self.root, a.path)
        if a.conflict_copy:
            self._keep_conflict_copy(local, a.path, a.target.modified_by)
        elif not os.path.isdir(full) and not apply.matches_disk(self.root, local, a.path):
            raise apply.DiskChanged
        if os.path.lexists(full) and not stat.S_ISDIR(os.lstat(full).st_mode):
            self._archive_live(local, a.path, a.target.modified_by)
        apply.ensure_dirs(self.root, a.path)  # this device's default mode, never the peer's
        self._commit(a.target.recorded(*_on_disk(full)))

    async def _do_meta(self, a: Action, result: RoundResult) -> None:
        await self._on_writer(self._meta, a)

    def _meta(self, a: Action) -> None:
        local = self._planned_local(a)
        if not apply.matches_disk(self.root, local, a.path):
            raise apply.DiskChanged
        full = paths.safe_join(self.root, a.path)
        apply.set_meta(full, modes.file_mode(a.target.mode, local.mode), a.target.mtime_ns)
        self._commit(a.target.recorded(*_on_disk(full)))

    async def _do_delete(self, a: Action, result: RoundResult) -> None:
        if await self._on_writer(self._delete, a):
            self.emit("deleted", {"path": a.path})

    def _delete(self, a: Action) -> bool:
        """False: a directory kept, holding files the deleting side never saw."""
        local = self._planned_local(a)
        full = paths.safe_join(self.root, a.path)
        if not apply.matches_disk(self.root, local, a.path):
            raise apply.DiskChanged
        if local.kind == Kind.DIR:
            try:
                os.rmdir(full)
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                self._keep_dir(local, a)
                return False
        else:
            apply.archive(self.root, a.path, by=a.target.modified_by)
        self._commit(a.target.recorded())
        return True

    def _kept_dir(self, a: Action) -> bool:
        """Whether our directory stays where a peer put a file or a link (`replaces_dir`):
        it does while it holds anything, as a deleted directory does (`_delete`). The
        deletions planned inside it ran before (`run_round`), and those pending outside
        the plan made it wait (`assessment._wait_for_moves`), so what is left is what
        that peer never saw: its own user's new files, here. Replaced, they made the
        action fail for ever, "directory not empty", and the devices never agreed
        (found by scripts/fuzz_live.py --nodes 3). The file or link that loses the
        place is kept on the devices that had it, in their versions folders."""
        local = self._planned_local(a)
        if local is None or local.deleted or local.kind != Kind.DIR:
            return False
        if not apply.matches_disk(self.root, local, a.path):
            raise apply.DiskChanged
        with os.scandir(paths.safe_join(self.root, a.path)) as entries:
            if next(entries, None) is None:
                return False
        self._keep_dir(local, a)
        log.info("kept %s: a directory that holds files %s never saw", a.path,
                 a.target.modified_by[:7] or "the peer")
        return True

    def _keep_dir(self, local: FileEntry, a: Action) -> None:
        """Our directory stays, under a version that beats a's, so the peers bring it
        back too."""
        kept = merge(local.version, a.target.version)
        self._commit(replace(local, version=bump(kept, self.index.device_id),
                             modified_by=self.index.device_id))

    async def _do_link(self, a: Action, result: RoundResult) -> None:
        if paths.link_escapes(a.path, a.target.target):
            raise paths.BadPath("link leads outside the folder")
        async with self.lock:
            local = self._planned_local(a)
            full = paths.safe_join(self.root, a.path)
            apply.ensure_dirs(self.root, a.path.rpartition("/")[0])
            tmp = paths.safe_join(self.root, paths.temp_name_for(a.path, a.target.hash))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            platform.symlink(a.target.target, tmp)
            try:
                self._make_room(local, a)
                platform.replace(tmp, full)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            with contextlib.suppress(OSError, NotImplementedError):
                os.utime(full, ns=(a.target.mtime_ns, a.target.mtime_ns), follow_symlinks=False)
            self._commit(a.target.recorded(*_on_disk(full)))

    # --- fetching a file -------------------------------------------------------------
    async def _do_fetch(self, a: Action, result: RoundResult) -> None:
        target = a.target
        _check_blocks(target)
        if target.size <= BLOCK_SIZE:
            await self._fetch_small(a, result)
            return
        full = paths.safe_join(self.root, a.path)
        async with self.lock:
            apply.ensure_dirs(self.root, a.path.rpartition("/")[0])
        tmp_rel = paths.temp_name_for(a.path, target.hash)
        tmp = paths.safe_join(self.root, tmp_rel)
        # which blocks are holes, once for the whole transfer (a worker thread: a look at
        # each of its blocks); what the file takes here is the rest
        zero = await asyncio.to_thread(_zero_blocks, target)
        data = _data_bytes(target, zero)

        def open_temp() -> tuple[int, bool]:
            """In a worker thread: a file made while another is flushed waited 106 ms."""
            if not os.path.lexists(tmp):  # a file that cannot fit leaves not even a temp
                diskio.check_space(self.root, data, self._promised)
            return _open_temp(tmp)

        fd, existed = await opened_in_thread(None, open_temp, lambda opened: os.close(opened[0]))
        self.temps.add(tmp_rel)  # kept for a resume while wanted (Node._cleanup_temps)
        self.active.add(tmp_rel)
        try:
            st = os.fstat(fd)
            needed = data if self._holes_here(fd, existed) else target.size
            with self._space_for(needed - platform.disk_bytes(st)):
                if existed and st.st_size > target.size:
                    os.ftruncate(fd, target.size)  # a new file is as long as its blocks
                sources = await self._fill(fd, a, existed, result, zero)
                await asyncio.to_thread(_finish_temp, fd, target, a.path, zero)
        except OSError as e:
            if diskio.is_no_space(e):  # give the space back; a resume is worth less
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                self.temps.discard(tmp_rel)
            raise
        finally:
            os.close(fd)
            self.active.discard(tmp_rel)
        async with self.lock:
            self._put_in_place(a, tmp, full)  # on failure the temp stays, for a resume
            self.temps.discard(tmp_rel)
        self.emit("fetched", {"path": a.path, "size": target.size, "from": ", ".join(sources)})

    def _holes_here(self, fd: int, existed: bool) -> bool:
        """Whether this folder's file system leaves a file's holes unallocated.

        Then a file's zero blocks cost no space here; where it does not (FAT, exFAT),
        a write past a gap fills the gap, so the whole size must fit. Found out once,
        on a new temp file: one that grows by 1 MiB without a block allocated.
        """
        if self._holes is None and not existed:
            os.ftruncate(fd, 1024 * 1024)
            self._holes = platform.allocated(os.fstat(fd)) == 0
            os.ftruncate(fd, 0)
        return bool(self._holes)

    def _put_in_place(self, a: Action, tmp: Path, full: Path) -> None:
        """Move a finished temp file to its final path (the caller holds the disk lock)."""
        local = self._planned_local(a)
        self._make_room(local, a)
        apply.set_meta(tmp, modes.file_mode(a.target.mode, _file_mode(local)),
                       a.target.mtime_ns)
        platform.replace(tmp, full)
        self._commit(a.target.recorded(*_on_disk(full)))

    async def _fetch_small(self, a: Action, result: RoundResult) -> None:
        """A file of at most one block, alone: one that keeps a conflict copy, or a retry.

        Every other small file goes through the batches (`_fetch_small_files`). Here the
        bytes come first, from any peer that has them, then one locked step does the
        disk work (dirs, temp file, conflict copy or archive, rename, index).
        """
        target = a.target
        data, source = b"", ""
        if target.size:
            h = target.blocks
            data = self._local_block(a.path, h, target.size)
            if data is None:
                data, source = await self._request_one(a, h, target.size)
                result.bytes_fetched += len(data)
            else:
                result.bytes_reused += len(data)
        full = paths.safe_join(self.root, a.path)
        async with self.lock:
            diskio.check_space(self.root, len(data), self._promised)
            apply.ensure_dirs(self.root, a.path.rpartition("/")[0])
            tmp_rel = paths.temp_name_for(a.path, target.hash)
            tmp = paths.safe_join(self.root, tmp_rel)
            fd, existed = _open_temp(tmp)
            try:
                try:
                    if existed:
                        os.ftruncate(fd, 0)
                    diskio.write_all(fd, data, 0)
                    diskio.flush_data(fd)
                finally:
                    os.close(fd)
                self._put_in_place(a, tmp, full)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)  # nothing worth resuming in one block
                raise
        self.emit("fetched", {"path": a.path, "size": target.size, "from": source})

    # --- small files in batches ----------------------------------------------------
    async def _fetch_small_files(self, actions: list[Action], result: RoundResult) -> None:
        """New or changed files of at most one block, without a conflict copy to keep.

        In batches: one index query and one request frame per batch, and all of a
        batch's disk work in one call on the writer thread, so per-file overhead is
        small and the loop keeps receiving while the disk works. A file whose
        batched request failed is retried alone, from every peer that has it.
        """
        slots = asyncio.Semaphore(SMALL_BATCHES_IN_FLIGHT)

        async def one(batch: list[Action]) -> None:
            try:
                async with slots:
                    retry = await self._small_batch(batch, result)
            except Exception as e:  # noqa: BLE001 - the other batches go on
                if isinstance(e, OSError | sqlite3.Error):  # a full disk: each file says so
                    log.debug("a batch of small files failed: %s", e)
                else:
                    log.exception("a batch of small files failed")
                for a in batch:
                    self._failed(a, e, result)
                return
            for a in retry:
                await self._run_one(a, result)

        await asyncio.gather(*(one(b) for b in _batches(actions)))

    async def _small_batch(self, batch: list[Action], result: RoundResult) -> list[Action]:
        """Fetch and write one batch; returns the actions to retry one by one."""
        well_formed = []
        for a in batch:
            try:
                paths.validate(a.path)
                _check_blocks(a.target)
            except (paths.BadPath, ValueError) as e:
                self._failed(a, e, result)
                continue
            well_formed.append(a)
        have = await asyncio.to_thread(self._local_copies, well_formed)
        ready: list[tuple[Action, bytes, str]] = []  # (action, content, the peer it came from)
        asked: list[tuple[Action, asyncio.Future, str]] = []
        room = self._room()  # never fetch what could not be written
        for a in well_formed:
            target = a.target
            if not target.size:
                ready.append((a, b"", ""))
                continue
            data = have.get(a.path)
            if data is not None:
                ready.append((a, data, ""))
                result.bytes_reused += len(data)
                continue
            sources = [c for c in self._live_sources(a) if self._may_ask(c, target.blocks)]
            if not sources:
                result.waiting += 1
                continue
            if target.size > room:
                self._failed(a, diskio.NoSpace(target.size, room), result)
                continue
            room -= target.size
            conn = sources[len(asked) % len(sources)]
            asked.append((a, conn.request_block(self._asked(a), 0, target.size, target.blocks),
                          conn.info.name))
        retry = []
        for a, fut, name in asked:
            data = await fut
            if data is not None and len(data) == a.target.size:
                ready.append((a, data, name))
            else:
                retry.append(a)
        if ready:
            retry += await self._write_small(ready, result)
        return retry

    def _local_copies(self, batch: list[Action]) -> dict[str, bytes]:
        """path -> its wanted content where a file here holds it (verified), in a worker
        thread: a batch's index reads let go of the GIL at every row, and on the loop
        each could wait for a busy writer thread's switch interval."""
        local = self.index.get_many([a.path for a in batch])
        found = self.index.find_blocks([a.target.blocks for a in batch if a.target.size])
        have = {}
        for a in batch:
            target = a.target
            if not target.size:
                continue
            where = _own_copy(a.path, local.get(a.path), target.blocks) or \
                found.get(target.blocks)
            data = self._read_verified(where, target.size, target.blocks)
            if data is not None:
                have[a.path] = data
        return have

    async def _write_small(self, ready: list[tuple[Action, bytes, str]],
                           result: RoundResult) -> list[Action]:
        """Write a batch; returns the actions whose bytes failed their hash check."""
        outcomes = await self._stage_and_publish(ready)
        retry = []
        for (a, data, source), out in zip(ready, outcomes, strict=True):
            if isinstance(out, batchwrite.BadContent):
                retry.append(a)
            elif isinstance(out, Exception):
                self._failed(a, out, result)
            else:
                result.done += 1
                if source:
                    result.bytes_fetched += len(data)
                self.emit("fetched", {"path": a.path, "size": a.target.size, "from": source})
        return retry

    async def _stage_and_publish(self, ready: list[tuple[Action, bytes, str]],
                                 device: str | None = None) -> list:
        """Written and flushed first without the disk lock (the temp files are nobody's
        yet), then published and indexed under it: one batch flushes while another is
        put in place. Returns what `_publish_small` does."""
        # cancelled meanwhile, the staging still finishes and gives its descriptors back
        # (a page's are up to a thousand)
        staged = await _until_done(self._writer, self._stage_small, ready,
                                   release=batchwrite.Staged.close)
        try:
            outcomes = await self._on_writer(self._publish_small, ready, staged, device)
        finally:
            staged.close()
        self.on_indexed()
        return outcomes

    async def take_arrivals(self, dirs: list[FileEntry], files: list[tuple[FileEntry, bytes]],
                            device: str, name: str) -> set[str]:
        """New directories and small files a peer sent with its index (see
        Node._take_arrivals), put in place and indexed as they come: no plan, no
        request, no round. Returns the paths done (indexed as what `device` holds);
        the rest is planned as usual, so a failure here is no failure yet (a name
        taken meanwhile, bytes that do not match their hash).

        The directories are made and indexed before the files are staged: staging
        makes a file's directory, and a scan that met it there before it was indexed
        (the watcher saw it made) took it for a directory made here, whose version
        then went back to the peer as a change nobody made (11 of 100 directories of a
        first sync into a watching node).
        """
        ready = []
        for e, data in files:
            try:
                _check_blocks(e)
            except ValueError:
                continue
            ready.append((Action(FETCH, e.path, e, [device]), data, name))
        done = set()
        if dirs:
            made = await self._on_writer(self._make_dirs, dirs, device)
            done = {e.path for e, ok in zip(dirs, made, strict=True) if ok}
            self.on_indexed()
        if not ready:
            return done
        outcomes = await self._stage_and_publish(ready, device)
        for (a, data, _), out in zip(ready, outcomes, strict=True):
            if isinstance(out, batchwrite.Placed):
                done.add(a.path)
                self.emit("fetched", {"path": a.path, "size": len(data), "from": name})
        return done

    def _make_dirs(self, dirs: Sequence[FileEntry], device: str) -> list[bool]:
        """On the writer thread, under the disk lock: each directory made (this
        device's default mode) and indexed as what `device` holds; whether it was."""
        made: list[FileEntry | None] = []
        for e in dirs:
            try:
                apply.ensure_dirs(self.root, e.path)
                made.append(e.recorded(*_on_disk(paths.safe_join(self.root, e.path))))
            except (OSError, paths.BadPath):
                made.append(None)
        self.index.put_local([e for e in made if e is not None], held_by=device)
        return [e is not None for e in made]

    def _stage_small(self, ready: list[tuple[Action, bytes, str]]) -> batchwrite.Staged:
        """On the writer thread: the batch written to temp files and flushed."""
        local = self.index.get_many([a.path for a, _, _ in ready])
        return batchwrite.stage(self.root, [batchwrite.SmallFile(
            paths.on_disk(self.root, a.path), data, a.target.blocks,
            modes.file_mode(a.target.mode, _file_mode(local.get(a.path))), a.target.mtime_ns,
            local.get(a.path), a.target.version, a.target.modified_by)
            for a, data, _ in ready], self._room())

    def _publish_small(self, ready: list[tuple[Action, bytes, str]],
                       staged: batchwrite.Staged, device: str | None = None) -> list:
        """On the writer thread, under the disk lock: the files at their names, then
        all their index entries (`device`: as what it holds exactly). Returns each
        file's outcome (where it now is or why not)."""
        outcomes = staged.publish()
        self.index.put_local([
            a.target.recorded(out.inode, out.ctime_ns,
                              out.mode if self.names.keeps_modes else None)
            for (a, _, _), out in zip(ready, outcomes, strict=True)
            if isinstance(out, batchwrite.Placed)], held_by=device)
        return outcomes

    def _room(self) -> int:
        """Bytes this node may still write: free space above the reserve, less promises."""
        return diskio.room(self.root) - self._promised

    @contextlib.contextmanager
    def _space_for(self, size: int) -> Iterator[None]:
        """Promise size bytes to one file while it is written, or raise NoSpace.

        Files are written side by side: each must count the ones already under way,
        or all of them pass the check and fill the disk together.
        """
        diskio.check_space(self.root, size, self._promised)
        self._promised += max(size, 0)
        try:
            yield
        finally:
            self._promised -= max(size, 0)

    def _local_block(self, rel: str, h: bytes, size: int) -> bytes | None:
        """The block from a file we already have (this path's old content, or any)."""
        where = _own_copy(rel, self.index.get(rel), h) or self.index.find_block(h)
        return self._read_verified(where, size, h)

    def _read_verified(self, where: tuple[str, int] | None, size: int,
                       h: bytes) -> bytes | None:
        """Block `where` = (path, block index) of a local file, if it still hashes to h."""
        if where is None:
            return None
        try:
            with open(paths.safe_join(self.root, where[0]), "rb") as src:
                data = platform.pread(src.fileno(), size, where[1] * BLOCK_SIZE)
        except (OSError, paths.BadPath):
            return None
        return data if len(data) == size and hashing.block_hash(data) == h else None

    async def _request_one(self, a: Action, h: bytes, size: int) -> tuple[bytes, str]:
        """The block and the name of the peer that gave it."""
        for conn in self._live_sources(a):
            if not self._may_ask(conn, h):
                continue
            async with self._slots:
                data = await conn.request_block(self._asked(a), 0, size, h)
            if data is None:
                continue
            if len(data) == size and hashing.block_hash(data) == h:
                return data, conn.info.name
            self._wrong_from(conn, h, a.path)
        raise NoSource(f"no connected peer could give {a.path}")

    def _make_room(self, local: FileEntry | None, a: Action) -> None:
        """Make the final path ready for a rename over it: our version is kept first.

        As a conflict copy, or in the versions folder (by a hard link where the file
        system allows, so the path never goes missing before the rename replaces it).
        """
        if a.conflict_copy:
            self._keep_conflict_copy(local, a.path, a.target.modified_by, keep=True)
        elif not apply.matches_disk(self.root, local, a.path):
            raise apply.DiskChanged
        elif local is not None and not local.deleted:
            self._archive_live(local, a.path, a.target.modified_by, keep=True)

    def _archive_live(self, local: FileEntry | None, rel: str, by: str,
                      keep: bool = False) -> None:
        """Our live version at rel into the versions folder (`keep`: see apply.archive)."""
        if local is not None and local.kind == Kind.DIR:
            os.rmdir(self.root / rel)  # fails (and keeps everything) unless empty
        elif os.path.lexists(paths.safe_join(self.root, rel)):
            apply.archive(self.root, rel, by=by, keep=keep)

    def _keep_conflict_copy(self, local: FileEntry | None, rel: str, by: str,
                            keep: bool = False) -> None:
        """Our losing version stays beside rel as its conflict copy (`keep`: see _make_room)."""
        if local is None or local.deleted or not apply.matches_disk(self.root, local, rel):
            raise apply.DiskChanged
        copy_rel = self._free_conflict_name(rel, local)
        copy_full = paths.safe_join(self.root, copy_rel)
        if os.path.lexists(copy_full) and _same_meta(copy_full, local):
            apply.archive(self.root, rel, by=by, keep=keep)  # that very version is kept
        else:
            if os.path.lexists(copy_full):  # the same content, losing before: ours is newer
                apply.archive(self.root, copy_rel, by=self.index.device_id)
            if not (keep and apply.hard_link(self.root / rel, copy_full)):
                platform.replace(self.root / rel, copy_full)
            inode, ctime_ns, _ = _on_disk(copy_full)
            copy = replace(local, path=copy_rel, version=self._fresh_version(copy_rel),
                           modified_by=self.index.device_id, inode=inode, ctime_ns=ctime_ns)
            self._commit(copy)
        self.emit("conflict", {"path": rel, "copy": copy_rel})

    def _fresh_version(self, rel: str) -> dict[str, int]:
        """A version for a new file at rel that beats whatever history that name has."""
        seen: dict[str, int] = {}
        old = self.index.get(rel)
        if old is not None:
            seen = merge(seen, old.version)
        for remote in self.index.remote_for_path(rel).values():
            seen = merge(seen, remote.version)
        return bump(seen, self.index.device_id)

    def _free_conflict_name(self, rel: str, local: FileEntry) -> str:
        """The copy's name; a later second if that name holds other content already.

        The name comes from the losing version alone, so devices holding the same
        version pick the same name; only a different version that happens to share
        that second moves on to the next free one.
        """
        device = local.modified_by or self.index.device_id
        mtime_ns = local.mtime_ns
        for _ in range(1000):
            name = apply.conflict_name(rel, mtime_ns, device)
            full = paths.safe_join(self.root, name)
            if not os.path.lexists(full) or _holds(full, local):
                return name
            mtime_ns += 1_000_000_000
        raise OSError(f"no free conflict-copy name for {rel}")

    def _live_sources(self, a: Action) -> list:
        """The connected peers that have it and may be asked now: one that is resting
        after leaving our requests unanswered is not (its files wait, they do not fail
        and spin a round a second; the node is woken when it may be asked again)."""
        conns = self.connections()
        return [c for d in a.sources if (c := conns.get(d)) is not None and not c.resting]

    def _may_ask(self, conn, h: bytes) -> bool:
        """Whether conn may be asked for block h: not if it sent wrong bytes for it."""
        were, wrong = self._sent_wrong.get(conn.device_id, (None, ()))
        return were is not conn or h not in wrong

    def _wrong_from(self, conn, h: bytes, rel: str) -> None:
        """conn sent bytes that are not block h (of rel): it is not asked for h again
        while it stays connected. Said once a connection: a device that works does not
        do this (it serves what it indexed, read under a stat that shows any change),
        so its disk is failing or it is hostile."""
        were, wrong = self._sent_wrong.get(conn.device_id, (None, set()))
        if were is not conn:
            live = self.connections()
            self._sent_wrong = {d: v for d, v in self._sent_wrong.items()
                                if live.get(d) is v[0]}  # none of a gone connection
            wrong = set()
            self._sent_wrong[conn.device_id] = (conn, wrong)
            log.warning("%s sent a block of %s that does not match its hash; it is not "
                        "asked for such a block again while it stays connected",
                        conn.info.name, rel)
        if len(wrong) < WRONG_KEPT:
            wrong.add(h)

    def _all_local(self, a: Action) -> bool:
        """Whether every block of the target is here (in a worker thread: an index read
        per block)."""
        local = self.index.get(a.path)
        have = set(local.block_hashes()) if local and not local.deleted else set()
        size = a.target.size
        return all(h in have or hashing.is_zero_block(h, _block_size(size, i))
                   or self.index.find_block(h) for i, h in enumerate(a.target.block_hashes()))

    async def _fill(self, fd: int, a: Action, resume: bool, result: RoundResult,
                    zero: list[bool]) -> list[str]:
        """Write every block of the target into fd, cheapest source first (`zero`: which
        of them are holes).

        Returns the names of the peers that sent blocks (none when all were local).
        Sorting the blocks and copying the ones found here run in worker threads: for a
        file of gigabytes they are thousands of index reads and block copies, and a
        512 MiB file copied on a peer held the loop 451 ms here (peers drop a node
        that does not answer for 6 s).
        """
        target = a.target
        hashes = target.block_hashes()
        ranges, missing = await _until_done(None, self._sort_blocks, fd, a, hashes, resume,
                                            zero)
        if ranges:
            local = self.index.get(a.path)
            copied = await _until_done(None, _copy_ranges, paths.safe_join(self.root, a.path),
                                       fd, ranges, target.size)
            if not apply.matches_disk(self.root, local, a.path):
                raise apply.DiskChanged  # edited while we copied from it: start over later
            result.bytes_reused += copied
        elsewhere = await _until_done(None, self._copy_found, fd, target, hashes, missing) \
            if missing else []
        result.bytes_reused += sum(_block_size(target.size, i) for i in elsewhere)
        missing = sorted(set(missing) - set(elsewhere))
        done = target.size - sum(_block_size(target.size, i) for i in missing)
        self.in_progress[a.path] = (done, target.size)
        if not missing:
            return []
        return await self._fetch_blocks(fd, a, missing, done, result)

    def _sort_blocks(self, fd: int, a: Action, hashes: Sequence[bytes], resume: bool,
                     zero: list[bool]) -> tuple[list[int], list[int]]:
        """In a worker thread: (blocks our current file holds at the same offset, blocks
        to find elsewhere or fetch); the temp file's blocks and all-zero ones need
        neither (zero blocks stay holes)."""
        target = a.target
        have = _blocks_present(fd, hashes, target.size) if resume else zero
        same_place = self._unchanged_blocks(a.path, hashes)
        ranges, missing = [], []
        for i in range(len(hashes)):
            if have[i]:
                continue
            if same_place[i]:
                ranges.append(i)
            else:
                missing.append(i)
        return ranges, missing

    def _copy_found(self, fd: int, target: FileEntry, hashes: Sequence[bytes],
                    missing: list[int]) -> list[int]:
        """In a worker thread: the missing blocks some file here holds, each checked
        against its hash as it is read, written into fd; returns which were."""
        found = self.index.find_blocks(list({hashes[i] for i in missing}))
        return [i for i in missing if hashes[i] in found
                and self._copy_from_elsewhere(fd, i, target, found[hashes[i]], hashes[i])]

    def _unchanged_blocks(self, rel: str, hashes: Sequence[bytes]) -> list[bool]:
        """Blocks our current file holds at the same offset, trusted while it is unchanged."""
        local = self.index.get(rel)
        if (local is None or local.deleted or local.kind != Kind.FILE
                or not apply.matches_disk(self.root, local, rel)):
            return [False] * len(hashes)
        old = local.block_hashes()
        return [i < len(old) and old[i] == h for i, h in enumerate(hashes)]

    def _copy_from_elsewhere(self, fd: int, i: int, target: FileEntry, where: tuple[str, int],
                             h: bytes) -> bool:
        data = self._read_verified(where, _block_size(target.size, i), h)
        if data is None:
            return False
        diskio.write_all(fd, data, i * BLOCK_SIZE)
        return True

    async def _fetch_blocks(self, fd: int, a: Action, missing: list[int], done_bytes: int,
                            result: RoundResult) -> list[str]:
        """Request blocks from the peers, a window at a time; verify and write each.

        The blocks that arrive together (one `data` frame) are verified and written by
        one writer-thread job, so the loop pays one hand-off per frame, not per block.
        """
        target = a.target
        hashes = target.block_hashes()
        offloop = target.size > OFFLOOP_WRITES
        direct = _open_direct(fd) if offloop else None
        loop = asyncio.get_running_loop()
        queue = list(reversed(missing))
        inflight: dict[asyncio.Future, list[tuple[int, str]]] = {}  # requests and writes
        held = 0  # slots taken and not yet given back: blocks requested or being written
        completed: asyncio.Queue[asyncio.Future] = asyncio.Queue()
        tried: dict[int, set[str]] = {}
        names: dict[str, str] = {}  # device -> display name, of the peers we asked
        kept: set[str] = set()  # devices whose blocks passed the check

        def retry(i: int, device: str) -> None:
            tried.setdefault(i, set()).add(device)
            queue.append(i)

        def written(blocks: list[tuple[int, str]], oks: list[bool], sent: bool = True) -> None:
            """`sent`: the peer gave bytes (a block not ok was wrong, not missing)."""
            nonlocal done_bytes, held
            for (i, device), ok in zip(blocks, oks, strict=True):
                self._slots.release()
                held -= 1
                if ok:
                    done_bytes += _block_size(target.size, i)
                    result.bytes_fetched += _block_size(target.size, i)
                    kept.add(device)
                else:
                    if sent and (conn := self.connections().get(device)) is not None:
                        self._wrong_from(conn, hashes[i], a.path)
                    retry(i, device)

        try:
            missing, linked, fetched = await self._fetch_linked(fd, direct, a, hashes, missing,
                                                                tried, result)
            done_bytes += fetched
            queue[:] = reversed(missing)
            while queue or inflight:
                sources = self._live_sources(a)
                refill = held <= WINDOW_BLOCKS // 2  # in batches: fewer, fuller frames
                while refill and queue and held < WINDOW_BLOCKS:
                    i = queue[-1]
                    options = [c for c in sources if c.device_id not in tried.get(i, set())
                               and self._may_ask(c, hashes[i])]
                    if not options:
                        raise NoSource(f"no connected peer has block {i} of {a.path}")
                    if inflight and self._slots.locked():
                        break  # other files hold the budget; ours frees as we go
                    await self._slots.acquire()
                    queue.pop()
                    conn = options[i % len(options)]
                    fut = conn.request_block(self._asked(a), i * BLOCK_SIZE,
                                             _block_size(target.size, i), hashes[i])
                    fut.is_write = False  # type: ignore[attr-defined]
                    fut.add_done_callback(completed.put_nowait)
                    inflight[fut] = [(i, conn.device_id)]
                    held += 1
                    names.setdefault(conn.device_id, conn.info.name)
                finished = [await completed.get()]
                while not completed.empty():
                    finished.append(completed.get_nowait())
                arrived: list[tuple[int, str, bytes]] = []
                for fut in finished:
                    blocks = inflight.pop(fut, None)
                    if blocks is None:
                        continue
                    if fut.is_write:  # type: ignore[attr-defined]
                        written(blocks, fut.result())  # a failed write raises here
                        continue
                    [(i, device)] = blocks
                    data = fut.result()
                    if data is None or len(data) != _block_size(target.size, i):
                        written(blocks, [False], sent=data is not None)
                    else:
                        arrived.append((i, device, data))
                if arrived:
                    jobs = [(data, i * BLOCK_SIZE, hashes[i]) for i, _, data in arrived]
                    blocks = [(i, device) for i, device, _ in arrived]
                    if offloop:  # slots stay taken until the thread has written them
                        w = loop.run_in_executor(self._writer, _verify_write_all, fd, jobs,
                                                 direct)
                        w.is_write = True  # type: ignore[attr-defined]
                        w.add_done_callback(completed.put_nowait)
                        inflight[w] = blocks
                    else:
                        written(blocks, _verify_write_all(fd, jobs))
                self.in_progress[a.path] = (done_bytes, target.size)
            return sorted({names[d] for d in kept} | linked)
        finally:  # on every path, a failed write included: every slot we hold goes back
            writes = [f for f in inflight if f.is_write]  # type: ignore[attr-defined]
            for fut in inflight:
                if not fut.is_write:  # type: ignore[attr-defined]
                    fut.cancel()
            for _ in range(held):
                self._slots.release()
            if writes:  # never let the caller close fd under a running write
                await asyncio.wait(writes)
            if direct is not None:
                self._close_off_loop(direct)

    def _close_off_loop(self, fd: int) -> None:
        """Close on the writer thread: ext4 starts writing back the file's dirty pages at
        the close of a file it was asked to replace (1 GiB of copied blocks: a 180-440 ms
        stall on the loop). Nothing is awaited, so no cancellation can leak the fd."""
        try:
            self._writer.submit(_close_quietly, fd)
        except RuntimeError:  # shut down: close here
            _close_quietly(fd)

    async def _fetch_linked(self, fd: int, direct: int | None, a: Action, hashes: Sequence[bytes],
                            missing: list[int], tried: dict[int, set[str]],
                            result: RoundResult) -> tuple[list[int], set[str], int]:
        """The blocks the sources' data links bring, on the links' threads (linkfetch.py).

        Returns the blocks still missing (a link broke, a peer had no block or sent a
        wrong one: never asked of that peer again, as on a peer connection), the names
        of the peers that sent blocks, and the bytes written.
        """
        target = a.target
        if sum(_block_size(target.size, i) for i in missing) < LINKED_MIN:
            return missing, set(), 0
        fetchers, conns = [], {}
        for conn in self._live_sources(a):
            fetcher = self.links_for(conn.device_id)
            if fetcher is not None and await fetcher.ready():
                fetchers.append(fetcher)
                conns[conn.device_id] = conn
        if not fetchers:
            return missing, set(), 0
        # blocks one of them sent wrong before: asked over the connections, of the others
        held_back = [i for i in missing
                     if not all(self._may_ask(c, hashes[i]) for c in conns.values())] \
            if any(d in self._sent_wrong for d in conns) else []
        done = self.in_progress.get(a.path, (0, target.size))[0]
        job = FetchJob(fd, direct, self._asked(a), target.size, hashes,
                       lambda n: self.in_progress.__setitem__(a.path, (done + n, target.size)))
        job.share(fetchers, sorted(set(missing) - set(held_back)) if held_back else missing)
        await job.wait(fetchers)
        result.bytes_fetched += job.fetched
        for i in job.wrong:
            self._wrong_from(conns[job.refused[i]], hashes[i], a.path)
        if job.error is not None:
            raise job.error
        for i, device in job.refused.items():
            tried.setdefault(i, set()).add(device)
        return sorted(job.lost + list(job.refused) + held_back), job.sources, job.fetched


async def _until_done(executor: Executor | None, fn: Callable[..., T], *args: object,
                      release: Callable[[T], object] | None = None) -> T:
    """fn(*args) in a worker thread; cancelled, this still waits for fn to end: what fn
    holds (the disk lock, a temp file's descriptor that the caller closes once this
    returns and that could be another file's by then) is given back only after it.
    `release`: what gives back what fn returned, when nobody will have it."""
    job = asyncio.get_running_loop().run_in_executor(executor, fn, *args)
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        await asyncio.wait([job])
        if release is not None and not job.cancelled() and job.exception() is None:
            release(job.result())
        raise


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):  # written and checked already: nothing is lost
        os.close(fd)


def _own_copy(rel: str, mine: FileEntry | None, h: bytes) -> tuple[str, int] | None:
    """(rel, 0) when our current file at rel starts with block h: read it there first."""
    if mine is not None and not mine.deleted and mine.blocks[:len(h)] == h:
        return rel, 0
    return None


def _check_blocks(target: FileEntry) -> None:
    if hashing.file_hash_from_blocks(target.blocks) != target.hash or \
            target.block_count() != -(-target.size // BLOCK_SIZE):
        raise ValueError("the peer's block list does not match its file hash or size")


def _batches(items: list[T], key: Callable[[T], tuple[str, ...]] = lambda a: (a.path,),
             size: Callable[[T], int] | None = lambda a: a.target.size,
             files: int = SMALL_BATCH_FILES) -> list[list[T]]:
    """Consecutive runs (path order keeps a directory together) of bounded count, bytes
    and directories (`key`: the paths an item touches; each batch holds a descriptor
    per directory, see app/core/dirfds.py)."""
    out: list[list[T]] = []
    total = 0
    dirs: set[str] = set()
    for item in items:
        here = {p.rpartition("/")[0] for p in key(item)}
        more = size(item) if size is not None else 0
        if not out or total + more > SMALL_BATCH_BYTES or len(out[-1]) >= files or \
                len(dirs | here) > BATCH_DIRS:
            out.append([])
            total = 0
            dirs = set()
        out[-1].append(item)
        total += more
        dirs |= here
    return out


def _on_disk(full: Path) -> tuple[int, int, int | None]:
    """The stat bookkeeping an entry keeps of what was just written: inode, ctime, mode.

    No mode where the disk has none to show (its 0777 would make every file
    executable): the entry keeps the one it came with.
    """
    st = os.lstat(full)
    return st.st_ino, st.st_ctime_ns, _mode_kept(st)


def _mode_kept(st: os.stat_result) -> int | None:
    """st's permission bits, or None on a disk that shows one fixed mode (see _on_disk)."""
    return st.st_mode & 0o777 if namerules.modes_kept(st) else None


def _file_mode(local: FileEntry | None) -> int | None:
    """The mode of the live file a fetched one replaces (its owner's bits stay), if any."""
    if local is None or local.deleted or local.kind != Kind.FILE:
        return None
    return local.mode


def _block_size(size: int, i: int) -> int:
    return min(BLOCK_SIZE, size - i * BLOCK_SIZE)


def _verify_write_all(fd: int, jobs: list[tuple[bytes, int, bytes]],
                      direct: int | None = None) -> list[bool]:
    """Each (data, offset, hash) is written only if the data has that hash.

    With `direct` (the same file opened with O_DIRECT), runs of whole consecutive
    blocks go straight to the disk, one write per run: no page-cache pages have to be
    found for a copy nobody reads soon, so a large transfer runs at disk speed and
    leaves the user's cache alone. The rest (a short last block, a run the file system
    refuses) goes through the cache.
    """
    oks = [hashing.block_hash(data) == h for data, _, h in jobs]
    good = sorted((offset, data) for (data, offset, _), ok in zip(jobs, oks, strict=True)
                  if ok)
    runs: list[list[tuple[int, bytes]]] = []
    for offset, data in good:
        if direct is None or len(data) != BLOCK_SIZE:
            diskio.write_all(fd, data, offset)
        elif runs and runs[-1][-1][0] + BLOCK_SIZE == offset and len(runs[-1]) < DIRECT_RUN:
            runs[-1].append((offset, data))
        else:
            runs.append([(offset, data)])
    for run in runs:
        if not _write_direct(direct, run):  # type: ignore[arg-type]
            for offset, data in run:  # short or refused: all of it again, through the cache
                diskio.write_all(fd, data, offset)
    return oks


def _open_direct(fd: int) -> int | None:
    """The file behind fd opened again with O_DIRECT, or None where that is refused."""
    return platform.reopen_direct(fd)


_aligned = threading.local()  # per writer thread: a page-aligned buffer for direct writes


def _write_direct(fd: int, run: list[tuple[int, bytes]]) -> bool:
    """One O_DIRECT write of consecutive whole blocks; False if the disk would not take it."""
    buf = getattr(_aligned, "buf", None)
    if buf is None:
        buf = _aligned.buf = mmap.mmap(-1, DIRECT_RUN * BLOCK_SIZE)
    with memoryview(buf) as view:
        for k, (_, data) in enumerate(run):
            view[k * BLOCK_SIZE:(k + 1) * BLOCK_SIZE] = data
        return diskio.write_direct(fd, view[:len(run) * BLOCK_SIZE], run[0][0])


def _blocks_present(fd: int, hashes: Sequence[bytes], size: int) -> list[bool]:
    """Which blocks an interrupted transfer already wrote (resume).

    A block in a hole of the temp file (or past its end) is there when it is a zero
    block, and missing otherwise, without reading it; the rest is read and checked.
    """
    extents = holes.DataExtents(fd)
    out = []
    for i, h in enumerate(hashes):
        n = _block_size(size, i)
        if extents.has_data(i * BLOCK_SIZE, n):
            out.append(_block_ok(fd, i, n, h))
        else:
            out.append(hashing.is_zero_block(h, n))
    return out


def _zero_blocks(target: FileEntry) -> list[bool]:
    """Which blocks of target are all zeros (they need no bytes from anyone)."""
    return hashing.zero_block_flags(target.blocks, target.size)


def _data_bytes(target: FileEntry, zero: list[bool]) -> int:
    """What a file takes on the disk here: its blocks but the all-zero ones (holes)."""
    if not zero:
        return target.size
    holes = zero.count(True) * BLOCK_SIZE
    if zero[-1]:  # the last block may be short
        holes -= BLOCK_SIZE - _block_size(target.size, len(zero) - 1)
    return target.size - holes


def _end_holes(fd: int, target: FileEntry, rel: str, zero: list[bool]) -> None:
    """Give the temp file its full size, its trailing zero blocks as a hole.

    Every block but the zero ones was written: the file already reaches the end of the
    last of them, or a write went missing.
    """
    last = len(zero) - 1 - zero[::-1].index(False) if False in zero else -1
    written_to = (last * BLOCK_SIZE + _block_size(target.size, last)) if last >= 0 else 0
    size = os.fstat(fd).st_size
    if written_to <= size < target.size:
        os.ftruncate(fd, target.size)
        size = target.size
    if size != target.size:
        raise OSError(errno.EIO, f"{rel}: the temp file is not the size written")


def _finish_temp(fd: int, target: FileEntry, rel: str, zero: list[bool]) -> None:
    """The temp file at its full size (`_end_holes`), then on the disk before its name."""
    _end_holes(fd, target, rel, zero)
    diskio.flush_data(fd)


def _copy_ranges(src_path: Path, fd: int, blocks: list[int], size: int) -> int:
    """Copy blocks from our unchanged current file, in the kernel (no bytes through Python)."""
    copied = 0
    with open(src_path, "rb") as src:
        runs: list[tuple[int, int]] = []
        for i in blocks:
            if runs and runs[-1][1] == i:
                runs[-1] = (runs[-1][0], i + 1)
            else:
                runs.append((i, i + 1))
        for first, end in runs:
            offset = first * BLOCK_SIZE
            length = min(end * BLOCK_SIZE, size) - offset
            while length > 0:
                n = platform.copy_range(src.fileno(), fd, length, offset)
                if n <= 0:
                    raise OSError("copy_file_range made no progress")
                offset += n
                length -= n
                copied += n
    return copied


def _holds(full: Path, entry: FileEntry) -> bool:
    """Whether the file at full has exactly the content of entry."""
    if entry.kind == Kind.LINK:
        return os.path.islink(full) and os.readlink(full) == entry.target
    try:
        return os.path.isfile(full) and not os.path.islink(full) and \
            hashing.hash_file(full)[1] == entry.hash
    except OSError:
        return False


def _same_meta(full: Path, entry: FileEntry) -> bool:
    """Whether the file at full (known to hold entry's content) also has its mtime and mode."""
    st = os.lstat(full)
    return st.st_mtime_ns == entry.mtime_ns and (st.st_mode & 0o777) == entry.mode


def _open_temp(tmp: Path) -> tuple[int, bool]:
    """Open (or create) a temp file; never through a link, never anything but a file.

    Returns (fd, True) for the temp file of an interrupted transfer (to resume).
    """
    flags = os.O_RDWR | platform.NOFOLLOW | platform.BINARY
    try:
        st = os.lstat(tmp)
    except FileNotFoundError:
        return os.open(tmp, flags | os.O_CREAT | os.O_EXCL, 0o600), False
    if not stat.S_ISREG(st.st_mode):
        os.unlink(tmp)  # a stray link or fifo under our temp name: never write through it
        return os.open(tmp, flags | os.O_CREAT | os.O_EXCL, 0o600), False
    return os.open(tmp, flags), True


def _block_ok(fd: int, i: int, size: int, h: bytes) -> bool:
    data = platform.pread(fd, size, i * BLOCK_SIZE)
    return len(data) == size and hashing.block_hash(data) == h
