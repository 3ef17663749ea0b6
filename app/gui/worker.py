"""The one bridge between the engine and the window.

The engine (app.engine.node.Node) runs on its own asyncio event loop inside a QThread.
Everything the window shows is produced there or in helper threads of that loop
(index reads, file states, reading conflict versions) and crosses over as a Qt
signal, which Qt queues into the GUI thread. The other direction, the window asking
the engine for something (sync now, pause, resolve a conflict, stop), goes through
`loop.call_soon_threadsafe` / `asyncio.run_coroutine_threadsafe`. Widgets are never
touched from the engine thread, and the GUI thread never waits for disk or network.

Engine events are collected as they come and flushed at most every TICK seconds:
a sync of 10,000 files is some dozens of batches for the window, not 10,000 calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from dataclasses import dataclass, replace

from PySide6.QtCore import QObject, QThread, Signal

from app.aio import cancel_and_wait, unless_stopped
from app.core import conflicts, restore
from app.core.states import details
from app.core.units import human_size
from app.core.why import Devices
from app.engine.control import ControlServer, NotPrivateError
from app.engine.node import Node, NodeOptions, node_once_there_is_space
from app.engine.preview import live_preview
from app.errors import P2PError
from app.gui.completion import Completion
from app.gui.filestates import StateTracker
from app.gui.massdelete import held_paths
from app.gui.models import prepare_rows
from app.gui.peerrows import PeerBook
from app.gui.preview import collect as collect_preview
from app.gui.rates import RateMeter
from app.gui.versionsview import SHOWN_MAX, VersionRow

log = logging.getLogger("p2psync.gui")

TICK = 0.25  # longest wait between two flushes to the window
MIN_GAP = 0.15  # shortest: bursts of events are coalesced
PEERS_EVERY = 1.0  # peers table and transfer rates
STOP_TIMEOUT = 15.0
SUMMARIZE_ABOVE = 5  # more files than this in one flush: one activity line for all


@dataclass(frozen=True)
class Activity:
    when: float
    kind: str  # received, deleted, moved, conflict, error, peer, role, paused, local, info
    text: str


class _EngineThread(QThread):
    def __init__(self, worker: EngineWorker) -> None:
        super().__init__()
        self.worker = worker
        self.setObjectName("p2psync-engine")

    def run(self) -> None:
        self.worker._thread_main()


class EngineWorker(QObject):
    """Starts, drives and stops one Node in a QThread; reports through signals."""

    started = Signal(object)  # {"device_id", "name", "listen", "folder"}
    failed = Signal(str)  # the engine could not start, or stopped on an error
    stopped = Signal()  # the thread has finished
    files_reset = Signal(object)  # models.Prepared: every row, built in a helper thread
    files_update = Signal(object, object)  # changed rows, removed paths
    progress = Signal(object)  # {path: (bytes done, size)} of files coming in now
    peers = Signal(object)  # list of dicts, this device first
    # {"role", "server_name", "paused", "busy", "connected", "rate_in", "rate_out",
    #  "ever_connected" (a device of the share was ever met), "refused_us" (addresses), ...}
    status = Signal(object)
    activity = Signal(object)  # list of Activity
    notify = Signal(str, str)  # title, message: a conflict or an error, for the tray
    # copy path, Side of the original, of the copy, (whose each version is: device names)
    conflict_sides = Signal(str, object, object, object)
    resolved = Signal(str, object, str, str)  # copy path, paths changed, error, what was done
    sync_done = Signal()  # the rescan of "Sync now" is done; transfers go on
    mass_delete = Signal(object)  # the engine's mass_delete_held data; None once settled
    invitation = Signal(object)  # the engine's `invitation` event: code, state, peer, why
    foreign_nearby = Signal(int, str)  # devices nearby that use another key: count, sentence
    preview_ready = Signal(object)  # gui.preview.PreviewResult, or why there is none (str)
    file_details = Signal(str, object)  # path, app.core.states.details (the details pane)
    # app/gui/versionsview.py: (path or None, [VersionRow] newest first, how many are kept,
    # why they could not be read: "" when they could)
    versions_listed = Signal(object, object, int, str)
    version_restored = Signal(str, str, str)  # path, what was done, error ("" when none)

    def __init__(self, opts: NodeOptions, parent: QObject | None = None, *,
                 any_port_if_taken: bool = False) -> None:
        super().__init__(parent)
        self.opts = opts
        self.any_port_if_taken = any_port_if_taken  # the listen address was not asked for
        self._thread = _EngineThread(self)
        self._thread.finished.connect(self._on_finished)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._stop_requested = threading.Event()
        self._ready = threading.Event()
        self.node: Node | None = None  # only for the engine thread and tests
        # engine-thread state
        self._events: list[tuple[str, dict]] = []
        self._wake: asyncio.Event | None = None
        self._extra_paths: set[str] = set()
        self.book = PeerBook()  # the devices met this run, for their rows once gone
        self.rates = RateMeter()
        self._needs: dict = {}  # device -> completion.Need
        self._ever_connected = False
        self._scanning = True

    # --- GUI thread side -----------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def is_running(self) -> bool:
        return self._thread.isRunning()

    @property
    def thread_object(self) -> QThread:
        return self._thread

    def stop(self) -> None:
        """Ask the engine to stop; `stopped` is emitted once the thread has ended."""
        self._stop_requested.set()
        loop, ev = self._loop, self._stop_event
        if loop is not None and ev is not None:
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                loop.call_soon_threadsafe(ev.set)

    def wait(self, timeout_s: float = STOP_TIMEOUT + 5) -> bool:
        """Block until the thread ended (only at exit, when nothing is left to paint)."""
        return self._thread.wait(int(timeout_s * 1000))

    def sync_now(self) -> None:
        self._submit(self._sync_now())

    def set_paused(self, paused: bool) -> None:
        self._call(lambda: self.node.set_paused(paused))

    def delete_held(self) -> None:
        """ "Delete them": apply the deletions the mass-deletion guard holds back."""
        self._submit(self._held_choice(keep=False))

    def keep_held(self) -> None:
        """ "Keep them": this device's copies win, and go back to the other devices."""
        self._submit(self._held_choice(keep=True))

    def preview(self) -> None:
        """What Sync now would do; the answer comes as `preview_ready`."""
        self._submit(self._preview())

    def load_conflict(self, copy: str) -> None:
        self._submit(self._load_conflict(copy))

    def load_details(self, path: str) -> None:
        """A file's state, why and history: they come as `file_details`."""
        self._submit(self._load_details(path))

    def resolve(self, copy: str, how: str) -> None:
        """how: "original" (keep this one), "copy" (keep the other) or "both"."""
        self._submit(self._resolve(copy, how))

    def list_versions(self, path: str | None) -> None:
        """The versions kept of path (None: of every file): a `versions_listed` signal."""
        self._submit(self._list_versions(path))

    def restore_version(self, path: str, at: str) -> None:
        """Put the version of path kept at `at` back: a `version_restored` signal."""
        self._submit(self._restore_version(path, at))

    # --- pairing (app/gui/pairing.py) ------------------------------------------------
    def invite(self) -> None:
        """Open an invitation on the node; its states come as `invitation` signals."""
        def open_it() -> None:
            try:
                self.node.invite()
            except Exception as e:  # noqa: BLE001 - shown in the dialog, never a crash
                self.invitation.emit({"state": "failed", "why": str(e), "code": "",
                                      "peer": None, "left": 0})

        self._call(open_it)

    def decide_invitation(self, ok: bool) -> None:
        self._call(lambda: self.node.invitation and self.node.invitation.decide(ok))

    def cancel_invitation(self) -> None:
        self._call(lambda: self.node.invitation and self.node.invitation.cancel())

    def _call(self, fn) -> None:
        if self._loop is not None and self.node is not None and self._ready.is_set():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(fn)

    def _submit(self, coro) -> None:
        if self._loop is not None and self._ready.is_set():
            try:
                asyncio.run_coroutine_threadsafe(coro, self._loop)
                return
            except RuntimeError:
                pass
        coro.close()

    def _on_finished(self) -> None:
        self.stopped.emit()

    # --- engine thread side --------------------------------------------------------
    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as e:  # noqa: BLE001 - report it, never kill the app
            log.exception("the engine stopped on an error")
            self.failed.emit(f"the engine stopped: {e}")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._wake = asyncio.Event()
        if self._stop_requested.is_set():
            return
        opts = self._choose_listen(self.opts) if self.any_port_if_taken else self.opts
        try:
            node = await node_once_there_is_space(
                opts, self._stop_event, self._on_event,
                on_wait=lambda why: self.status.emit({"trouble": why}))
        except (P2PError, OSError) as e:
            self.failed.emit(str(e))
            return
        if node is None:  # closed while waiting for space
            return
        self.node = node
        control = ControlServer(node.fpaths.control_socket, node.node_info, node.transfers)
        try:
            await control.start()
        except RuntimeError:
            node.index.close()
            self.failed.emit("p2psync is already running for this folder (a `p2psync run` "
                             f"or another window): {opts.folder}")
            return
        except (OSError, NotPrivateError) as e:  # the app works on; only `status` is blind
            log.warning("no control socket for `p2psync status`: %s", e)
        tracker = StateTracker(node.index, node.fpaths.db_path, node.root)
        completion = Completion.open(node.fpaths.db_path)
        # (a device forgotten after 90 days keeps its last-seen time: see Node.start)
        self._ever_connected = bool(node.index.remote_devices() or node.index.last_seen())
        ticker: asyncio.Task | None = None
        try:
            # what the index already knows, before the startup scan: a big share's table
            # fills at once instead of after a walk of the whole folder
            self.files_reset.emit(await asyncio.to_thread(
                lambda: prepare_rows(tracker.snapshot())))
            self._ready.set()
            ticker = asyncio.create_task(self._tick_loop(node, tracker, completion))
            try:
                started = await unless_stopped(node.start(), self._stop_event)
            except P2PError as e:
                self._scanning = False
                self.failed.emit(str(e))
                return
            if started:
                self._scanning = False
                addr = node.listen_address
                self.started.emit({"device_id": node.device_id, "name": opts.name,
                                   "folder": str(node.root),
                                   "listen": f"{addr[0]}:{addr[1]}" if addr else ""})
                self._wake.set()
                await self._stop_event.wait()
        finally:
            self._ready.clear()
            if ticker is not None:
                await cancel_and_wait(ticker)
            with contextlib.suppress(Exception):
                await control.stop()
            try:
                await asyncio.wait_for(node.stop(), STOP_TIMEOUT)
            except Exception:  # noqa: BLE001
                log.exception("stopping the engine")
            tracker.close()
            if completion is not None:
                completion.close()

    @staticmethod
    def _choose_listen(opts: NodeOptions) -> NodeOptions:
        """The default port taken (say by a `p2psync run` of another folder): any port.

        Discovery announces whichever port this node got, so peers still find it.
        """
        if opts.listen is None or opts.listen[1] == 0:
            return opts
        host, port = opts.listen
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
                return opts
            except OSError:
                log.warning("port %d is taken; listening on another free port", port)
                return replace(opts, listen=(host, 0))

    def _on_event(self, kind: str, data: dict) -> None:
        """Called by the engine, in its loop thread: keep it for the next flush."""
        self._events.append((kind, data))
        if self._wake is not None:
            self._wake.set()

    async def _tick_loop(self, node: Node, tracker: StateTracker,
                         completion: Completion | None) -> None:
        last_flush = 0.0
        last_peers = 0.0
        last_progress: dict = {}
        last_status: dict = {}
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK)
            gap = last_flush + MIN_GAP - time.monotonic()
            if gap > 0:
                await asyncio.sleep(gap)
            self._wake.clear()
            now = time.monotonic()
            last_flush = now
            events, self._events = self._events, []
            if events:
                lines = self._describe(node, events)
                if lines:
                    self.activity.emit(lines)
            extra, self._extra_paths = self._extra_paths, set()
            for device, peer in list(node.peers.items()):
                self.rates.sample(device, now, peer.conn.bytes_in, peer.conn.bytes_out)
            self.rates.keep_only(set(node.peers))
            peers_due = now - last_peers >= PEERS_EVERY or any(
                k.startswith("peer") or k in ("role", "auth_refused") for k, _ in events)
            devices = set(node.peers) | set(self.book.devices())
            tracker.online = frozenset(node.peers)  # for the whys that name who is connected
            try:
                update = await asyncio.to_thread(tracker.poll, extra)
                if update and update.reset is not None:
                    update.reset = await asyncio.to_thread(prepare_rows, update.reset)
            except Exception:  # noqa: BLE001 - the table misses a beat, the app goes on
                log.exception("reading file states")
                update = None
            if completion is not None and (peers_due or update):
                # in the same flush as the files: the peers' completion and the table agree
                try:
                    needs = await asyncio.to_thread(completion.needs, devices)
                except Exception:  # noqa: BLE001 - the column misses a beat
                    log.exception("reading what the peers lack")
                    needs = self._needs
                if needs != self._needs:
                    self._needs, peers_due = needs, True
            if update:
                if update.reset is not None:
                    self.files_reset.emit(update.reset)
                else:
                    self.files_update.emit(update.rows, update.removed)
            progress = dict(node.puller.in_progress)
            if progress != last_progress:
                last_progress = progress
                self.progress.emit(progress)
            if peers_due:
                last_peers = now
                rates = {d: self.rates.rate(d, now) for d in node.peers}
                self.peers.emit(self.book.rows(node, time.time(), rates, self._needs))
            st = self._status(node)
            if st != last_status:
                last_status = st
                self.status.emit(st)

    # --- what the window shows -----------------------------------------------------
    def _status(self, node: Node) -> dict:
        role = node.roles.role if node.roles is not None else "electing"
        server = node.roles.election.server if node.roles is not None else ""
        server_name = self.book.name(node, server) if server else ""
        now = time.monotonic()
        rates = [self.rates.rate(d, now) for d in node.peers]
        self._ever_connected = self._ever_connected or bool(node.peers)
        failures = node.roles.dial_failures.items() if node.roles is not None else ()
        return {"role": role, "server": server, "server_name": server_name,
                "paused": node.paused, "busy": node.busy(), "scanning": self._scanning,
                "trouble": node.trouble,
                "connected": len(node.peers), "rate_in": round(sum(r[0] for r in rates)),
                "rate_out": round(sum(r[1] for r in rates)),
                "ever_connected": self._ever_connected,
                "refused_us": sorted(f"{h}:{p}" for (h, p), f in failures if f.refused)}

    def _describe(self, node: Node, events: list[tuple[str, dict]]) -> list[Activity]:
        now = time.time()
        out: list[Activity] = []
        fetched = [d for k, d in events if k == "fetched"]
        source = self._source_name(node)
        if len(fetched) > SUMMARIZE_ABOVE:
            total = sum(d.get("size", 0) for d in fetched)
            out.append(Activity(now, "received", f"Received {len(fetched):,} files "
                                f"({human_size(total)}){source}"))
        else:
            for d in fetched:
                sender = f" from {d['from']}" if d.get("from") else source
                out.append(Activity(now, "received", f"Received {d['path']} "
                                    f"({human_size(d.get('size', 0))}){sender}"))
        deleted = [d["path"] for k, d in events if k == "deleted"]
        if len(deleted) > SUMMARIZE_ABOVE:
            out.append(Activity(now, "deleted", f"Deleted {len(deleted):,} files that were "
                                "deleted on another device (kept in .p2psync/versions)"))
        else:
            for p in deleted:
                out.append(Activity(now, "deleted", f"Deleted {p}: deleted on another device "
                                    "(kept in .p2psync/versions)"))
        local = [p for k, d in events if k == "local_changes" for p in d.get("paths", [])]
        if local:
            if len(local) > 3:
                text = f"{len(local):,} local changes found"
            else:
                text = "Local change: " + ", ".join(local)
            out.append(Activity(now, "local", text))
        for kind, d in events:
            if kind == "renamed":
                out.append(Activity(now, "moved", f"Moved {d['from']} → {d['to']}"))
            elif kind == "conflict":
                text = (f"Conflict on {d['path']}: both devices changed it; the other "
                        f"version is kept as {d['copy'].rpartition('/')[2]}")
                out.append(Activity(now, "conflict", text))
                self.notify.emit("Conflict", text)
            elif kind == "error":
                text = f"Could not sync {d['path']}: {d.get('reason', '')}"
                out.append(Activity(now, "error", text))
                self.notify.emit("Sync error", text)
            elif kind == "scan_failed":  # once per reason while it lasts (the engine's)
                text = (f"Could not record local changes: {d.get('reason', '')} (trying "
                        "again until it can)")
                out.append(Activity(now, "error", text))
                self.notify.emit("Sync error", text)
            elif kind == "peer_connected":
                where = f" at {d['address']}" if d.get("address") else ""
                out.append(Activity(now, "peer", f"{self.book.name(node, d['device_id'])} "
                                    f"joined{where}"))
            elif kind == "peer_disconnected":
                reason = d.get("reason") or "the connection closed"
                self.book.left(d["device_id"], reason)
                out.append(Activity(now, "peer", f"{self.book.name(node, d['device_id'])} "
                                    f"left ({reason})"))
            elif kind == "role":
                out.append(Activity(now, "role", self._role_text(node, d)))
            elif kind == "mass_delete_held":
                out.append(Activity(now, "error", d["message"][:1].upper() + d["message"][1:]))
                self.notify.emit("Deletion held back", d["message"])
                self.mass_delete.emit({**d, **held_paths(node)})
            elif kind == "mass_delete_cleared":
                self.mass_delete.emit(None)
            elif kind == "auth_refused":  # already rate-limited by the engine's gate
                text = d.get("text") or f"refused a connection from {d.get('address')}"
                out.append(Activity(now, "refused", text[:1].upper() + text[1:]))
            elif kind == "ignore_widened":  # "laptop's ignore file now ignores 500 of 520..."
                out.append(Activity(now, "error", d["message"][:1].upper() + d["message"][1:]))
                self.notify.emit("Files no longer synced", d["message"])
            elif kind == "paused":
                out.append(Activity(now, "paused", "Paused: no more files are fetched"
                                    if d.get("paused") else "Resumed"))
            elif kind in ("invitation", "foreign_nearby", "dial_refused"):
                out.extend(self._pairing_activity(kind, d, now))
        for a in out:
            log.info("%s", a.text)
        return out

    def _pairing_activity(self, kind: str, d: dict, now: float) -> list[Activity]:
        """Pairing and wrong-key events: a signal for the window, a line for the log."""
        if kind == "invitation":
            self.invitation.emit(d)
            peer = d.get("peer") or {}
            if d["state"] == "paired":
                return [Activity(now, "peer", f"{peer.get('name')} joined the share with "
                                 f"code {d['code']}")]
            if d.get("why"):
                return [Activity(now, "refused" if d["state"] == "burned" else "info",
                                 f"Invitation {d['code']}: {d['why']}")]
            return []
        if kind == "foreign_nearby":
            self.foreign_nearby.emit(d["count"], d["text"] if d["count"] else "")
            return [Activity(now, "refused" if d["count"] else "info",
                             d["text"][:1].upper() + d["text"][1:])]
        text = d["text"]  # dial_refused: "refused by laptop at 192.168.1.20:22100: ..."
        return [Activity(now, "refused", text[:1].upper() + text[1:] +
                         f" (trying again in {d['retry_in']} s)")]

    def _role_text(self, node: Node, d: dict) -> str:
        role, server = d.get("role"), d.get("server")
        if role == "server":
            return "This device is now the server of the share"
        if role == "client" and server:
            return f"This device is now a client of {self.book.name(node, server)}"
        return "Looking for the share's server…"

    @staticmethod
    def _source_name(node: Node) -> str:
        names = [p.conn.info.name for p in node.peers.values()]
        if len(names) == 1:
            return f" from {names[0]}"
        if node.roles is not None and node.roles.role == "client":
            peer = node.peers.get(node.roles.election.server)
            if peer is not None:
                return f" from {peer.conn.info.name}"
        return " from the peers" if names else ""

    # --- requests from the window ---------------------------------------------------
    async def _sync_now(self) -> None:
        node = self.node
        if node is None:
            return
        self.activity.emit([Activity(time.time(), "info", "Sync now: rescanning the folder")])
        try:
            await node.sync_now()
        finally:
            self._wake.set()
            self.sync_done.emit()

    async def _preview(self) -> None:
        node = self.node
        if node is None:
            return
        try:
            preview = await live_preview(node)
            result = await asyncio.to_thread(collect_preview, preview, node.device_label)
        except Exception as e:  # noqa: BLE001 - said in the dialog, never a crash
            log.exception("preview failed")
            result = f"The preview failed: {e}"
        self.preview_ready.emit(result)

    async def _held_choice(self, keep: bool) -> None:
        node = self.node
        if node is None:
            return
        if keep:
            kept = await node.keep_held()
            text = (f"Kept {kept:,} files whose deletion was held back: they go back to "
                    "the other devices" if kept else "Kept the files: nothing is deleted")
        else:
            await node.delete_held()
            text = "Applying the deletion that was held back, as confirmed"
        log.info("%s", text)
        self.activity.emit([Activity(time.time(), "deleted" if not keep else "info", text)])
        self._wake.set()

    async def _load_conflict(self, copy: str) -> None:
        node = self.node
        if node is None:
            return
        c = await asyncio.to_thread(conflicts.resolve, node.root, copy)
        if c is None:
            return
        a, b = await asyncio.to_thread(
            lambda: (conflicts.read_side(node.root, c.original),
                     conflicts.read_side(node.root, c.copy)))
        self.conflict_sides.emit(copy, a, b, self._whose(node, c))

    async def _load_details(self, path: str) -> None:
        node = self.node
        if node is None:
            return
        devices = Devices({**node.index.device_names(), **node.names}, node.index.last_seen(),
                          frozenset(node.peers), {p: (d, s) for p, [d, s] in
                                                  node.transfers().items()},
                          own=node.device_id)
        found = await asyncio.to_thread(details, node.index, path, node.root, devices)
        self.file_details.emit(path, found)

    def _whose(self, node: Node, c: conflicts.Conflict) -> tuple[str, str]:
        """The names of the devices that made the version in place and the conflict copy."""
        entry = node.index.get(c.original)
        made = entry.modified_by if entry is not None and not entry.deleted else ""
        return self._device_name(node, made), self._device_name(node, c.device)

    def _device_name(self, node: Node, device: str) -> str:
        """A device's name from its ID or the 7 characters a conflict copy carries."""
        if not device:
            return ""
        if node.device_id.startswith(device):
            return node.opts.name
        known = [*node.peers, *self.book.known, *node.names]
        if node.roles is not None:
            known += list(node.roles.election.heard)
        full = next((d for d in known if d.startswith(device)), None)
        return self.book.name(node, full) if full else ""

    async def _list_versions(self, path: str | None) -> None:
        node = self.node
        if node is None:
            return
        try:
            found = await asyncio.to_thread(restore.kept_versions, node.root, path)
        except OSError as e:
            self.versions_listed.emit(path, [], 0, f"{e.strerror or e}: {e.filename or ''}")
            return
        names = await asyncio.to_thread(node.index.device_names)
        shown = found[-SHOWN_MAX:]
        rows = [VersionRow(v.path, v.when, v.size, self._replaced_by(node, v.by, names),
                           v.stamp) for v in reversed(shown)]
        self.versions_listed.emit(path, rows, len(found), "")

    def _replaced_by(self, node: Node, device: str, remembered: dict[str, str]) -> str:
        if not device or device == node.device_id:  # "": a restore here (or not known)
            return "this device"
        return (self._device_name(node, device) or remembered.get(device)
                or f"device {device[:7]}")

    async def _restore_version(self, path: str, at: str) -> None:
        """As `p2psync restore` does it, under the disk lock (no transfer writes that path
        meanwhile); the scan that follows sends it to the other devices."""
        node = self.node
        if node is None:
            return
        try:
            async with node.disk_lock:
                chosen, replaced = await asyncio.to_thread(restore.restore, node.root, path, at)
        except (restore.RestoreError, OSError, ValueError) as e:  # BadPath is a ValueError
            self.version_restored.emit(path, "", str(e) or type(e).__name__)
            return
        node.request_rescan(path)
        self._extra_paths.add(path)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(chosen.when))
        kept = "; what was there is kept as a version too" if replaced else ""
        text = f"Restored {path} as it was before {when}{kept}"
        log.info("%s", text)
        self.activity.emit([Activity(time.time(), "local", text)])
        self.version_restored.emit(path, text + ".", "")
        self._wake.set()

    async def _resolve(self, copy: str, how: str) -> None:
        node = self.node
        c = None if node is None else await asyncio.to_thread(conflicts.resolve, node.root, copy)
        if node is None or c is None:
            self.resolved.emit(copy, [], "not a conflict copy", "")
            return
        fn = {"original": conflicts.keep_original, "copy": conflicts.keep_copy,
              "both": conflicts.keep_both}[how]
        whose = self._whose(node, c)  # before: keeping the copy changes the original
        try:
            async with node.disk_lock:
                changed = await asyncio.to_thread(fn, node.root, c)
        except (conflicts.ConflictError, OSError, ValueError) as e:
            self.resolved.emit(copy, [], str(e), "")
            return
        for path in changed:
            node.request_rescan(path)
        self._extra_paths.update(changed)
        mine, theirs = (f"{n}'s version" if n else v for n, v in zip(
            whose, ("the version in place", "the conflict copy"), strict=True))
        text = {"original": f"Kept {mine} of {c.original}; {theirs} went to "
                            ".p2psync/versions",
                "copy": f"Kept {theirs} of {c.original}; {mine} went to .p2psync/versions",
                "both": f"Kept both versions of {c.original}: {theirs} is now "
                        f"{changed[-1].rpartition('/')[2]}"}[how]
        log.info("%s", text)
        self.activity.emit([Activity(time.time(), "conflict", text)])
        self.resolved.emit(copy, changed, "", text)
        self._wake.set()

