"""What this device sends when a peer asks for blocks: only files it shares, as indexed.

Used for requests on a peer connection (`answer_requests`: read in serving threads)
and on a data link (on that link's thread). The index is shared between threads under
its lock, and `rescan` is handed a function that is safe to call from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

from app.aio import opened_in_thread
from app.core import hashing, paths, platform
from app.core.dirfds import DirFds
from app.core.index import Index
from app.core.model import BLOCK_SIZE, HASH_LEN, Kind
from app.net.connection import MAX_DATA_BYTES, PeerConnection, well_formed_request

# Request frames read at once, each in a thread of the pool: never on the event loop.
# Files out of the page cache cost a disk read each; served one at a time on the loop,
# 10,000 cold tiny files took 27 s (the loop blocked for up to 388 ms a read) and the
# peer gave up on us for "no answer for 10 s". Several reads in flight also keep the
# disk's queue full.
SERVE_IN_FLIGHT = 4
# ctime is the time of the last change only on POSIX (Windows: the file's creation)
TRUST_STAT = os.name == "posix"
# the contents one index page carries at most (`with_contents`): a page of 3,000 entries
# of the larger small files is cut there (the bytes of the puller's batch of small files;
# at 4 MiB the sending node's peak memory grew by 30 MB, several pages being on their way)
INLINE_PAGE_BYTES = 2 * 1024 * 1024


def with_contents(root: Path, index: Index, rescan: Callable[[str], None], items: list
                  ) -> tuple[list, list[list], bool]:
    """An index page and the contents of its files of one block, for a peer that asked
    for them (its folder was empty: see Node._take_arrivals): ([[i, bytes]...] for
    items[i]), each read as a request for it would be (`OpenFiles`). Returns the
    items, their contents, and whether the page was cut short where the contents
    reached INLINE_PAGE_BYTES."""
    asked = [[i, it[0], 0, it[2], it[6]] for i, it in enumerate(items)
             if len(it) == 12 and it[1] == Kind.FILE and not it[10] and 0 < it[2] <= BLOCK_SIZE]
    out: list[list] = []
    total = 0
    with OpenFiles(root, index, rescan, asked) as files:
        for item in asked:
            if total + item[3] > INLINE_PAGE_BYTES:
                return items[:item[0]], out, True
            data = files.read_block(item)
            if data is not None:
                out.append([item[0], data])
                total += len(data)
    return items, out, False


async def answer_requests(conn: PeerConnection, open_files: Callable[[list], OpenFiles],
                          pool: Executor) -> None:
    """Answer the peer's block requests until it goes, SERVE_IN_FLIGHT frames at a time.

    They wait in the connection's bounded queue (see app.net.connection): a peer that
    asks faster than it reads is slowed down there. What is held is at most a data frame
    (MAX_DATA_BYTES) per frame in flight.
    """
    slots = asyncio.Semaphore(SERVE_IN_FLIGHT)
    running: set[asyncio.Task] = set()
    try:
        while (items := await conn.requests.get()) is not None:
            await slots.acquire()
            task = asyncio.create_task(_answer(conn, items, open_files, pool, slots))
            running.add(task)
            task.add_done_callback(running.discard)
    finally:
        for task in list(running):
            task.cancel()
        if running:
            await asyncio.wait(running)


async def _answer(conn: PeerConnection, items: list, open_files: Callable[[list], OpenFiles],
                  pool: Executor, slots: asyncio.Semaphore) -> None:
    loop = asyncio.get_running_loop()
    try:
        files = await opened_in_thread(pool, lambda: open_files(items), OpenFiles.__exit__)
        try:
            start = 0
            while start < len(items) and not conn.closed.is_set():
                out, start = await loop.run_in_executor(pool, files.read_some, items, start)
                await conn.send({"t": "data", "items": out})
        finally:
            files.__exit__()  # waits for a read still running in its thread
    finally:
        slots.release()


class OpenFiles:
    """The files one request batch reads from, each looked up, checked and opened once."""

    def __init__(self, root: Path, index: Index, rescan: Callable[[str], None],
                 items: list) -> None:
        self.root = root
        self.index = index
        self.rescan = rescan
        wanted = {i[1] for i in items if well_formed_request(i)}
        self.shared = index.shared_stats(list(wanted))  # only files we share now
        # rel -> its indexed block list, read once (a one-block file's came with its stat)
        self.blocks = {rel: s.blocks for rel, s in self.shared.items() if s.blocks is not None}
        self.dirs = DirFds(root, create=False)
        self.open: dict[str, int | None] = {}  # rel -> fd, or None: refused
        self.stale: set[str] = set()
        # `read_some` runs in a serving thread that may still be reading when the task
        # that waited for it is cancelled and closes this: the close waits for the read
        # (a descriptor closed under a read could be reused for another file meanwhile)
        self._using = threading.Lock()
        self._closed = False

    def __enter__(self) -> OpenFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        with self._using:
            if self._closed:
                return
            self._closed = True
            for fd in self.open.values():
                if fd is not None:
                    os.close(fd)
            self.dirs.__exit__()

    def _file(self, rel: str) -> int | None:
        if rel not in self.open:
            self.open[rel] = None
            if rel in self.shared:
                try:
                    paths.validate(rel)
                    parent, _, name = paths.on_disk(self.root, rel).rpartition("/")
                    self.open[rel] = platform.open_in(self.dirs.open(parent), name,
                                                      platform.READ_FLAGS)
                except FileNotFoundError:  # gone since it was indexed: a node that
                    self.rescan(rel)  # watches nothing (`sync`) learns it only so, and its
                    # peer asked for it in vain until the sync timed out
                except (OSError, paths.BadPath):
                    pass
        return self.open[rel]

    def read_block(self, item) -> bytes | None:
        """One requested block, only from a file we share; None for anything else."""
        if not well_formed_request(item):
            return None
        _, rel, offset, size, h = item
        fd = self._file(rel)
        if fd is None or offset + size > self.shared[rel].size:
            return None
        try:
            data = platform.pread(fd, size, offset)
        except OSError:
            return None
        return data if self._as_indexed(rel, fd, data, offset, h) else None

    def read_some(self, items: list, start: int) -> tuple[list[list], int]:
        """Answers to items[start:] up to about MAX_DATA_BYTES: ([rid, bytes or None]...),
        and where the next frame starts."""
        out: list[list] = []
        size = 0
        i = start
        with self._using:
            if self._closed:
                return out, len(items)
            while i < len(items) and size < MAX_DATA_BYTES:
                answer = self.read_block(items[i])
                out.append([items[i][0], answer])  # the queue left [rid] of a malformed one
                size += len(answer) if answer else 0
                i += 1
        return out, i

    def read_into(self, item: list, view: memoryview) -> bool:
        """read_block into view (as long as the block asked): whether it is there now."""
        _, rel, offset, size, h = item
        fd = self._file(rel)
        if fd is None or offset + size > self.shared[rel].size:
            return False
        try:
            if platform.pread_into(fd, view, offset) != size:
                return False
        except OSError:
            return False
        return self._as_indexed(rel, fd, view, offset, h)

    def _as_indexed(self, rel: str, fd: int, data: bytes | memoryview, offset: int,
                    h: bytes) -> bool:
        """Whether the block just read is the one asked for (whose hash is h).

        Where h is the hash the index holds for that block and the file's stat after
        the read is the indexed one (size, mtime, inode and a ctime no tool sets: the
        scanner's test of an unchanged file), it is, and is not hashed again: BLAKE3 of
        every block sent was a quarter of the serving side's CPU for a 1 GiB file. Else
        it is hashed: a request for a hash we do not hold there gets nothing, and a
        file changed behind our back is rescanned (`_maybe_stale`). The receiver checks
        every block anyway.
        """
        if TRUST_STAT and self._indexed_hash(rel, offset, len(data)) == h:
            try:
                st = os.fstat(fd)
            except OSError:
                return False
            if (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns) == self.shared[rel].stat \
                    and st.st_ino and st.st_ctime_ns:
                return True
        if hashing.block_hash(data) == h:
            return True
        self._maybe_stale(rel, offset, h)
        return False

    def _indexed_hash(self, rel: str, offset: int, size: int) -> bytes | None:
        """The indexed hash of the whole block at offset (None for any other range)."""
        if offset % BLOCK_SIZE or size != min(BLOCK_SIZE, self.shared[rel].size - offset):
            return None
        return self._indexed_at(rel, offset) or None

    def _indexed_at(self, rel: str, offset: int) -> bytes:
        """The hash the index holds for the block at offset (a multiple of BLOCK_SIZE;
        b"": none). A file's block list is read once for the batch: SQLite reads the
        whole list for any part of it."""
        blocks = self.blocks.get(rel)
        if blocks is None:
            blocks = self.blocks[rel] = self.index.file_blocks(rel)
        at = offset // BLOCK_SIZE * HASH_LEN
        return blocks[at : at + HASH_LEN]

    def _maybe_stale(self, rel: str, offset: int, h: bytes) -> None:
        """The file changed since we indexed it, in a way its size, mtime and inode do
        not show (cp -p, touch -r): forget its stat so the rescan re-hashes it.

        Only when the index holds the asked hash at that offset: a request for a hash
        we never announced proves nothing, and must not make us re-hash the file.
        """
        if rel in self.stale or offset % BLOCK_SIZE:
            return
        if self._indexed_at(rel, offset) != h:
            return
        with contextlib.suppress(sqlite3.Error):  # the index's disk full: the next
            self.index.set_inode(rel, 0)  # request of a block of it tries again
            self.stale.add(rel)
        self.rescan(rel)
