"""Fetching a large file's blocks over a peer's data links, on the links' own threads.

The puller hands a file's missing blocks to a `FetchJob`; the job gives them, a run
of up to RUN_BLOCKS consecutive blocks at a time, to the `Fetcher` of a peer (or
shares them out between the peers that have links). Each link's thread asks for
DEPTH runs ahead and reads an answer straight into a page-aligned buffer; a second
thread beside it checks every block against its hash and writes the good ones into
the temp file while the first reads the next run: whole blocks with O_DIRECT in one
write per run where the file system takes it, the rest through the page cache,
every write checked to the last byte (diskio.write_all). The event loop only hears
of each finished run.

What the links could not bring goes back to the puller: blocks the peer did not have
or sent wrong (`refused`, not asked of that peer again, as on a peer connection; the
wrong ones are also in `wrong`, which the puller remembers past the round) and blocks
lost with a link that broke (`lost`, asked again over the peer connection).

Memory is bounded: per link three RUN_BYTES buffers and DEPTH requests in flight (the
rest of a transfer waits in the socket buffers and slows the sender down); a job
holds the list of block numbers it still needs, nothing more.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import mmap
import queue
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence

from app.core import diskio, hashing
from app.core.model import BLOCK_SIZE
from app.net import datalink, framing

log = logging.getLogger(__name__)

LINKS = 3  # links per peer and direction: two cores, and room for the sender's threads
DEPTH = 4  # runs asked ahead per link (they wait in the socket buffers, not here)
STALL = 10.0  # seconds without a byte of an answer: the link is taken for dead
RETRY = 30.0  # after links could not be opened, the peer connection alone for this long

OK, REFUSED, WRONG, LOST = "ok", "refused", "wrong", "lost"  # WRONG: refused, bytes sent


class FetchJob:
    """One file's blocks, fetched over links; its bookkeeping lives on the event loop.

    The link threads read only what never changes (fd, hashes, size) and `cancelled`.
    """

    def __init__(self, fd: int, direct: int | None, path: str, size: int,
                 hashes: Sequence[bytes], progress: Callable[[int], None]) -> None:
        self.fd = fd
        self.direct = direct
        self.path = path
        self.size = size
        self.hashes = hashes
        self.progress = progress  # bytes written, after each run
        self.loop = asyncio.get_running_loop()
        self.done = self.loop.create_future()
        self.cancelled = False
        self.left = 0  # blocks handed out and not accounted for yet
        self.fetched = 0
        self.refused: dict[int, str] = {}  # block -> the device that could not give it
        self.wrong: list[int] = []  # the refused blocks whose bytes did not match
        self.lost: list[int] = []
        self.sources: set[str] = set()  # names of the peers whose blocks were written
        self.error: OSError | None = None  # a write failed: the file cannot be finished

    def share(self, fetchers: list[Fetcher], missing: list[int]) -> None:
        """Hand the blocks out, runs taking turns between the fetchers."""
        shares: list[list[int]] = [[] for _ in fetchers]
        for k in range(0, len(missing), datalink.RUN_BLOCKS):
            shares[k // datalink.RUN_BLOCKS % len(fetchers)] += \
                missing[k : k + datalink.RUN_BLOCKS]
        self.left += len(missing)
        for fetcher, blocks in zip(fetchers, shares, strict=True):
            if blocks:
                fetcher.submit(self, blocks)
        self._check_done()

    def account(self, fetcher: Fetcher, blocks: list[int], outcome: list[str],
                nbytes: int, error: OSError | None) -> None:
        """A run is over (on the loop): what became of each of its blocks."""
        for i, what in zip(blocks, outcome, strict=True):
            if what == OK:
                self.fetched += _block_size(self.size, i)
                self.sources.add(fetcher.name)
            elif what in (REFUSED, WRONG):
                self.refused[i] = fetcher.device
                if what == WRONG:
                    self.wrong.append(i)
            else:
                self.lost.append(i)
        if error is not None and self.error is None:
            self.error = error
            self.cancel()
        self.left -= len(blocks)
        fetcher.on_bytes(nbytes)
        self.progress(self.fetched)
        self._check_done()

    def cancel(self) -> None:
        """No more writes: blocks not started are lost, those under way finish first."""
        self.cancelled = True

    def _check_done(self) -> None:
        if self.left == 0 and not self.done.done():
            self.done.set_result(None)

    async def wait(self, fetchers: list[Fetcher]) -> None:
        """Until every block is accounted for; once cancelled, until no thread writes."""
        try:
            await asyncio.shield(self.done)
        except asyncio.CancelledError:
            self.cancel()
            for f in fetchers:
                f.withdraw(self)
            await asyncio.shield(self.done)  # no link thread may write into fd after this
            raise


class Fetcher:
    """This device's data links to one peer, for fetching (the peer serves them)."""

    def __init__(self, device: str, name: str, open_links: Callable[[], Awaitable[None]],
                 on_bytes: Callable[[int], None], on_stall: Callable[[], None]) -> None:
        self.device = device
        self.name = name
        self.on_bytes = on_bytes  # block bytes received (on the loop)
        self.on_stall = on_stall  # a link went unanswered (called on the loop)
        self._open_links = open_links
        self._cond = threading.Condition()
        self._jobs: collections.deque[tuple[FetchJob, collections.deque[int]]] = \
            collections.deque()
        self._socks: set[datalink.TLSLink] = set()
        self._closed = False
        self._opening: asyncio.Future | None = None
        self._loop = asyncio.get_running_loop()
        self._retry_at = 0.0
        self._stalled = False  # a link went unanswered: what waits for this peer is refused

    @property
    def count(self) -> int:
        return len(self._socks)

    async def ready(self) -> bool:
        """Whether links are up; the first call opens them (again after RETRY s)."""
        if self._socks and not self._stalled:
            return True
        if self._closed or time.monotonic() < self._retry_at:
            return False
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open())
        await asyncio.shield(self._opening)
        return bool(self._socks)

    async def _open(self) -> None:
        try:
            await self._open_links()
        finally:
            self._opening = None
            if not self._socks:
                self._retry_at = time.monotonic() + RETRY

    def attach(self, sock: datalink.TLSLink, confirm: bool = False) -> bool:
        """Run a link that is up (`confirm`: tell its dialler first); False when full."""
        with self._cond:
            if self._closed or len(self._socks) >= LINKS:
                return False
            if not self._socks:
                self._stalled = False
            self._socks.add(sock)
        threading.Thread(target=self._work, args=(sock, confirm), daemon=True,
                         name=f"p2psync-link-in-{self.name}").start()
        return True

    def submit(self, job: FetchJob, blocks: list[int]) -> None:
        with self._cond:
            if self._socks and not self._closed and not self._stalled:
                self._jobs.append((job, collections.deque(blocks)))
                self._cond.notify_all()
                return
            gone = REFUSED if self._stalled else LOST
        job.account(self, blocks, [gone] * len(blocks), 0, None)

    def withdraw(self, job: FetchJob) -> None:
        """Take back what the links have not started of a job (on the loop)."""
        with self._cond:
            left = [blocks for j, blocks in self._jobs if j is job]
            self._jobs = collections.deque((j, b) for j, b in self._jobs if j is not job)
        for blocks in left:
            job.account(self, list(blocks), [LOST] * len(blocks), 0, None)

    def close(self) -> None:
        """The peer connection ended: every link goes, and what waited comes back."""
        with self._cond:
            self._closed = True
            socks, jobs = list(self._socks), list(self._jobs)
            self._jobs.clear()
            self._cond.notify_all()
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # its thread ends and closes it
        for job, blocks in jobs:
            job.account(self, list(blocks), [LOST] * len(blocks), 0, None)

    # --- on a link's thread ----------------------------------------------------------
    def _take(self, wait: bool) -> tuple[FetchJob, list[int]] | None:
        """The next run to ask for; None when closed, or when there is none and not wait."""
        with self._cond:
            while not self._closed and not self._stalled:
                while self._jobs:
                    job, blocks = self._jobs[0]
                    run = _next_run(blocks)
                    if not blocks:
                        self._jobs.popleft()
                    if run:
                        return job, run
                if not wait:
                    return None
                self._cond.wait()
            return None

    def _work(self, sock: datalink.TLSLink, confirm: bool) -> None:
        writer = _Writer(self)
        inflight: collections.deque[tuple[FetchJob, list[int], list[list]]] = \
            collections.deque()
        why = ""
        try:
            if confirm:
                datalink.confirm(sock)
            sock.settimeout(STALL)
            while True:
                while len(inflight) < DEPTH and (got := self._take(wait=not inflight)):
                    job, run = got
                    if job.cancelled:
                        self._report(job, run, [LOST] * len(run), 0, None)
                        continue
                    items = [[i, job.path, i * BLOCK_SIZE, _block_size(job.size, i),
                              job.hashes[i]] for i in run]
                    inflight.append((job, run, items))  # given back if the send fails
                    datalink.send_request(sock, items)
                if not inflight:
                    return  # closed
                job, run, items = inflight[0]
                view = writer.free.get()
                try:
                    sizes = _receive(sock, items, view)
                except BaseException:
                    writer.free.put(view)
                    raise
                inflight.popleft()
                writer.todo.put((job, run, view, sizes))
        except TimeoutError:
            why = f"no answer for {STALL:.0f} s"
            self._stall()
        except (OSError, EOFError, datalink.LinkError, framing.FrameError) as e:
            why = str(e) or type(e).__name__
        finally:
            gone = REFUSED if self._stalled else LOST
            for job, run, _ in inflight:
                self._report(job, run, [gone] * len(run), 0, None)
            writer.close()  # what it was given is written and reported first
            self._gone(sock, why)

    def _report(self, job: FetchJob, run: list[int], outcome: list[str], nbytes: int,
                error: OSError | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            job.loop.call_soon_threadsafe(job.account, self, run, outcome, nbytes, error)

    def _stall(self) -> None:
        """A link's answer did not come for STALL s: the peer is taken to have nothing to
        send, as on its connection (app/net/connection.py). Every link to it ends, what
        waits for it is refused, and no link is opened to it for RETRY s."""
        with self._cond:
            self._stalled = True
            self._retry_at = time.monotonic() + RETRY
            socks = list(self._socks)
            self._cond.notify_all()  # the idle ones end too
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(RuntimeError):  # the loop is gone
            self._loop.call_soon_threadsafe(self.on_stall)

    def _gone(self, sock: datalink.TLSLink, why: str) -> None:
        """A link ended; the last one gives back every job's blocks not started."""
        with self._cond:
            self._socks.discard(sock)
            closed = self._closed
            jobs = [] if self._socks else list(self._jobs)
            if not self._socks:
                self._jobs.clear()
            gone = REFUSED if self._stalled else LOST
        sock.close()
        for job, blocks in jobs:
            self._report(job, list(blocks), [gone] * len(blocks), 0, None)
        if why and not closed:
            log.info("a data link to %s closed: %s", self.name, why)


class _Writer:
    """A link's checks and disk writes, on a thread beside it: the link reads the next
    run meanwhile.

    Three buffers: one being filled, one being written, and one more for when the
    disk is slower for a while than the link. RUN_BYTES each, page-aligned (mmap), as
    O_DIRECT wants.
    """

    BUFFERS = 3

    def __init__(self, fetcher: Fetcher) -> None:
        self.fetcher = fetcher
        self._maps = [mmap.mmap(-1, datalink.RUN_BYTES) for _ in range(self.BUFFERS)]
        self.free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        for m in self._maps:
            self.free.put(memoryview(m))
        self.todo: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"p2psync-link-write-{fetcher.name}")
        self._thread.start()

    def _run(self) -> None:
        while (item := self.todo.get()) is not None:
            job, run, view, sizes = item
            nbytes = sum(size for size in sizes if size)
            outcome = [REFUSED if size is None else OK if hashing.block_hash(
                view[k * BLOCK_SIZE : k * BLOCK_SIZE + size]) == job.hashes[i] else WRONG
                for k, (i, size) in enumerate(zip(run, sizes, strict=True))]
            error = None
            if job.cancelled:
                outcome = [LOST] * len(run)
            else:
                try:
                    _write_run(job, run, view, outcome)
                except OSError as e:
                    outcome, error = [LOST if o == OK else o for o in outcome], e
                except Exception as e:  # noqa: BLE001 - a bug: the job must still end
                    log.exception("writing blocks of %s", job.path)
                    outcome, error = [LOST] * len(run), OSError(f"could not write: {e!r}")
            self.fetcher._report(job, run, outcome, nbytes, error)
            self.free.put(view)

    def close(self) -> None:
        """After what it was given is written; the buffers go with the last reference."""
        self.todo.put(None)
        self._thread.join()


def _next_run(blocks: collections.deque[int]) -> list[int]:
    """Up to RUN_BLOCKS consecutive block numbers from the front of blocks."""
    run: list[int] = []
    while blocks and len(run) < datalink.RUN_BLOCKS and (not run or blocks[0] == run[-1] + 1):
        run.append(blocks.popleft())
    return run


def _receive(sock: datalink.TLSLink, items: list[list], view: memoryview) -> list[int | None]:
    """Read one run's answer into view (block k of the run at slot k).

    Returns each block's size, None where the peer did not have it. A broken link
    raises (the caller gives the whole run back).
    """
    sizes = datalink.read_answer(sock, items)
    for k, size in enumerate(sizes):
        if size is not None:
            datalink.recv_exact(sock, view[k * BLOCK_SIZE : k * BLOCK_SIZE + size])
    return sizes


def _write_run(job: FetchJob, run: list[int], view: memoryview, outcome: list[str]) -> None:
    """The good blocks of a run (consecutive blocks, slot k of view) into the temp file."""
    group: list[int] = []  # slots of consecutive good whole blocks: one direct write
    for k, i in enumerate(run):
        size = _block_size(job.size, i)
        if outcome[k] != OK:
            _write_group(job, run, view, group)
            group = []
        elif size == BLOCK_SIZE and job.direct is not None:
            group.append(k)
        else:
            diskio.write_all(job.fd, view[k * BLOCK_SIZE : k * BLOCK_SIZE + size],
                             run[k] * BLOCK_SIZE)
    _write_group(job, run, view, group)


def _write_group(job: FetchJob, run: list[int], view: memoryview, group: list[int]) -> None:
    if not group:
        return
    data = view[group[0] * BLOCK_SIZE : (group[-1] + 1) * BLOCK_SIZE]
    offset = run[group[0]] * BLOCK_SIZE
    if not diskio.write_direct(job.direct, data, offset):  # short or refused: all of it,
        diskio.write_all(job.fd, data, offset)  # through the cache


def _block_size(size: int, i: int) -> int:
    return min(BLOCK_SIZE, size - i * BLOCK_SIZE)
