"""A node: one device sharing one folder, on one asyncio event loop.

It owns the index, scans the folder (in a worker thread, under the disk lock),
accepts and makes TLS connections, exchanges index deltas, and runs the puller
whenever what peers announced differs from what it has. The CLI's `run` and
`sync` and the GUI's worker thread all drive this same class.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import json
import logging
import os
import shutil
import socket
import sqlite3
import ssl
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from app.aio import Pulse, cancel_and_wait, opened_in_thread
from app.core import diskio, marker, namerules, paths, scanner, versionstore
from app.core import why as why_text
from app.core.ignore import IGNORE_FILE, Ignore, Rules, count_ignored, own_dirs
from app.core.index import BRIEF_DELETED, OPEN_ERRORS, Index, why_not_opened
from app.core.keep import keep_local
from app.core.massdelete import UNMOUNTED, HeldDeletions, describe, unmounted
from app.core.model import BLOCK_SIZE, MAX_INT, EntryRefused, FileEntry, Kind
from app.core.planner import FETCH, Action
from app.core.units import human_size
from app.engine import collector, malloc
from app.engine.assessment import Assessment, Inputs, arrivals_only, assess, without_deletions
from app.engine.config import Config
from app.engine.folder import check_apart
from app.engine.invites import Invites
from app.engine.links import LinkHub, PeerLinks
from app.engine.looplag import LoopLag, keep_loop_responsive
from app.engine.puller import Puller
from app.engine.serving import SERVE_IN_FLIGHT, OpenFiles, answer_requests, with_contents
from app.errors import P2PError, RefusedError
from app.net import framing, identity
from app.net.connection import LocalFailure, PeerConnection, ProtocolError
from app.net.handshake import HandshakeError, PeerInfo, handshake, warm_up
from app.net.peertext import escaped, shown_address

if TYPE_CHECKING:  # imported where it starts, in a worker thread (see _start_watcher)
    from app.engine.watcher import FolderWatcher

log = logging.getLogger(__name__)
NAME_RULES_KEY = "name_rules"  # index meta: the rules the last probe found (JSON, as on the wire)

# Rows of our index a page holds at most; a device of an earlier release sends and takes
# EARLIER_PAGE_ROWS (its `start` names no "rows"). Pages of 3,000: a tiny-file first
# sync in 8.5-8.7 s instead of 9.1-10.1 (per page, a flush of the disk and the trips
# to the writer and to SQLite); pages end at app.core.index.PAGE_BYTES all the same.
PAGE_ROWS = 3000
EARLIER_PAGE_ROWS = 1000
CHECKED_AT_ONCE = 1000  # entries of a page checked between two turns of the loop
ARRIVALS_LOGGED = 5000  # files put in place with a peer's index: logged this many at a time
STALE_PLAN_TRIES = 2  # a plan read behind is made again at once, on renewed readers
SAME_KEY = "index_same"  # hello: it reads "what you have" index items (Index.announce_since)
STATE_BLOCKED_MAX = 50  # files we cannot sync, listed in a state message
REFUSED_PATHS_LOGGED = 20  # a peer's refused paths logged one by one, per connection
NAMES_KEPT = 1000  # names of devices seen this run, for messages about them once gone
MID_ROUND_STATE = 5.0  # seconds between state messages while a pull round runs
CONNECT_TIMEOUT = 5.0
REDIAL_REFUSED = 60.0  # no redial of an address that refused us sooner (see connect)
REDIAL_REFUSED_MAX = 900.0  # doubling up to this: fewer tries than a gate forgives
CONNECT_RETRIES = 3  # when the other side was busy, or closed before the handshake ended
# how OpenSSL names the TLS alerts the listener turns connections away with
THROTTLED_ALERT = "TLSV1_ALERT_ACCESS_DENIED"
BUSY_ALERT = "TLSV1_ALERT_USER_CANCELLED"
FULL_RESCAN_EVERY = 60.0  # at least; a folder whose full scan is long waits longer:
FULL_RESCAN_SHARE = 0.02  # a watching node spends at most this share of its time on them
PRUNE_VERSIONS_EVERY = 3600.0  # old kept versions are pruned after a full rescan this often
TEMP_KEEP = 24 * 3600.0  # a partial transfer whose peers are gone waits this long for them
FORGET_AFTER = 90 * 24 * 3600.0  # what a device not seen for so long announced goes at a start
DEBOUNCE = 0.05
SCAN_RETRY = 2.0  # a scan that failed (a full disk: the index cannot grow) is tried again
INDEX_OPENS_WITH = 1024 * 1024  # free bytes: an index that fails to open with less is
# taken to lack room for its WAL and shared memory (SQLite says "disk I/O error")
# A peer's deletions of files we hold are judged once they stop coming: DELETIONS_SETTLE s
# without one, DELETIONS_WAIT_MAX s at most (see Node._note_deletions)
DELETIONS_SETTLE = 1.0
DELETIONS_WAIT_MAX = 10.0
MOVE_PAIRED = 0.6  # watchdog holds a move's first half 0.5 s, to pair it with its second
SETTLE = 1.0  # a watching node picks a file up once it has been still this long (scanner)

Event = Callable[[str, dict], None]


@dataclass
class NodeOptions:
    folder: Path
    config: Config
    secret: str
    name: str
    listen: tuple[str, int] | None = None
    peers: list[tuple[str, int]] = field(default_factory=list)
    discovery: bool = False
    discovery_port: int = 22101
    watch: bool = False
    elect: bool = False  # take part in the role election (run, gui); sync joins as a client
    allow_mass_delete: bool = False  # apply what the mass-deletion guard would hold back


def page_rows_for(start: dict) -> int:
    """The rows a page of ours may hold for the peer whose `start` this is."""
    rows = start.get("rows")
    return min(rows, PAGE_ROWS) if type(rows) is int and rows > 0 else EARLIER_PAGE_ROWS


@dataclass
class PeerState:
    """What we know of one connected peer beyond its connection."""

    conn: PeerConnection
    sent_seq: int = 0
    last_state: dict | None = None
    state_sent: float = 0.0  # when we last sent it a state message (monotonic)
    sender: asyncio.Task | None = None
    links: PeerLinks | None = None  # its data links (app/engine/links.py)
    server: asyncio.Task | None = None
    index_streaming: bool = False  # its last index page said more of it follows
    pages: int = 0  # its index pages stored, counted before and after each (`_on_index`)
    refused: dict[str, int] = field(default_factory=dict)  # limit -> its entries refused
    # Contents with the index pages (see _take_arrivals): we asked it for them; it asked us
    # (until we sent it our whole index once)
    asked_contents: bool = False
    wants_contents: bool = False
    # its index is the one whose entries it announced back to us ("what you have" items
    # name them by its seqs); False once its `start` says its index is another one
    same_index: bool = True
    page_max: int = EARLIER_PAGE_ROWS  # rows a page of ours may hold for it (its `start`)
    page_rows: int = EARLIER_PAGE_ROWS  # rows of our index read for its next page (_send_index)
    arrivals: list = field(default_factory=lambda: [0, 0, 0.0])  # taken, bytes, s: not logged yet
    # its latest burst of deletions of files we hold: first and latest page (monotonic)
    deletions_since: float = 0.0
    deletions_last: float = 0.0

    def deletions_arriving(self, now: float) -> bool:
        """Whether its deletions may still be coming in (see Node._note_deletions)."""
        return now - self.deletions_last < DELETIONS_SETTLE and \
            now - self.deletions_since < DELETIONS_WAIT_MAX


class ConnectFailure(Exception):
    """Why one address could not be reached; str() is the user-facing reason."""


class _TryAgain(Exception):
    """The other side turned us away for now (busy) or closed before the handshake ended:
    under a flood of strangers its gate closes unfinished handshakes to make room."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _closed_early(exc: BaseException) -> bool:
    return (isinstance(exc, ConnectionError | EOFError | ssl.SSLEOFError)
            and not isinstance(exc, ConnectionRefusedError))


def describe_connect_error(host: str, port: int, exc: BaseException) -> str:
    where = shown_address(host, port)
    if isinstance(exc, ConnectionRefusedError):
        return (f"{where}: connection refused (is p2psync running there? "
                f"is TCP port {port} open in its firewall?)")
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return (f"{where}: timed out (is the address right? is a firewall dropping "
                f"TCP port {port}?)")
    if isinstance(exc, socket.gaierror):
        return f"{where}: unknown host name ({exc.strerror})"
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return f"{where}: unreachable (no route to that host: check the address and the network)"
    if isinstance(exc, ssl.SSLError) and exc.reason == THROTTLED_ALERT:
        return (f"{where}: refused: too many failed attempts (a wrong share key?) came from "
                "this address lately, so that device turns it away for a while; wait a "
                "minute, then try again with the right key")
    if isinstance(exc, ssl.SSLError) and exc.reason == BUSY_ALERT:
        return (f"{where}: busy: too many unfinished connections from this address; "
                "try again in a few seconds")
    if isinstance(exc, ConnectionError | EOFError | ssl.SSLEOFError):
        return (f"{where}: the connection closed before TLS was set up ("
                f"{type(exc).__name__}; is that a p2psync node? it may be overloaded: "
                "try again)")
    if isinstance(exc, ssl.SSLError):
        return f"{where}: TLS failed ({exc.reason or exc}); is that a p2psync node?"
    if isinstance(exc, HandshakeError):
        return f"{where}: {exc}"
    return f"{where}: {exc or type(exc).__name__}"


class IndexDiskFull(P2PError):
    """The index cannot be opened: the disk it is on is full."""

    def __init__(self, message: str, free: int) -> None:
        super().__init__(message)
        self.free = free


def index_disk_full(free: int) -> str:
    """What a node waiting for space on its index's disk says in the window."""
    return f"the disk that holds this folder's index is full ({human_size(free)} free)"


async def node_once_there_is_space(opts: NodeOptions, stop: asyncio.Event,
                                   on_event: Event | None = None,
                                   on_wait: Callable[[str], None] | None = None
                                   ) -> Node | None:
    """The node of opts, once its index opens; None if stop is set first.

    While the index's disk is full (a clean stop removed the index's WAL, which it
    cannot make again) this waits for space, saying so once (`on_wait` too), and goes
    on by itself once there is some: a `run` started as a service, or the app at
    login, once exited instead and stayed down. Any other failure raises.
    """
    said = False
    while True:
        try:
            return Node(opts, on_event)
        except IndexDiskFull as e:
            if not said:
                said = True
                log.warning("%s; waiting for space (trying again every %g s)", e,
                            SCAN_RETRY)
                if on_wait is not None:
                    on_wait(index_disk_full(e.free))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SCAN_RETRY)
        if stop.is_set():
            return None


class Node:
    def __init__(self, opts: NodeOptions, on_event: Event | None = None) -> None:
        malloc.keep_freed_buffers()
        collector.collect_less_often()
        keep_loop_responsive()
        self.opts = opts
        self.root = opts.folder.resolve()
        self.on_event = on_event
        self.config = opts.config
        check_apart(self.root, self.config.dir)
        self.config.ensure_dir()
        self.identity = identity.load_or_create(self.config.dir)
        self.device_id = self.identity.device_id
        self.fpaths = self.config.folder_paths(self.root)
        self.fpaths.db_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.index = self._open_index()
        except OPEN_ERRORS as e:
            said, free = why_not_opened(self.fpaths.db_path, e)
            if free is not None and (_index_full(e) or free < INDEX_OPENS_WITH):
                raise IndexDiskFull(said, free) from e
            raise P2PError(said) from e
        self.ignore = Ignore(self.root, own_dirs(self.config.dir))  # never synced
        self.disk_lock = asyncio.Lock()
        self.peers: dict[str, PeerState] = {}
        self.names: dict[str, str] = {}  # device -> the name it had, for devices seen this run
        self.left_because: dict[str, str] = {}  # device -> why its last connection closed
        self.trouble = ""  # why the last scan or round here failed as a whole, if it did
        self.puller = Puller(self.root, self.index, self.disk_lock,
                             lambda: {d: p.conn for d, p in self.peers.items()},
                             self.request_rescan, self.emit)
        self.name_rules = namerules.os_default()  # until start() probes the folder
        self.listen_address: tuple[str, int] | None = None
        self.failures: dict[str, str] = {}  # path -> why it could not be synced (last round)
        # the failures that will not go away by themselves: a full disk, a name refused...
        # They do not count as needed (the peers can be done with us), and are retried.
        self.blocked: dict[str, str] = dict(self.index.failures())
        self._blocked_gen = 0
        self.temps: set[str] = set()
        self._listener = None  # app.engine.listener.Listener, once listening
        self.invites = Invites(self)  # pairing by code (see invite)
        # (host, port) -> (no redial before, the refusal, the wait): see connect
        self._dial_refused: dict[tuple[str, int], tuple[float, str, float]] = {}
        self._refused_by: dict[tuple[str, int], dict] = {}  # its dial_refused event
        self._tasks: set[asyncio.Task] = set()
        self._rescan_paths: set[str] | None = set()  # None = full rescan
        self._rescan_wake = asyncio.Event()
        self._pull_wake = asyncio.Event()
        self._local_changed = Pulse()
        # Fetched files reach the peers' view of our index while the round goes on.
        self.puller.on_indexed = self._local_changed.set
        self.links = LinkHub(self.identity, self.root, self.index, self.request_rescan)
        self.puller.links_for = self._fetcher
        self.changed = asyncio.Event()  # anything a waiter might care about
        self._pulling = False
        self._retry: asyncio.Task | None = None  # a round that failed, tried again soon
        self._stopping = False
        self.paused = False
        self._watcher = None
        self.roles = None
        self._first_scan: asyncio.Task | None = None
        self.first_scan_error: P2PError | None = None  # why `_scan_first` failed, if it did
        self._disk_tasks: list[asyncio.Task] = []
        self._serving = ThreadPoolExecutor(SERVE_IN_FLIGHT, thread_name_prefix="p2psync-serve")
        self._assessed: Assessment | None = None
        self._assessing: asyncio.Task | None = None
        self._ahead: _Ahead | None = None  # the next window's plan, made during a round
        self._assess_lock = asyncio.Lock()
        self._ignore_seen: tuple | None = None  # the ignore patterns rows were settled under
        self._next_prune = 0.0  # monotonic time of the next prune of old versions
        self._pruned_days: float | None = None  # the retention the last prune applied
        self.settling: set[str] = set()  # files still being written: scanned once still
        self._left_at_stop: dict[str, float] = {}  # device -> when (see _saw)
        self._written_settling: set[str] = set()  # of those, reported written meanwhile
        self._scanned = False  # the first scan is done (see _settle)
        self._full_scan_s = 0.0  # how long the last full scan took
        self.unmounted: HeldDeletions | None = None  # the folder lost its marker and files
        self._approved: set[str] = set()  # held deletions the user confirmed ("Delete them")
        self._held_said: tuple | None = None  # the held deletions last logged and emitted
        self.loop_lag = LoopLag()

    def _index_disk_free(self) -> int:
        return shutil.disk_usage(self.fpaths.db_path.parent).free

    def _open_index(self) -> Index:
        """The folder's index (a preview opens a scratch copy: app/engine/preview.py)."""
        return Index(self.fpaths.db_path, self.device_id)

    # --- events ----------------------------------------------------------------------
    def emit(self, kind: str, data: dict) -> None:
        self.changed.set()
        if self.on_event is not None:
            try:
                self.on_event(kind, data)
            except Exception:  # a listener must never break the engine
                log.exception("event listener failed")

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        self._spawn(self.loop_lag.run())
        await self._check_folder()  # before anything may scan or write there
        await asyncio.to_thread(self._learn_names)
        await asyncio.to_thread(self._forget_gone_devices)  # (no peer is connected yet)
        await asyncio.to_thread(self._ready_for_handshakes)
        if self.opts.watch:  # before the first scan: no change may fall in between
            await self._start_watcher()
            self._spawn(self._periodic_rescan())
        if self.opts.elect:
            await self._scan_before_meeting()
        else:  # a one-shot sync scans while it connects; it cannot agree before the scan ends
            self._first_scan = self._spawn(self._scan_first())
        if self.opts.listen is not None:
            await self._start_server()
        self._disk_tasks = [self._spawn(self._scan_loop()), self._spawn(self._pull_loop())]
        if self.opts.elect:
            from app.engine.roles import Roles

            self.roles = Roles(self, discovery=self.opts.discovery,
                               discovery_port=self.opts.discovery_port, seeds=self.opts.peers)
            await self.roles.start()

    async def _start_server(self) -> None:
        from app.engine.listener import Listener

        host, port = self.opts.listen
        self._listener = Listener(identity.server_context(self.identity), self._authenticate,
                                  self._adopt_accepted, self.emit, accept_link=self._accept_link,
                                  adopt_link=self._adopt_link)
        try:
            self.listen_address = await self._listener.start(host, port)
        except OSError as e:
            self._listener.close()
            raise P2PError(f"cannot listen on {host}:{port}: {e.strerror or e} "
                           f"({_listen_hint(e, host)})") from e
        log.info("listening on %s:%d", *self.listen_address)

    async def stop(self) -> None:
        self._stopping = True
        await self.invites.close()
        for task in self._disk_tasks:  # first: no file may be finished after this point
            task.cancel()
        if self.roles is not None:
            await self.roles.stop()
        if self._watcher is not None:  # removing 10,000 watches held the loop 122 ms
            await asyncio.to_thread(self._watcher.stop)
        if self._listener is not None:
            self._listener.close()
            await self._listener.wait_closed()
        for peer in list(self.peers.values()):
            await peer.conn.leave()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            await cancel_and_wait(task)
        try:
            await self._cleanup_temps()  # what no later run would resume goes now
        except Exception:  # noqa: BLE001 - stopping must go on
            log.exception("removing temp files")
        for device, when in self._left_at_stop.items():
            await asyncio.to_thread(self._saw_now, device, when)
        self.puller.close()
        self._serving.shutdown(wait=True)  # no read of the index after it is closed
        self.index.close()
        log.debug("%s", self.loop_lag.summary())

    # --- scanning --------------------------------------------------------------------
    def request_rescan(self, rel: str | None = None) -> None:
        if rel is None:
            self._rescan_paths = None
        elif self._rescan_paths is not None:
            self._rescan_paths.add(rel)
        self._rescan_wake.set()

    async def scan_now(self, subpaths: set[str] | None = None) -> scanner.ScanResult:
        asked = subpaths
        if subpaths:  # most are files this node just wrote: told apart without the lock
            subpaths = set(await asyncio.to_thread(scanner.maybe_changed, self.root, self.index,
                                                   self.ignore, subpaths, self.name_rules))
            if not subpaths:
                # as the index says, so none is still being written: one a pull indexed
                # meanwhile (its own conflict copy) stayed so until the next full scan,
                # and every peer's `sync` waited for it
                self._track_settling(asked, scanner.ScanResult())
                self.changed.set()
                return scanner.ScanResult()
        async with self.disk_lock:
            self.puller.flush()  # the scan must see the index of what is on disk
            if not await self._check_folder():
                return scanner.ScanResult()  # missing files of an unmounted folder: no deletions
            await self._reload_ignore()
            rules = self.ignore.rules
            started = time.monotonic()
            result = await asyncio.to_thread(scanner.scan, self.root, self.index, self.ignore,
                                             sorted(subpaths) if subpaths else None,
                                             self._settle(), self.name_rules)
            if subpaths is None:
                self._full_scan_s = time.monotonic() - started
                # The ignored paths it saw and the rules it matched them by, for the next
                # survey: under the lock (no rule changes meanwhile), in a worker thread
                # (a row each; 20,000 ignored files held the loop 0.4 s beside a busy thread).
                await asyncio.to_thread(self.index.set_ignored, result.ignored,
                                        rules.lines if self.ignore.rules is rules else None)
                await self._prune_if_due()
        self.changed.set()  # a waiter may have been waiting for this scan to end
        self._track_settling(asked, result)
        for rel in result.parents_gone:  # once the watcher told of their move, if any
            asyncio.get_running_loop().call_later(MOVE_PAIRED, self.request_rescan, rel)
        self._saw_temps(result.temps, whole=subpaths is None)
        if result.written:  # every row moves our max_seq, which a peer must have seen
            self._local_changed.set()  # to be in sync with us (`in_sync_with`)
        if result.changed_count:
            if result.ignore_file_changed:
                await self._reload_ignore()
            log.info("scan: %d local change(s)", result.changed_count)
            self._pull_wake.set()
            self.emit("local_changes", {"paths": [e.path for e in result.changed]})
        return result

    def _ready_for_handshakes(self) -> None:
        """What a first handshake would load on the event loop, loaded in a thread."""
        warm_up()
        self.identity.load_key()

    async def _scan_first(self) -> None:
        """The first scan of a node that connects meanwhile. Its peers hear where it is
        after it (`_send_state`): before, its index tells of an empty folder, and a peer
        would agree with that. One that fails leaves the node with no round to run:
        `sync` ends with `first_scan_error`."""
        try:
            await self.scan_now()
        except (OSError, sqlite3.Error) as e:  # a full disk: the index cannot grow
            self.first_scan_error = self._unscanned(e)
            self.changed.set()
            return
        self._pull_wake.set()  # the round's end tells every peer

    async def _scan_before_meeting(self) -> None:
        """The first scan of a node that elects (`run`, the app), before any peer hears
        of it: its index must say where the folder is. When the index's disk is full it
        waits for space, saying so once, and goes on by itself once there is some (a
        node started as a service once exited instead, and stayed down). Anything else
        the index cannot take ends the start: one line, exit 1."""
        said = ""
        while True:
            try:
                await self.scan_now()
                if said:
                    self.trouble = ""
                return
            except (OSError, sqlite3.Error) as e:
                if not _index_full(e):
                    raise self._unscanned(e) from e
                if str(e) != said:  # once per reason while it lasts
                    said, self.trouble = str(e), index_disk_full(self._index_disk_free())
                    log.warning("%s; waiting for space (trying again every %g s)",
                                self._unscanned(e), SCAN_RETRY)
                    self.emit("scan_failed", {"reason": said})
            await asyncio.sleep(SCAN_RETRY)

    def _unscanned(self, e: Exception) -> P2PError:
        return P2PError(f"cannot record the scan of {self.root} in its index: {e} "
                        f"({human_size(self._index_disk_free())} free on the index's disk)")

    def _scan_failed(self, e: Exception, said: str) -> str:
        """Log a scan that failed, once per reason while it lasts, and tell the window;
        returns the reason.

        The disk the index is on may be the full one: every scan fails until space comes
        back, and then the changes it could not record are found again. Anything else is
        a bug, logged with its traceback; the scans go on all the same.
        """
        why = str(e) or type(e).__name__
        if not isinstance(e, OSError | sqlite3.Error):
            log.exception("a scan failed; trying again in %g s", SCAN_RETRY, exc_info=e)
        elif why != said:
            log.warning("could not scan for local changes: %s (trying again every %g s)",
                        why, SCAN_RETRY)
        if why != said:
            self.emit("scan_failed", {"reason": why})
        return why

    def _first_scan_done(self) -> bool:
        return self._first_scan is None or (self._first_scan.done() and
                                            self.first_scan_error is None)

    def _empty_here(self) -> bool:
        """Whether the folder holds nothing but our own `.p2psync` (a new device's): then
        a peer's first pages bring its small files' contents along (see _take_arrivals).
        Only bytes depend on it: what is put in place that way is judged path by path."""
        try:
            with os.scandir(self.root) as found:
                return all(e.name == paths.META_DIR for e in found)
        except OSError:
            return False

    def _settle(self) -> float:
        """How long a file must have been still to be picked up: SETTLE once a watching
        node runs. Its first scan takes the folder as it finds it (a node is told about
        the folder as it was when it started: peers may ask for it at once)."""
        first, self._scanned = not self._scanned, True
        return SETTLE if self.opts.watch and not first else 0.0

    def _track_settling(self, subpaths: set[str] | None, result: scanner.ScanResult) -> None:
        """Remember the files still being written, and tell the peers how many there are
        (`settling` in state messages): a `sync` does not end while one is on its way."""
        before = bool(self.settling)
        if subpaths is None:
            self.settling = set(result.unsettled)
        else:
            self.settling.difference_update(subpaths)
            self.settling.update(result.unsettled)
        # one found still may have been written again while it was scanned: look once more
        for rel in self._written_settling - self.settling:
            self.request_rescan(rel)
        self._written_settling &= self.settling
        if result.unsettled_count:
            self._rescan_when_settled(result)
        if before or self.settling:
            self._local_changed.set()  # the senders say it in a fresh state message

    def _rescan_when_settled(self, result: scanner.ScanResult) -> None:
        """Files still being written are scanned again once the first of them may have
        settled (those still busy then wait again): no half-written version is sent."""
        wait = max(0.0, result.settles_at - time.time()) + DEBOUNCE
        todo = None if result.unsettled_count > len(result.unsettled) else result.unsettled
        log.debug("%d file(s) still being written (%s...): scanned again in %.2f s",
                  result.unsettled_count, result.unsettled[0], wait)

        def again() -> None:
            if todo is None:
                self.request_rescan(None)
            for rel in todo or ():
                self.request_rescan(rel)

        asyncio.get_running_loop().call_later(wait, again)

    async def _reload_ignore(self) -> bool:
        """Follow a changed .p2psyncignore; say so when it ignores more files than before.

        A peer's `*` would otherwise stop all syncing without a word: one log line and
        an `ignore_widened` event name whose version of the file it is and how many of
        the indexed files it now ignores. A full rescan follows, so files the new rules
        no longer ignore are found and `status` lists the newly ignored ones.
        """
        if not self.ignore.reload_if_changed():
            return False
        # files indexed from now on are by these rules, not by those of the ignored list
        await asyncio.to_thread(self.index.forget_ignored_rules)
        self.request_rescan(None)
        rules, before_rules = self.ignore.rules, self.ignore.previous
        total, before, after = await asyncio.to_thread(self._count_ignored, before_rules, rules)
        if after <= before:
            log.info("%s changed: it ignores %d of %d files", IGNORE_FILE, after, total)
            return True
        by = self._ignore_author()
        who = "this device" if by == self.device_id else self.device_label(by)
        message = (f"{who}'s ignore file now ignores {after:,} of {total:,} files "
                   f"(before: {before:,}); those are no longer synced")
        lines = self.ignore.file_patterns
        log.warning("%s (%s: %s)", message, IGNORE_FILE,
                    ", ".join(lines[:5]) + (", ..." if len(lines) > 5 else ""))
        self.emit("ignore_widened", {"device_id": by, "name": who, "ignored": after,
                                     "of": total, "before": before,
                                     "patterns": lines[:50], "message": message})
        return True

    def _count_ignored(self, before: Rules | None, after: Rules | None) -> tuple[int, int, int]:
        """(indexed files, how many the old rules ignore, how many the new ones do), read
        a chunk at a time (in a worker thread). The ignore file counts: it is there, even
        when edited here and not indexed yet."""
        total = n_before = n_after = 0
        last = ""
        while chunk := self.index.brief_range(last):
            files = [b[0] for b in chunk if b[1] not in (BRIEF_DELETED, Kind.DIR)
                     and b[0] != IGNORE_FILE]
            total += len(files)
            n_before += count_ignored(before, files)
            n_after += count_ignored(after, files)
            last = chunk[-1][0]
        return (total + 1, n_before + count_ignored(before, [IGNORE_FILE]),
                n_after + count_ignored(after, [IGNORE_FILE]))

    def _ignore_author(self) -> str:
        """The device whose version of .p2psyncignore is on disk (this one if edited here)."""
        entry = self.index.get(IGNORE_FILE)
        try:
            st = os.stat(self.root / IGNORE_FILE)
        except OSError:
            return self.device_id
        if entry is not None and not entry.deleted and entry.modified_by and \
                (entry.size, entry.mtime_ns) == (st.st_size, st.st_mtime_ns):
            return entry.modified_by
        return self.device_id  # changed here and not indexed yet

    async def _prune_if_due(self) -> None:
        """Old kept versions go once an hour, and at once when the retention setting
        changed (the app's settings, or settings.json edited while this node runs)."""
        days = await asyncio.to_thread(self.config.versions_days)
        if time.monotonic() < self._next_prune and days == self._pruned_days:
            return
        self._next_prune = time.monotonic() + PRUNE_VERSIONS_EVERY
        self._pruned_days = days
        await asyncio.to_thread(self._prune_versions, days)

    def _prune_versions(self, days: float) -> None:
        try:
            pruned = versionstore.prune(self.root, days * 86400)
        except OSError as e:  # the versions stay until a later prune manages
            log.warning("cannot prune old versions: %s", e)
            return
        if pruned:
            log.info("pruned %d version(s) older than %g days", len(pruned), days)

    async def _scan_loop(self) -> None:
        said = ""
        while True:
            await self._rescan_wake.wait()
            await asyncio.sleep(DEBOUNCE)
            self._rescan_wake.clear()
            todo, self._rescan_paths = self._rescan_paths, set()
            try:
                await self.scan_now(todo)
                said = ""
            except Exception as e:  # noqa: BLE001 - no scan may end the scans for good
                said = self.trouble = self._scan_failed(e, said)
                for rel in todo or (None,):  # asked again (an empty set: a full scan)
                    self.request_rescan(rel)
                await asyncio.sleep(SCAN_RETRY)

    async def _periodic_rescan(self) -> None:
        """A full rescan now and then, for what the watcher cannot see (a change made
        while an event queue overflowed, a network disk's). It holds the disk lock, so
        pulls wait for it: a million files' scan, ~3 s, comes every 150 s, not every 60."""
        while True:
            await asyncio.sleep(self.full_rescan_every())
            self.request_rescan(None)

    def full_rescan_every(self) -> float:
        return max(FULL_RESCAN_EVERY, self._full_scan_s / FULL_RESCAN_SHARE)

    async def _start_watcher(self) -> None:
        """In a worker thread: watchdog walks the whole tree to watch every directory, in
        the thread that starts it (806 ms on the loop for 10,000 directories), and its
        first import held the loop 129-769 ms (a million files' bench, its first minute)."""
        loop = asyncio.get_running_loop()

        def start() -> FolderWatcher:
            from app.engine.watcher import FolderWatcher

            watcher = FolderWatcher(self.root,
                                    lambda: loop.call_soon_threadsafe(self._take_watched))
            try:
                watcher.start()
            except BaseException:
                watcher.stop()
                raise
            return watcher

        self._watcher = await opened_in_thread(None, start, lambda w: w.stop())
        log.debug("watching %s for changes", self.root)
        # A wake-up while it started found no watcher here and was dropped; it wakes us
        # only once its paths are taken, so until then no change would have.
        self._take_watched()

    def _take_watched(self) -> None:
        if self._watcher is not None:
            changed = self._watcher.changed()
            if changed is None:
                log.warning("the folder watcher lost events: rescanning the whole folder")
                self.request_rescan(None)
            for rel in changed or ():
                if rel in self.settling:  # scanned again once still (_rescan_when_settled):
                    self._written_settling.add(rel)  # not at each write reported
                else:
                    self.request_rescan(rel)

    # --- connections -----------------------------------------------------------------
    async def connect(self, host: str, port: int) -> PeerState:
        """Reach one address and authenticate; raises ConnectFailure / RefusedError.

        After a refusal (a wrong key, or the other side locked us out) the address is not
        dialled again for REDIAL_REFUSED s, doubling up to REDIAL_REFUSED_MAX: the same
        refusal is raised at once meanwhile. That is fewer tries than the other side's
        gate forgives (app/net/gate.py), so a device left running with a wrong key is
        never locked out there, and gets in at its first try once it has the right key.
        """
        for peer in self.peers.values():  # proven already (e.g. by discover_server)
            if peer.conn.outgoing and peer.conn.address == f"{host}:{port}":
                return peer
        now = time.monotonic()
        paced = self._dial_refused.get((host, port))
        if paced is not None and now < paced[0]:
            raise RefusedError(paced[1])
        try:
            peer = await self._connect(host, port)
        except RefusedError as e:
            wait = min(paced[2] * 2, REDIAL_REFUSED_MAX) if paced else REDIAL_REFUSED
            self._dial_refused = {k: v for k, v in self._dial_refused.items()
                                  if now < v[0] + REDIAL_REFUSED_MAX}
            self._dial_refused[(host, port)] = (now + wait, str(e), wait)
            self._say_refused(host, port, e, wait)
            raise
        self._dial_refused.pop((host, port), None)
        self._refused_by.pop((host, port), None)
        return peer

    def _say_refused(self, host: str, port: int, e: RefusedError, wait: float) -> None:
        """A device we dialled refused us: the `dial_refused` event names it (as its hello
        did) with its address, so the refused side sees the refusal too."""
        cause = e.__cause__
        peer = getattr(cause, "peer", None)
        name = peer.name if peer is not None else ""
        if isinstance(cause, HandshakeError) and cause.code == "auth":
            reason = "wrong share key"
        else:
            reason = "locked out after too many failed attempts"
        who = f"{name} at {host}:{port}" if name else f"{host}:{port}"
        text = f"refused by {who}: {reason}"
        event = {"address": f"{host}:{port}", "name": name,
                 "device_id": peer.device_id if peer is not None else "",
                 "reason": reason, "retry_in": round(wait), "text": text}
        self._refused_by.pop((host, port), None)
        self._refused_by[(host, port)] = event
        while len(self._refused_by) > NAMES_KEPT:
            del self._refused_by[next(iter(self._refused_by))]
        self.emit("dial_refused", event)

    def refused_by(self) -> list[dict]:
        """Devices that refused our key when we dialled them, and have not let us in since
        (their `dial_refused` events): the dialing side's view of a wrong key."""
        return list(self._refused_by.values())

    async def _connect(self, host: str, port: int) -> PeerState:
        """One address; tried again, briefly, when its gate made room for others."""
        for attempt in range(CONNECT_RETRIES):
            try:
                return await self._connect_once(host, port)
            except _TryAgain:
                await asyncio.sleep(0.5 * (attempt + 1))  # its other handshakes end soon
        try:
            return await self._connect_once(host, port)
        except _TryAgain as e:
            raise ConnectFailure(describe_connect_error(host, port, e.error)) from e.error

    async def _connect_once(self, host: str, port: int) -> PeerState:
        ctx = identity.client_context(self.identity)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=ctx, server_hostname=None
                                        if _is_ip(host) else host,
                                        limit=8 * 1024 * 1024),
                CONNECT_TIMEOUT)
        except (TimeoutError, OSError, ssl.SSLError) as e:
            reason = getattr(e, "reason", None)
            if reason == THROTTLED_ALERT:
                raise RefusedError(describe_connect_error(host, port, e)) from e
            if reason == BUSY_ALERT or _closed_early(e):
                raise _TryAgain(e) from e
            raise ConnectFailure(describe_connect_error(host, port, e)) from e
        try:
            info = await handshake(reader, writer, self.identity, self.opts.secret,
                                   self.opts.name, initiator=True, extra=self._hello_extra())
        except HandshakeError as e:
            writer.close()
            if e.code == "auth":
                raise RefusedError(f"{host}:{port}: {e}") from e
            if e.code == "closed":
                raise _TryAgain(e) from e
            raise ConnectFailure(describe_connect_error(host, port, e)) from e
        return await self._adopt_connection(reader, writer, info, True, f"{host}:{port}")

    def _hello_extra(self) -> dict:
        if self.roles is None:
            return {"role": "oneshot", "port": 0, SAME_KEY: 1,
                    "names": self.name_rules.to_wire()}
        extra = self.roles.announcement()
        del extra["device"], extra["name"]  # the hello carries those already
        return {**extra, SAME_KEY: 1, "names": self.name_rules.to_wire()}

    def _learn_names(self) -> None:
        """The names this folder's file system holds (app/core/namerules.py), once; kept
        in the index for what may not write in the folder (a dry run)."""
        self.name_rules = self.puller.names = namerules.probe(self.root)
        with contextlib.suppress(sqlite3.Error):
            self.index.set_meta(NAME_RULES_KEY, json.dumps(self.name_rules.to_wire()))
        if self.name_rules != namerules.LINUX:
            log.info("names here: %s", self.name_rules.describe())
        if not self.name_rules.case_sensitive:
            self.index.index_case()  # what case twins are looked up by (a thread: once O(n))

    def _forget_gone_devices(self) -> None:
        """Drop what each device not seen for FORGET_AFTER announced.

        Every device that ever connected left a row per file it held, for good: a
        laptop set up again (a new identity each time) left one more full set, and the
        index grew with every device ever met, as did the work a new one costs (with 86
        devices known, a new device's pages took 5x the first's: bench_index --devices).
        One that comes back after all is asked for its whole index, as a new device is.
        Done before any peer connects: none of them is told what we hold of it meanwhile.
        """
        try:
            known = [d for d in self.index.remote_devices() if d != self.device_id]
            gone = self.index.forget_devices(known, time.time() - FORGET_AFTER)
            names = self.index.device_names() if gone else {}
        except sqlite3.Error as e:  # a full disk: tried again at the next start
            log.debug("could not forget devices gone: %s", e)
            return
        for device, seen in gone.items():
            log.info("forgot what %s announced: not seen since %s; should it come back, it "
                     "sends its index again", names.get(device, device[:7]),
                     time.strftime("%Y-%m-%d", time.localtime(seen)))

    async def _authenticate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            timeout: float, on_reject) -> object:
        """The accepting side of the handshake (the listener times it and reports failures).

        While an invitation is open, the first message may start a pairing instead
        (app/engine/invites.py).
        """
        first = None
        if self.invites.accepting:
            first = await self.invites.first_message(reader, timeout)
            if first.get("t") == "pair":
                return await self.invites.accept(reader, writer, first, on_reject)
        return await handshake(reader, writer, self.identity, self.opts.secret, self.opts.name,
                               initiator=False, extra=self._hello_extra(), timeout=timeout,
                               on_reject=on_reject, first=first)

    async def _adopt_accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                              info: object, address: str) -> None:
        if not isinstance(info, PeerInfo):  # a pairing: the people decide, then the key goes
            self.invites.settle(info)
            return
        with contextlib.suppress(P2PError, ConnectFailure):
            await self._adopt_connection(reader, writer, info, False, address)

    def invite(self, on_change=None, lifetime: float | None = None):
        """Open an invitation to this share (app/engine/invites.py); returns it."""
        return self.invites.open(on_change, lifetime)

    @property
    def invitation(self):
        """The invitation opened last (app.net.pairing.Invitation), or None."""
        return self.invites.current

    async def _accept_link(self, raw: socket.socket, timeout: float) -> object:
        return await self.links.accept(raw, self._listener.ctx, timeout,
                                       [p.links for p in self.peers.values() if p.links])

    async def _adopt_link(self, found, address: str) -> None:
        self.links.adopt(found)

    def _fetcher(self, device: str):
        """The data links we fetch from device over, if it is connected."""
        peer = self.peers.get(device)
        return peer.links.fetcher if peer is not None and peer.links is not None else None

    def refused_sources(self) -> list[dict]:
        """Addresses whose connections were refused lately (wrong key, locked out...)."""
        if self._listener is None:
            return []
        return self._listener.recent(time.monotonic())

    async def _adopt_connection(self, reader, writer, info, outgoing: bool,
                                address: str) -> PeerState:
        empty = await asyncio.to_thread(self._empty_here)
        if info.device_id == self.device_id:
            writer.close()
            raise ConnectFailure(f"{address}: that is this device itself")
        existing = self.peers.get(info.device_id)
        if existing is not None:
            # Both dialled each other: keep the link the lower device ID made, on both ends.
            # One side dialled twice: the new link wins, on both ends. That side let the
            # old one go (a `sync` run again at once, a restart, a half-open link); the old
            # one kept lost the new sync for "the peer closed the connection" (CI, loaded).
            dialer_of_new = self.device_id if outgoing else info.device_id
            dialer_of_old = self.device_id if existing.conn.outgoing else info.device_id
            if dialer_of_old < dialer_of_new:
                writer.close()
                return existing
            await existing.conn.close("replaced by a second connection")
        conn = PeerConnection(reader, writer, info, outgoing=outgoing, address=address)
        peer = PeerState(conn, asked_contents=empty)
        self.peers[info.device_id] = peer
        if self.roles is not None:
            self.roles.link_up(info.device_id, {**info.extra, "name": info.name},
                               address.rpartition(":")[0])
        their_id, have = self.index.remote_state(info.device_id)
        peer.links = self.links.for_connection(conn)
        conn.send_nowait({"t": "start", "index_id": their_id, "have": have,
                          "mine": self.index.index_id, "rows": PAGE_ROWS,
                          **({"contents": True} if empty else {}),
                          **peer.links.start_fields()})
        peer.server = self._peer_task(peer, self._serve_requests(peer),
                                      "block requests could not be answered")
        self._spawn(self._run_connection(peer))
        log.info("connected to %s (%s) at %s", info.name, identity.short_id(info.device_id),
                 address)
        self.emit("peer_connected", self.peer_summary(peer))
        self._pull_wake.set()  # work left from before (an interrupted transfer) resumes now
        return peer

    def _peer_task(self, peer: PeerState, coro, what: str) -> asyncio.Task:
        """A task of one connection's: should it fail, the connection ends, and both
        sides say why.

        A sender that failed unseen (a page too large for a frame) left the connection
        up and silent: the peer waited for the rest of our index until its sync timed
        out, nothing in either log.
        """
        task = self._spawn(coro)

        def ended(task: asyncio.Task) -> None:
            if task.cancelled() or (e := task.exception()) is None or peer.conn.closed.is_set():
                return  # (ended with its connection: that says why)
            log.error("%s: %s: %s", peer.conn.info.name, what, e,
                      exc_info=None if isinstance(e, (OSError, sqlite3.Error)) else e)
            self._spawn(peer.conn.fail(f"{what}: {e}"))

        task.add_done_callback(ended)
        return task

    async def _run_connection(self, peer: PeerState) -> None:
        conn = peer.conn
        try:
            await conn.run(self._on_message)
        finally:
            if peer.links is not None:
                peer.links.close()
            for task in (peer.sender, peer.server):
                if task is not None:
                    task.cancel()
            if self.peers.get(conn.device_id) is peer:
                del self.peers[conn.device_id]
                if self.roles is not None:
                    self.roles.link_down(conn.device_id)
            self.left_because[conn.device_id] = conn.close_reason or ""
            if len(self.left_because) > NAMES_KEPT:
                del self.left_because[next(iter(self.left_because))]
            if not self._stopping:
                log.info("disconnected from %s: %s", conn.info.name, conn.close_reason)
            self._saw(conn.device_id)
            self.emit("peer_disconnected", {"device_id": conn.device_id,
                                            "reason": conn.close_reason})
            self._pull_wake.set()

    def peer_summary(self, peer: PeerState) -> dict:
        c = peer.conn
        if self.roles is not None:
            heard = self.roles.election.heard.get(c.device_id)
            role = heard.role if heard else c.info.extra.get("role", "")
        else:
            role = c.info.extra.get("role", "server")
        if role == "oneshot":
            role = "client"
        return {"device_id": c.device_id, "name": c.info.name,
                "address": self.listening_address(c.device_id) or c.address.rpartition(":")[0],
                "role": role, "state": "connected"}

    def listening_address(self, device: str) -> str:
        """Where a device accepts connections, "HOST:PORT"; "" when unknown or nowhere.

        Not the address its connection to us came from: that carries a random outgoing
        port, and maybe an interface it does not listen on.
        """
        heard = self.roles.election.heard.get(device) if self.roles is not None else None
        if heard is not None and heard.address:
            return f"{heard.address[0]}:{heard.address[1]}"
        peer = self.peers.get(device)
        if peer is not None and peer.conn.outgoing:
            return peer.conn.address
        return ""

    # --- messages --------------------------------------------------------------------
    async def _on_message(self, conn: PeerConnection, msg: dict) -> None:
        peer = self.peers.get(conn.device_id)
        if peer is None:
            raise ProtocolError("message on a dropped connection")
        t = msg["t"]
        if t == "start":
            self._on_start(peer, msg)
        elif t == "index":
            try:
                await self._on_index(peer, msg)
            except sqlite3.Error as e:  # the index's disk may be the full one
                log.debug("cannot store %s's index page: %s", conn.info.name, e)
                # closed at once, the next connection met the same full disk at once:
                # 4 a second, each a handshake and an index exchange
                await asyncio.sleep(SCAN_RETRY)
                raise LocalFailure(f"cannot store {conn.info.name}'s index here: {e}") from e
        elif t == "state":
            self._on_state(peer, msg)
        elif t == "links" and peer.links is not None:
            peer.links.on_message(msg)
        elif t == "role" and self.roles is not None:
            self.roles.hear({**msg, "device": conn.device_id, "name": conn.info.name},
                            conn.address.rpartition(":")[0])

    def _on_start(self, peer: PeerState, msg: dict) -> None:
        index_id, have = msg.get("index_id"), msg.get("have")
        if not isinstance(index_id, bytes) or not isinstance(have, int) or have < 0:
            raise ProtocolError("malformed 'start'")
        peer.sent_seq = have if index_id == self.index.index_id else 0
        peer.wants_contents = msg.get("contents") is True
        peer.page_max = peer.page_rows = page_rows_for(msg)
        # Its index was made anew (moved away, a new folder of the same device): it
        # holds nothing of what its old one announced back, and a "what you have" item
        # it cannot find was dropped as stale (the file never came). Full entries until
        # its pages replace the old index here (an earlier release says nothing: as
        # before).
        mine = msg.get("mine")
        if isinstance(mine, bytes):
            known = self.index.remote_state(peer.conn.device_id)[0]
            peer.same_index = not known or known == mine
        if peer.links is not None:
            peer.links.heard_start(msg)
        peer.sender = self._peer_task(peer, self._send_index(peer),
                                      "index pages could not be sent")
        self.names[peer.conn.device_id] = peer.conn.info.name
        if len(self.names) > NAMES_KEPT:  # identities cost a member nothing: keep the latest
            del self.names[next(iter(self.names))]
        with contextlib.suppress(sqlite3.Error):  # for `versions` and the like, later
            self.index.remember_name(peer.conn.device_id, peer.conn.info.name, NAMES_KEPT)
        self._saw(peer.conn.device_id)

    async def _on_index(self, peer: PeerState, msg: dict) -> None:
        """Check a batch of a peer's index and store it (in worker threads: the loop goes
        on meanwhile, and the next message is read once it is stored)."""
        index_id, entries, max_seq = msg.get("index_id"), msg.get("entries"), msg.get("max_seq")
        if not (isinstance(index_id, bytes) and len(index_id) <= 64
                and isinstance(entries, list) and len(entries) <= PAGE_ROWS
                and isinstance(max_seq, int) and 0 <= max_seq <= MAX_INT):
            raise ProtocolError("malformed 'index'")
        contents = _sent_contents(msg.get("contents"), len(entries))
        sent: dict[str, bytes] = {}  # path -> the content that came with its entry
        good: list[FileEntry] = []
        ours: list[tuple[str, int, int]] = []
        for i, item in enumerate(entries):
            if i % CHECKED_AT_ONCE == 0:
                # a page of 3,000 checked in one go was 34 ms on the loop, on top of its
                # frame's decoding, in a tiny-file first sync (and up to 77 ms at a million)
                await asyncio.sleep(0)
            if isinstance(item, list) and len(item) == 3:  # "what you have"
                if not (isinstance(item[0], str) and len(item[0]) <= 4096
                        and all(isinstance(n, int) and 0 <= n <= MAX_INT for n in item[1:])):
                    raise ProtocolError("malformed file entry")
                ours.append((item[0], item[1], item[2]))
                continue
            try:
                entry = FileEntry.from_wire(item)
            except EntryRefused as e:
                self._refused(peer, e.kind, str(e))
                continue
            except (ValueError, TypeError) as e:
                raise ProtocolError(f"malformed file entry: {e}") from e
            try:
                paths.validate(entry.path)
                if (entry.kind == Kind.LINK and not entry.deleted
                        and paths.link_escapes(entry.path, entry.target)):
                    raise paths.BadPath("a link that leads outside the folder")
            except paths.BadPath as e:
                if self._refused(peer, "path", "paths we refuse", say=False) \
                        <= REFUSED_PATHS_LOGGED:
                    log.warning("%s announced a path we refuse (%r): %s",
                                peer.conn.info.name, entry.path[:200], e)
                continue
            good.append(entry)
            if i in contents:
                sent[entry.path] = contents[i]
        more = msg.get("more")  # a device of an earlier release says it by a full page
        streaming = more if isinstance(more, bool) else len(entries) == EARLIER_PAGE_ROWS
        gone = [e.path for e in good if e.deleted]
        deleting = bool(gone) and await asyncio.to_thread(self._holds_live, gone)
        if deleting:  # said before the page can be in the index, as streaming is
            self._note_deletions(peer)
        # Said before the page can be in the index: an assessment whose snapshot holds
        # it judges its deletions with the rest (see `assess`). Ended after it is stored.
        peer.index_streaming |= streaming
        peer.pages += 1
        try:
            if peer.asked_contents:
                good = await self._take_arrivals(peer, good, sent, streaming)
            over = await asyncio.to_thread(self.index.put_remote, peer.conn.device_id,
                                           index_id, good, max_seq, ours)
        finally:
            peer.pages += 1
        if over:
            limits = self.index.remote_limits
            self._refused(peer, "budget", f"more entries than one device may have here "
                          f"({limits.entries:,} paths, {limits.bytes // 2**20} MiB)", over)
        peer.index_streaming = streaming
        if deleting:
            self._note_deletions(peer)  # the quiet that ends its burst starts now
        self._pull_wake.set()
        self.changed.set()

    def _holds_live(self, paths: list[str]) -> bool:
        return any(b[1] != BRIEF_DELETED for b in self.index.briefs_of(paths).values())

    def _note_deletions(self, peer: PeerState) -> None:
        """A page of the peer deletes files we hold: its deletions wait until they stop
        coming, then the mass-deletion guard judges them all together (as a peer's
        streaming index: `_streaming`). A watching device records an `rm -rf` as it
        goes, scan by scan, and sends it page by page, each page too small for the
        guard: 212 of 1,000 files were deleted here before it held the other 788.
        DELETIONS_WAIT_MAX bounds the wait for a device that deletes without pause."""
        now = time.monotonic()
        loop = asyncio.get_running_loop()
        if not peer.deletions_arriving(now):
            peer.deletions_since = now
            loop.call_later(DELETIONS_WAIT_MAX, self._deletions_may_have_settled)
        peer.deletions_last = now
        loop.call_later(DELETIONS_SETTLE, self._deletions_may_have_settled)

    def _deletions_may_have_settled(self) -> None:
        """A plan again: one whose deletions waited may be due (its key says so)."""
        self._pull_wake.set()
        self.changed.set()

    async def _take_arrivals(self, peer: PeerState, entries: list[FileEntry],
                             contents: dict[str, bytes], streaming: bool) -> list[FileEntry]:
        """New directories and small files of a page put in place as it comes in, with
        the contents the peer sent along (it does for a device whose folder was empty
        when they connected: a new device's first sync). Returns the entries left to
        store and plan as usual.

        Only for paths nothing here speaks of (`Index.unknown_paths`: no entry of ours,
        no row of any peer), so no plan could say anything but "fetch it" and no round
        can be at work on them; only where names need no screening against each other
        and nothing holds the pulls back (paused, a folder that looks unmounted). What
        was put in place is indexed as ours and as what the peer holds: no plan,
        request or round for it. Anything that fails here is left to the planner.
        """
        if (scan := self._first_scan) is not None and not scan.done():
            await asyncio.wait([scan])  # (a sync scans while it connects)
        names = self.puller.names
        if self.paused or self.unmounted is not None or names.strict or \
                not names.case_sensitive or self.first_scan_error is not None:
            return entries
        twice = {p for p, n in Counter(e.path for e in entries).items() if n > 1}
        dirs, files = [], []
        for e in entries:
            if e.deleted or e.path in twice or e.path == IGNORE_FILE or \
                    self.ignore.matches(e.path, e.kind == Kind.DIR):
                continue
            if e.kind == Kind.DIR:
                dirs.append(e)
            elif e.kind == Kind.FILE and e.size <= BLOCK_SIZE:
                data = contents.get(e.path, b"" if not e.size else None)
                if data is not None and len(data) == e.size:
                    files.append((e, data))
        if not dirs and not files:
            return entries
        above = {e.path: paths.ancestors(e.path) for e, _ in files}
        unknown, dirs_here = await asyncio.to_thread(
            self._arrival_facts, [e.path for e in dirs] + [e.path for e, _ in files],
            {p for chain in above.values() for p in chain})
        dirs = [e for e in dirs if e.path in unknown]
        # Only into directories indexed here or coming with the page (made and indexed
        # first: Puller.take_arrivals). Staging would make any other, and a scan that
        # met it there first would take it for a directory made here, its version going
        # back to the peer as a change nobody made: such files go the planned way, after
        # their directory's entry (a page can bring a directory's files before it).
        homes = dirs_here | {e.path for e in dirs}
        files = [(e, data) for e, data in files if e.path in unknown
                 and all(p in homes for p in above[e.path])]
        started = time.monotonic()
        done = await self.puller.take_arrivals(dirs, files, peer.conn.device_id,
                                               peer.conn.info.name)
        peer.arrivals[0] += len(done)
        peer.arrivals[1] += sum(len(data) for e, data in files if e.path in done)
        peer.arrivals[2] += time.monotonic() - started
        taken, size, took = peer.arrivals
        if taken >= ARRIVALS_LOGGED or (taken and not streaming):
            log.info("pulled %d change(s) in %.2f s (%d bytes fetched, 0 reused) with %s's "
                     "index", taken, took, size, peer.conn.info.name)
            peer.arrivals = [0, 0, 0.0]
        return [e for e in entries if e.path not in done]

    def _arrival_facts(self, paths: list[str], parents: set[str]) -> tuple[set[str], set[str]]:
        """(those of `paths` nothing here speaks of, those of `parents` that are
        directories of ours), in one trip to a worker thread."""
        briefs = self.index.briefs_of(sorted(parents)) if parents else {}
        return self.index.unknown_paths(paths), \
            {p for p, b in briefs.items() if b[1] == int(Kind.DIR)}

    def _refused(self, peer: PeerState, kind: str, what: str, n: int = 1,
                 say: bool = True) -> int:
        """Count entries of a peer refused for one limit; say it once per connection.

        Returns how many of that kind were refused so far. Refused entries are not
        stored, so they are never planned, fetched nor passed on to other devices.
        """
        total = peer.refused[kind] = peer.refused.get(kind, 0) + n
        name = peer.conn.info.name
        if say and total == n:
            log.warning("%s announced %s: refused, with any more like it (not stored, not "
                        "passed on)", name, what)
            self.emit("entries_refused", {"device_id": peer.conn.device_id, "name": name,
                                          "limit": kind, "what": what})
        elif kind == "path" and total == REFUSED_PATHS_LOGGED + 1:
            log.warning("%s announced more paths we refuse; they are not logged one by one",
                        name)
        return total

    def _on_state(self, peer: PeerState, msg: dict) -> None:
        if not all(isinstance(msg.get(k), int) for k in ("seq", "seen", "need")) or \
                not isinstance(msg.get("settling", 0), int):
            raise ProtocolError("malformed 'state'")
        blocked = msg.get("blocked", [])
        if not (isinstance(msg.get("nblocked", 0), int) and isinstance(blocked, list)
                and len(blocked) <= STATE_BLOCKED_MAX
                and all(isinstance(b, list) and len(b) == 2 and isinstance(b[0], str)
                        and isinstance(b[1], str) and len(b[0]) <= 4096 and len(b[1]) <= 500
                        for b in blocked)):
            raise ProtocolError("malformed 'state'")
        peer.last_state = msg
        # Its index ends once we stored it up to the seq its state tells of: a state can
        # come between two pages (its assessment ended meanwhile), and its deletions
        # must not be judged on the first page alone (the guard would see too few).
        if peer.index_streaming and \
                msg["seq"] <= self.index.remote_state(peer.conn.device_id)[1]:
            peer.index_streaming = False
            self._pull_wake.set()
        self.changed.set()

    async def _send_index(self, peer: PeerState) -> None:
        conn = peer.conn
        # what it got from us goes back as "what you have" (see Index.announce_since)
        to = conn.device_id if conn.info.extra.get(SAME_KEY) == 1 and peer.same_index \
            else None
        while not conn.closed.is_set():
            changes = self._local_changed.count
            # read in a worker thread: 100-280 ms a page on the loop at a million files
            items, last, more, contents = await asyncio.to_thread(
                self._page, peer.sent_seq, to, self._rescanner() if peer.wants_contents else None,
                peer.page_rows)
            # a page its contents cut short: the next reads about that many rows, not page_max
            peer.page_rows = min(peer.page_max, 2 * len(items)) if contents and more \
                else peer.page_max
            if last == peer.sent_seq:
                # it has our whole index (once our first scan made it): changes come as usual
                peer.wants_contents &= not self._first_scan_done()
                # Mid-round, counting what we need is a full pass that is stale at once:
                # one every MID_ROUND_STATE seconds then (the round sends fresh ones at its end).
                if not self._pulling or time.monotonic() - peer.state_sent > MID_ROUND_STATE:
                    self._send_state(peer)  # the latest assessment's word
                    self.assessed_now()  # and, if the index moved since, a new one says more
                await self._local_changed.wait_beyond(changes)
                continue
            peer.sent_seq = last
            frame = framing.encode_frame({
                "t": "index",
                "index_id": self.index.index_id,
                "entries": items,
                "max_seq": peer.sent_seq,
                "more": more,
                **({"contents": contents} if contents else {}),
            })
            # A page naming a huge file (100 GiB: 25 MiB of block hashes) is held twice
            # at most: the page while it is encoded, the frame while TLS takes it in;
            # neither while the transport drains.
            del items, contents
            conn.send_frame_nowait(frame)
            del frame
            await conn.drain()
            await asyncio.sleep(0)  # a send with room to spare does not give way by itself

    def _page(self, seq: int, to: str | None, rescan: Callable[[str], None] | None,
              rows: int = PAGE_ROWS) -> tuple[list, int, bool, list]:
        """A page of our index past seq (`Index.announce_since`, at most `rows`), and where
        the peer asked for them (`rescan` given), the contents of its small files
        (`with_contents`): then the page ends where they fill it."""
        items, last, more = self.index.announce_since(seq, rows, to)
        if rescan is None or not items:
            return items, last, more, []
        items, contents, cut = with_contents(self.root, self.index, rescan, items)
        if cut:
            tail = items[-1]
            last, more = (tail[11] if len(tail) == 12 else tail[1]), True
        return items, last, more, contents

    def _send_state(self, peer: PeerState) -> None:
        """Where we are with this peer, as the latest assessment saw it: `need` counts
        what we need of everything in `seen` (both read before it ran), so a peer's
        sync can end on it."""
        if not self._first_scan_done():
            return  # see _scan_first
        device = peer.conn.device_id
        assessed = self._assessed
        peer.state_sent = time.monotonic()
        # Only the failures that concern its own files (it announced them alive): what
        # we could not take from a third device, a member's junk above all, is not its
        # sync's business, and must not make that sync fail.
        blocked = sorted(self.index.announced_alive(device, list(self.blocked))) \
            if self.blocked else []
        peer.conn.send_nowait({
            "t": "state",
            "seq": self.index.max_seq(),
            "seen": assessed.seen.get(device, 0) if assessed is not None else 0,
            "need": assessed.counts.get(device, 0) if assessed is not None else 0,
            "nblocked": len(blocked),
            "blocked": [[p, self.blocked[p][:500]] for p in blocked[:STATE_BLOCKED_MAX]],
            "settling": len(self.settling),
        })

    async def _serve_requests(self, peer: PeerState) -> None:
        """Answer the peer's block requests, in their own task (see `answer_requests`)."""
        conn = peer.conn
        conn.on_answering = self._pull_wake.set  # a peer that stalled is asked again
        rescan = self._rescanner()
        await answer_requests(conn, lambda items: OpenFiles(self.root, self.index, rescan,
                                                            items), self._serving)

    def _rescanner(self) -> Callable[[str], None]:
        """`request_rescan` for a serving thread (one that found a file changed)."""
        loop = asyncio.get_running_loop()

        def rescan(rel: str) -> None:
            with contextlib.suppress(RuntimeError):  # (the loop closed meanwhile)
                loop.call_soon_threadsafe(self.request_rescan, rel)

        return rescan

    # --- pulling ---------------------------------------------------------------------
    def plan(self) -> list[Action]:
        """What to do now: the latest assessment's plan (`assess` brings it up to date)."""
        return self._assessed.actions if self._assessed is not None else []

    def need_counts(self) -> dict[str, int]:
        """device -> how many paths we still need from that device alone."""
        return dict(self._assessed.counts) if self._assessed is not None else {}

    def need_count(self, device: str) -> int:
        return self._assessed.counts.get(device, 0) if self._assessed is not None else 0

    def _assess_key(self) -> tuple:
        return (self.index.generation, tuple(sorted(self.peers)), tuple(self.ignore.patterns),
                self._blocked_gen, self._streaming(), len(self._approved))

    def assessed_now(self) -> bool:
        """Whether the latest assessment is up to date; if not, one is started."""
        if self._assessed is not None and self._assessed.key == self._assess_key():
            return True
        if self._assessing is None or self._assessing.done():
            self._assessing = self._spawn(self._assess_soon())
        return False

    async def _assess_soon(self) -> None:
        """`assess` for those that only poll `assessed_now`: one that fails (it settles
        rows, and the index's disk may be full) is tried again at the next poll."""
        try:
            await self.assess()
        except (OSError, sqlite3.Error) as e:
            log.debug("could not plan: %s", e)
            self.trouble = str(e)

    async def assess(self) -> Assessment:
        """The plan, and what each peer has for us, over the index's planning window.

        Worked out in a worker thread (see app/engine/assessment.py) and kept until the
        index, the peers or the ignore patterns change: the pull loop, the state
        messages and `sync`'s polling all ask, several times per change.
        """
        async with self._assess_lock:
            key = self._assess_key()
            if self._assessed is not None and self._assessed.key == key:
                return self._assessed
            if self._ignore_seen != key[2]:
                if self._ignore_seen is not None:  # rows settled under other rules
                    await asyncio.to_thread(self.index.unsettle)
                self._ignore_seen = key[2]
                key = self._assess_key()
            inputs = self._inputs(key)
            for _ in range(STALE_PLAN_TRIES):
                result, stale = await self._plan(key, inputs)
                if not stale:
                    break
            if not stale:  # a plan read behind may miss a deletion that has not run yet
                self._approved &= result.deleting  # confirmed deletions that ran wait no longer
            self._assessed = result
            self.changed.set()
            if not self._pulling:  # news for peers waiting on our word (mid-round: see above)
                for peer in list(self.peers.values()):
                    self._send_state(peer)
            return result

    async def _plan(self, key: tuple, inputs: Inputs) -> tuple[Assessment, bool]:
        """One plan, in a worker thread, and whether it was read behind (then it is not
        current: its `key` is `()`)."""
        before = self._remote_states()
        pages = {d: p.pages for d, p in self.peers.items()}
        result = await asyncio.to_thread(assess, self.index, key, inputs)
        if paged := {d for d, p in self.peers.items() if p.pages != pages.get(d)}:
            result = without_deletions(result, paged)
        # less of a peer's index (or none of it) than was stored before: a stale read
        # (not a peer that started its index over, whose seqs begin again)
        if behind := [d for d, (iid, n) in before.items()
                      if result.ids.get(d) in (iid, b"") and result.seen.get(d, 0) < n]:
            self._stale_plan(behind)
            return dataclasses.replace(result, key=()), True  # the next one asks again
        return result, False

    def _inputs(self, key: tuple) -> Inputs:
        """What a plan of this key is made of, as the node knows it now."""
        return Inputs(frozenset(self.peers), key[4], self.ignore, frozenset(self.blocked),
                      frozenset(self._approved), self.opts.allow_mass_delete)

    def _remote_states(self) -> dict[str, tuple[bytes, int]]:
        """peer -> (its index id, the highest seq of it we stored)."""
        return {d: self.index.remote_state(d) for d in self.peers}

    def _stale_plan(self, behind: list[str]) -> None:
        """A plan whose snapshot held less of a peer's index than was stored before it
        began: its reader connection was left behind (a `sync` that trusted it ended
        "in sync" without a file, twice on CI). Every reader is opened again."""
        log.warning("the index read for a plan was behind its latest write (%s); "
                    "reading it afresh", ", ".join(self.peers[d].conn.info.name
                                                  for d in behind if d in self.peers))
        self.index.renew_readers()

    def _streaming(self) -> frozenset[str]:
        """The peers halfway through sending their index, or a burst of deletions
        (`_note_deletions`): their deletions are judged once all of them are here."""
        now = time.monotonic()
        return frozenset(d for d, p in self.peers.items()
                         if p.index_streaming or p.deletions_arriving(now))

    def set_paused(self, paused: bool) -> None:
        """Pause: no more files are fetched (the ones in flight finish); resume wakes it."""
        self.paused = paused
        if not paused:
            self._pull_wake.set()
        self.emit("paused", {"paused": paused})

    async def sync_now(self) -> None:
        """The GUI's "Sync now": a full rescan, then a pull round, at once."""
        await self.scan_now()
        self._pull_wake.set()

    async def _pull_loop(self) -> None:
        while True:
            await self._pull_wake.wait()
            self._pull_wake.clear()
            if self.paused or not self._first_scan_done():
                continue  # (a plan of an index still being filled: `_scan_first` wakes us)
            self._pulling = True
            try:
                await self._pull_once()
                self.trouble = ""
            except Exception as e:  # noqa: BLE001 - the next round tries again
                if isinstance(e, OSError | sqlite3.Error):  # the index's disk may be full
                    log.warning("pull round failed: %s", e)
                    self.trouble = str(e)
                else:
                    log.exception("pull round failed")
                self._ahead = None  # what the round left is planned first
                await asyncio.sleep(1)
            finally:
                self._pulling = False
            if not self._pull_wake.is_set():  # done for now: say so (else the next round)
                try:
                    await self.assess()
                except (OSError, sqlite3.Error) as e:  # the index's disk may be full
                    log.warning("could not plan: %s", e)
                    self.trouble = str(e)
                    self._retry_soon()
                for peer in list(self.peers.values()):
                    self._send_state(peer)
            self.changed.set()

    async def _pull_once(self) -> None:
        if self.unmounted is not None:
            return  # nothing is written into a folder that looks unmounted
        started = time.monotonic()
        assessed = await self._planned_ahead()
        ahead = assessed is not None
        if assessed is None:
            assessed = await self.assess()
        log.debug("assessed in %.2f s%s: %d action(s), %d move(s)", time.monotonic() - started,
                  " (planned during the last round)" if ahead else "",
                  len(assessed.actions), len(assessed.renames))
        actions = assessed.actions
        self._report_held()
        await self._cleanup_temps(actions)  # no round runs now: every temp is at rest
        if not actions and not assessed.renames:
            self.failures.clear()
            self._set_blocked({})
            return
        started = time.monotonic()
        actions, renames = self._ignore_file_first(actions, assessed.renames)
        if len(actions) == len(assessed.actions):
            self._plan_ahead(assessed)
        result = await self.puller.run_round(actions, renames)
        if result.failed or result.waiting:  # those rows are planned again first
            self._ahead = None
        if self._assessed is assessed:  # done with: hold none of it meanwhile, and plan
            assessed.actions, assessed.renames = [], []  # again even if nothing changed
            assessed.key = ()  # (a round that failed for every file is retried in 2 s)
        await self._reload_ignore()  # a peer's .p2psyncignore may have come in
        self.failures = result.failed
        self._set_blocked(result.blocked)
        if result.done:
            log.info("pulled %d change(s) in %.2f s (%d bytes fetched, %d reused)",
                     result.done, time.monotonic() - started, result.bytes_fetched,
                     result.bytes_reused)
            self._local_changed.set()
            self._pull_wake.set()  # more may be possible now
        elif result.failed:
            self._retry_soon()

    def _retry_soon(self) -> None:
        """A round in 2 s. One timer at a time: one per failed round kept the rounds of a
        lasting failure (a full disk) 20 ms apart, every round adding a timer."""
        if self._retry is None or self._retry.done():
            self._retry = self._spawn(self._retry_later())

    def _plan_ahead(self, assessed: Assessment) -> None:
        """Plan the next window while this one's round runs (a pull of tiny files spent
        a tenth of its time between rounds, planning, with nothing fetched).

        Only where the rounds cannot touch each other: one peer (its rows of one path
        are in one window), and a plan that only brings files in (what a deletion or a
        move waits for, and what the guard counts, depend on the round before it).
        `_planned_ahead` takes it only if nothing else changed meanwhile.
        """
        self._ahead = None
        if len(self.peers) != 1 or {d for d, _ in assessed.ends} != self.peers.keys() or \
                not arrivals_only(assessed):
            return  # (rows of a device gone: its window is planned too, paths in common)
        key = self._assess_key()
        plan = self._spawn(asyncio.to_thread(assess, self.index, (), self._inputs(key),
                                             assessed.ends))
        plan.add_done_callback(lambda t: t.cancelled() or t.exception())  # maybe unused
        self._ahead = _Ahead(plan, key[1:], self._remote_states(), self.index.max_seq(),
                             frozenset(a.path for a in assessed.actions))

    async def _planned_ahead(self) -> Assessment | None:
        """The plan `_plan_ahead` made, as the current one, if it still holds: the same
        peer, rules and confirmations; no index page of the peer stored since it began;
        no local change but the round's own; and something to do (the plan that finds
        nothing is always made afresh: a row the round left pending is in no window
        past it). None where it does not (the caller plans as usual)."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return None
        try:
            result = await ahead.plan
        except Exception:  # noqa: BLE001 - a plan made afresh says what went wrong
            return None
        if not result.actions or not arrivals_only(result) or \
                any(a.path in ahead.paths for a in result.actions) or \
                any(result.seen.get(d, 0) < n for d, (_, n) in ahead.remote.items()):
            return None
        async with self._assess_lock:
            changed = await asyncio.to_thread(  # (one more than the round's: enough to tell)
                self.index.paths_changed_since, ahead.local_seq, len(ahead.paths) + 1)
            key = self._assess_key()
            if key[1:] != ahead.key or not changed <= ahead.paths or \
                    self._remote_states() != ahead.remote:
                return None
            result.key = key
            self._assessed = result
        self.changed.set()
        return result

    def _ignore_file_first(self, actions: list[Action], renames: list
                           ) -> tuple[list[Action], list]:
        """A peer's new .p2psyncignore alone, when it comes with other changes: the round
        after it is planned under its rules, so what it ignores is never fetched. Not
        when it failed last time: the rest of the share must not wait on it."""
        first = [a for a in actions if a.path == IGNORE_FILE
                 and a.path not in self.failures and a.path not in self.blocked]
        if first and (len(actions) > 1 or renames):
            return first, []
        return actions, renames

    def _set_blocked(self, blocked: dict[str, str]) -> None:
        """Remember what cannot be synced now; `status` and the window show it as error."""
        if blocked == self.blocked:
            return
        self.blocked = dict(blocked)
        self._blocked_gen += 1
        try:
            self.index.set_failures(self.blocked)
        except sqlite3.Error as e:  # the config dir's disk may be the full one
            log.warning("could not record the files that failed to sync: %s", e)
        self.emit("blocked", {"paths": dict(self.blocked)})

    def problems(self, devices: list[str]) -> list[str]:
        """One line per file that could not be synced, here or on one of these peers.

        A peer's failures count where they concern our version of a file (it has not
        got it); what it could not take from some other device is not this sync's
        business.
        """
        lines = [f"{escaped(path)}: {escaped(why)}" for path, why in sorted(self.blocked.items())]
        lines += self._local_problems()
        for device in devices:
            peer = self.peers.get(device)
            st = peer.last_state if peer else None
            if not st:
                continue
            name = peer.conn.info.name
            theirs = {p: escaped(why[:500]) for p, why in st.get("blocked", [])}  # its words
            ours = self.index.get_many(list(theirs))
            lines += [f"{escaped(path)} (on {name}): {why}" for path, why in theirs.items()
                      if path in ours and not ours[path].deleted
                      and self._lacks_ours(device, ours[path])]
            more = st.get("nblocked", 0) - len(theirs)
            if more > 0:
                lines.append(f"... and {more} more file(s) on {name}")
        return lines

    def _local_problems(self) -> list[str]:
        """Our own files that no device gets: unreadable ones, names that cannot be
        synced (the scanner lists them, see app/core/why.py for the words)."""
        unreadable, count = self.index.unreadable(STATE_BLOCKED_MAX)
        lines = [f"{escaped(path)}: {why_text.error(reason)}" for path, reason in unreadable]
        if count > len(unreadable):
            lines.append(f"... and {count - len(unreadable)} more unreadable file(s) here")
        skipped = sorted(self.index.skipped().items())
        lines += [f"{escaped(path)}: {reason}" for path, reason in skipped[:STATE_BLOCKED_MAX]]
        if len(skipped) > STATE_BLOCKED_MAX:
            lines.append(f"... and {len(skipped) - STATE_BLOCKED_MAX} more name(s) here that "
                         "cannot be synced (`p2psync status` lists them)")
        return lines

    def _lacks_ours(self, device: str, ours: FileEntry) -> bool:
        their = self.index.remote_get(device, ours.path)
        return their is None or their.version != ours.version

    async def _retry_later(self) -> None:
        await asyncio.sleep(2)
        self._pull_wake.set()

    def _saw_temps(self, seen: list[str], whole: bool) -> None:
        """Temp files a scan passed over (`whole`: all there are). One nobody knew of
        wakes a round, whose cleanup judges it: a directory renamed by its user while a
        transfer into it was interrupted brings that transfer's temp file under a new
        path, which no fetch will resume (its name hashes the old path). Left to the
        minutely full scan, it stayed in a folder that had converged, as no round ran
        after that scan."""
        new = set(seen) - self.temps - self.puller.temps
        self.temps = set(seen) if whole else self.temps | new
        if new:
            self._pull_wake.set()

    async def _cleanup_temps(self, actions: list[Action] | None = None) -> None:
        """Remove the temp files no transfer will resume.

        A large file's temp file stays while the plan (`actions`, default: now) would
        fetch that very version of that path, the fetch is not blocked (a full disk, a
        refused name), and one of its peers is connected or the file was written within
        TEMP_KEEP: a short interruption resumes. The rest goes: a version superseded or
        no longer wanted (fetched elsewhere, deleted, ignored), a transfer whose peers
        left a day ago, leftovers a scan found; and all of them once nothing is left
        to fetch. Temp files of transfers running now are never touched.
        """
        known = (self.temps | self.puller.temps) - self.puller.active
        if not known:
            return
        if actions is None:  # a fresh plan (before the first one, `plan()` keeps none)
            actions = (await self.assess()).actions
        keep = self._resumable_temps(actions, known)
        gone = known - keep
        if not gone:
            return
        async with self.disk_lock:
            for rel in gone - self.puller.active:
                with contextlib.suppress(OSError, paths.BadPath):
                    os.unlink(paths.safe_join(self.root, rel))
                self.temps.discard(rel)
                self.puller.temps.discard(rel)
        log.debug("removed %d temp file(s) no transfer will resume", len(gone))

    def _resumable_temps(self, actions: list[Action], known: set[str]) -> set[str]:
        """Those of the known temp files a planned fetch would resume (see _cleanup_temps)."""
        keep: set[str] = set()
        now = time.time()
        for a in actions:
            if a.op != FETCH or a.target.size <= BLOCK_SIZE or a.path in self.blocked:
                continue
            rel = paths.temp_name_for(a.path, a.target.hash)
            if rel not in known:
                continue
            if any(d in self.peers for d in a.sources):
                keep.add(rel)
                continue
            try:
                if now - os.lstat(paths.safe_join(self.root, rel)).st_mtime < TEMP_KEEP:
                    keep.add(rel)
            except (OSError, paths.BadPath):
                pass
        return keep

    # --- the mass-deletion guard ------------------------------------------------------
    def held_back(self) -> HeldDeletions | None:
        """What waits for a confirmation now: this folder's own files, or a plan's deletions."""
        return self.unmounted or (self._assessed.held if self._assessed is not None else None)

    def held_message(self, held: HeldDeletions) -> str:
        return describe(held, self.device_label)

    def device_label(self, device: str) -> str:
        """A device as people know it, "laptop (ABCDEFG)"; "device ABCDEFG" when unknown."""
        name = ""
        if device == self.device_id:
            name = self.opts.name
        elif device in self.peers:
            name = self.peers[device].conn.info.name
        elif self.roles is not None and device in self.roles.election.heard:
            name = self.roles.election.heard[device].name
        elif device in self.names:  # connected earlier, gone now
            name = self.names[device]
        short = identity.short_id(device)
        return f"{name} ({short})" if name else f"device {short}"

    def _report_held(self) -> None:
        """One log line and one event per change of what is held back (not every round)."""
        held = self.held_back()  # a streaming peer's deletions are judged once all are here
        if held is None and self._streaming():
            return  # what it said stands until then
        key = held.key() if held is not None else None
        if key == self._held_said:
            return
        self._held_said = key
        if held is None:
            self.emit("mass_delete_cleared", {})
            return
        # a one-shot sync says it once, in its error (exit 6)
        log.log(logging.WARNING if self.opts.elect else logging.DEBUG,
                "%s (confirm it in the app, or run with --allow-mass-delete to apply it)",
                self.held_message(held))
        self.emit("mass_delete_held", {
            "reason": held.reason, "deletes": held.deletes, "of": held.of,
            "devices": [{"device_id": d, "name": self.device_label(d), "deletes": n}
                        for d, n in held.by],
            "message": self.held_message(held)})

    async def _check_folder(self) -> bool:
        """Whether the folder is there to scan and to write into (see app.core.marker)."""
        missing = await asyncio.to_thread(marker.check, self.root, self.index)
        if missing is not None and self.opts.allow_mass_delete:
            missing = await self._accept_missing(missing)
        was, self.unmounted = self.unmounted, None
        if missing is not None:
            self.unmounted = unmounted(missing.missing, missing.live, self.device_id)
        if self.unmounted != was:
            self._report_held()
        return self.unmounted is None

    async def _accept_missing(self, missing: marker.Missing) -> marker.Missing | None:
        """The user confirmed: the marker comes back and the missing files count as deleted."""
        if not await asyncio.to_thread(marker.make, self.root, self.index):
            return missing
        log.warning("the folder's .p2psync marker was gone and %d of %d files are missing: "
                    "their deletion goes to the other devices", missing.missing, missing.live)
        return None

    async def delete_held(self) -> None:
        """The app's "Delete them": apply what is held back now, once."""
        held = self.held_back()
        if held is None:
            return
        if held.reason == UNMOUNTED:
            async with self.disk_lock:
                if await self._accept_missing(marker.Missing(held.deletes, held.of)) is None:
                    self.unmounted = None
            self.request_rescan(None)  # records the deletions the marker check held back
            self._report_held()
        else:
            log.info("deleting the %d held-back file(s), as confirmed", held.deletes)
            self._approved |= held.paths
            self._answered()
        self._pull_wake.set()

    async def keep_held(self) -> int:
        """The app's "Keep them": our copies beat the deletions, and go back to the others.

        Returns how many files (and links) were kept. An unmounted folder keeps waiting
        instead: its files are not here to keep.
        """
        held = self.held_back()
        if held is None or held.reason == UNMOUNTED:
            return 0
        async with self.disk_lock:
            self.puller.flush()
            kept = await asyncio.to_thread(keep_local, self.root, self.index, held.paths)
        files = sum(1 for e in kept if e.kind != Kind.DIR)
        log.info("kept %d file(s) whose deletion was held back: they go back to the other "
                 "devices", files)
        for rel in held.paths.difference(e.path for e in kept):
            self.request_rescan(rel)  # changed on disk meanwhile: the scan says what it is
        self._local_changed.set()
        self._answered()
        self._pull_wake.set()
        return files

    def _answered(self) -> None:
        """The user answered what is held: the app asks no more, and whatever is held
        after this is a new question, even where it looks the same (the same device
        deleting as many files again after "Keep them": its key is the old one's)."""
        self._held_said = None
        self.emit("mass_delete_cleared", {})

    # --- agreement -------------------------------------------------------------------
    async def wait_idle(self) -> None:
        """Until no scan or pull is pending, and no temp file is left behind."""
        while self._pulling or self._pull_wake.is_set() or self._rescan_wake.is_set():
            await asyncio.sleep(0.02)
        await self._cleanup_temps()

    def in_sync_with(self, device: str) -> bool:
        peer = self.peers.get(device)
        if peer is None or peer.last_state is None or self._pulling or self.disk_lock.locked():
            return False
        if not self._first_scan_done():
            return False
        if not self.assessed_now() or peer.deletions_arriving(time.monotonic()):
            return False  # (its deletions wait: no plan has them yet)
        st = peer.last_state
        assessed = self._assessed
        # what our up-to-date plan was made from holds all the peer told of
        return (st["seen"] >= self.index.max_seq() and st["need"] == 0
                and assessed is not None and st["seq"] <= assessed.seen.get(device, 0)
                and self.need_count(device) == 0
                and not st.get("settling") and not self.settling)

    def progress_text(self, device: str) -> str:
        peer = self.peers.get(device)
        mine = self.need_count(device)
        theirs = peer.last_state["need"] if peer and peer.last_state else "?"
        settling = peer.last_state.get("settling", 0) if peer and peer.last_state else 0
        writing = f", {settling} file(s) still being written there" if settling else ""
        return f"{mine} change(s) to fetch here, {theirs} on the peer{writing}"

    def busy(self) -> bool:
        """Work in flight that a role change must not cut in half."""
        return self._pulling or bool(self.puller.in_progress)

    def _saw(self, device: str) -> None:
        """Remember when a device was last connected: "offline since 14:02" in status.

        In a worker thread: it waits for the index lock, which a batch of files being
        indexed holds (a peer that left mid-pull held the loop 110-170 ms here). While
        stopping, `stop` writes it (a worker's turn could be cancelled before it came)."""
        if self._stopping:
            self._left_at_stop[device] = time.time()
        else:
            self._spawn(asyncio.to_thread(self._saw_now, device, time.time()))

    def _saw_now(self, device: str, when: float) -> None:
        with contextlib.suppress(sqlite3.Error):  # (closed meanwhile: stopped)
            self.index.saw_device(device, when, NAMES_KEPT)

    def transfers(self) -> dict[str, list[int]]:
        """The downloads in progress, path -> [bytes done, size] (for the control socket:
        `status` says how far an incoming file is)."""
        return {p: [done, size] for p, (done, size) in list(self.puller.in_progress.items())}

    def node_info(self) -> dict:
        # an electing node not electing yet (its first scan, or a wait for space) is no
        # client: it has met no server
        role = self.roles.role if self.roles is not None else \
            "electing" if self.opts.elect else "client"
        return {"role": role, "peers": [self.peer_summary(p) for p in self.peers.values()]}


@dataclasses.dataclass
class _Ahead:
    """A plan of the next window, being made while a round runs (Node._plan_ahead)."""

    plan: asyncio.Task[Assessment]
    key: tuple  # the node's assessment key, less the index generation
    remote: dict[str, tuple[bytes, int]]  # the peer's index as stored when it began
    local_seq: int  # our latest local change when it began
    paths: frozenset[str]  # those of the round under way


def _sent_contents(raw: object, n: int) -> dict[int, bytes]:
    """The contents an index page of n entries came with: entry number -> its bytes."""
    if raw is None:
        return {}
    if not (isinstance(raw, list) and len(raw) <= n and all(
            isinstance(c, list) and len(c) == 2 and isinstance(c[0], int) and 0 <= c[0] < n
            and isinstance(c[1], bytes) and len(c[1]) <= BLOCK_SIZE for c in raw)):
        raise ProtocolError("malformed 'index' contents")
    return {i: data for i, data in raw}


def _listen_hint(e: OSError, host: str) -> str:
    """What to do about an address this node cannot listen on."""
    if isinstance(e, socket.gaierror):
        return f"{host} is no name this machine knows: give one of its addresses"
    if e.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine; 0.0.0.0 listens on all of them"
    if e.errno == errno.EACCES:
        return "a port below 1024 needs more rights: pick another with --listen"
    return "is another p2psync using that port? pick one with --listen"


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return True
    except OSError:
        return False


def _index_full(e: Exception) -> bool:
    """Whether e says the disk (of the folder or of the index) has no room left."""
    return diskio.is_no_space(e) or (isinstance(e, sqlite3.Error) and getattr(
        e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL)
