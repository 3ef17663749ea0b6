"""watchdog -> rescan requests: changed paths, never transfers.

The inotify thread (watchdog's threads, for moves and on other systems) only collects
which relative paths changed and wakes the node once per burst; the node debounces
them into one subpath scan, so a burst of writes costs one scan and an edit reaches
the peers well under a second later. Lost events (the kernel's queue overflowed) make
the node rescan the whole folder.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    DirAttribEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import DEFAULT_OBSERVER_TIMEOUT, BaseObserver

try:  # Linux: ask inotify for exactly the events below
    from watchdog.observers.inotify import InotifyEmitter, InotifyObserver, InotifyWatchGroup
    from watchdog.observers.inotify_c import InotifyConstants as _IN
    from watchdog.observers.inotify_c import InotifyFD
    from watchdog.observers.inotify_move_event_grouper import (
        InotifyMoveEventGrouper,
        PathedInotifyEvent,
    )
except ImportError:  # other platforms: watchdog's own observer, filtered by event type
    InotifyObserver = None  # type: ignore[assignment,misc]

from app.core import paths

log = logging.getLogger(__name__)


def _not_stop_noise(record: logging.LogRecord) -> bool:
    """watchdog's inotify reader may read once more while the observer stops, and says
    so at ERROR: the last line a user saw of a clean exit (found by fuzzing)."""
    return "called when the thread is inactive" not in record.getMessage()


logging.getLogger("watchdog.observers.inotify").addFilter(_not_stop_noise)

COALESCE = 0.02  # s the inotify reader waits after reading a write (_CoalescingInotify)
COALESCE_BELOW = 64  # ... when it read fewer events than this at once

# Changes only. Without a filter inotify also reports every open and read-only close,
# so serving 10,000 files to a peer would wake the observer thread 20,000 times.
CHANGES = [DirAttribEvent, DirCreatedEvent, DirDeletedEvent, DirModifiedEvent, DirMovedEvent,
           FileAttribEvent, FileClosedEvent, FileCreatedEvent, FileDeletedEvent,
           FileModifiedEvent, FileMovedEvent]


def _unnamed(path: str | bytes) -> bool:
    """Whether path is the name inotify gives an unnamed (O_TMPFILE) file: "#" and its
    inode number, a name that exists nowhere.

    The puller writes every new file unnamed, sets its times and links it into place:
    the times and the close are reported under that name, two events a file (20,000 of
    the 30,000 a pull of 10,000 files made), each then scanned for as a path of its
    own. A user's file of such a name exists when its close or attributes are reported.
    """
    name = os.path.basename(os.fsdecode(path))
    return name[:1] == "#" and name[1:].isdigit() and not os.path.lexists(path)


class _Handler(FileSystemEventHandler):
    """Collects changed paths; wakes the node once per burst, not once per event.

    A pull round writes thousands of files, each a handful of inotify events; a
    wake-up per event kept the event loop and this thread fighting over the GIL.
    """

    def __init__(self, root: Path, wake: Callable[[], None]) -> None:
        self.root = os.fsdecode(root)
        self.below = os.path.join(self.root, "")
        self.wake = wake
        self.lock = threading.Lock()
        self.pending: set[str] = set()
        self.lost = False  # events were lost (the kernel's queue overflowed)

    def _rel(self, p: str | bytes) -> str | None:
        path = os.fsdecode(p)
        if path.startswith(self.below):  # how watchdog names what is below the folder
            rel = path[len(self.below):].replace(os.sep, "/")  # (relpath: 3 us an event)
        else:
            rel = os.path.relpath(path, self.root).replace(os.sep, "/")
        if rel == "." or rel.startswith("../") or rel == ".." or rel.split("/")[0] == ".p2psync":
            return None
        if paths.is_temp_name(rel.rpartition("/")[2]):
            return None
        return rel

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_synthetic:  # one per entry below a moved directory: its scan finds them
            return
        if isinstance(event, FileAttribEvent | FileClosedEvent) and _unnamed(event.src_path):
            return
        self._note([rel for p in (event.src_path, getattr(event, "dest_path", ""))
                    if p and (rel := self._rel(p)) is not None])

    def take(self, path: bytes, may_be_unnamed: bool) -> None:
        """An event's path straight from the inotify thread (see `_Direct`)."""
        if may_be_unnamed and _unnamed(path):
            return
        if (rel := self._rel(path)) is not None:
            self._note([rel])

    def overflowed(self) -> None:
        """The kernel dropped events: which paths changed is unknown, so all may have."""
        self._note([], lost=True)

    def _note(self, rels: list[str], lost: bool = False) -> None:
        """Keep what was reported; wake the node if nothing waited for it yet."""
        if not rels and not lost:
            return
        with self.lock:
            first = not self.pending and not self.lost
            self.pending.update(rels)
            self.lost |= lost
        if first:
            self.wake()

    def drain(self) -> set[str] | None:
        with self.lock:
            out, self.pending = self.pending, set()
            lost, self.lost = self.lost, False
        return None if lost else out


if InotifyObserver is not None:
    # What a change needs, and no more: no opens, reads or read-only closes (serving
    # 10,000 files would cost 30,000 events). A file is seen when it is written
    # (IN_MODIFY, see _CoalescingInotify for what a writer costs), closed after writing
    # (IN_CLOSE_WRITE), renamed, made, removed or chmod-ed/touched (IN_ATTRIB).
    CHANGE_MASK = (_IN.IN_CREATE | _IN.IN_DELETE | _IN.IN_DELETE_SELF | _IN.IN_MOVE
                   | _IN.IN_MOVE_SELF | _IN.IN_MODIFY | _IN.IN_CLOSE_WRITE | _IN.IN_ATTRIB
                   | _IN.IN_DONT_FOLLOW)

    # watchdog adds a DirModifiedEvent for the parent of every entry made, removed or
    # moved: here that is never news (the entry's own event names it), and the scan of a
    # parent is the scan of its whole subtree.
    INOTIFY_CHANGES = [c for c in CHANGES if c is not DirModifiedEvent]

    class _Direct(InotifyMoveEventGrouper):
        """Only moves wait in watchdog's queue (to be paired, 0.5 s at most) and go the
        long way to the handler: the emitter's thread, then the observer's. Every other
        event goes to the handler at once, on the thread that read it.

        The long way is three threads and two queues an event, each thread taking the
        interpreter from the pull's writers. A watching node pulling 10,000 small files
        (10,000 IN_CREATE) took 2.88 s (median of four runs) against 2.27 s with no
        watcher; 2.54 s with this and the rescans told apart outside the disk lock
        (`scanner.maybe_changed`). Paths are all the handler keeps, so what it misses
        of watchdog's way is only the order of moves against other events.
        """

        def __init__(self, handler: _Handler) -> None:
            super().__init__()
            self.handler = handler

        def put_event(self, event: PathedInotifyEvent) -> None:
            ev = event.ev
            if ev.is_create or ev.is_delete or ev.is_attrib or ev.is_close_write or ev.is_modify:
                self.handler.take(event.path, not ev.is_directory
                                  and (ev.is_attrib or ev.is_close_write or ev.is_modify))
            else:  # moves (paired), the folder itself gone or moved: watchdog's way
                super().put_event(event)

    class _FolderWatches(InotifyWatchGroup):
        """The folder's directories less `.p2psync`, whose events are never news.

        Its staging directory is where the puller makes every new file before linking it
        into place (app.core.batchwrite): watched, each file would cost two more events.
        """

        def __init__(self, handler: _Handler, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            self.handler = handler
            super().__init__(*args, **kwargs)

        def __post_init__(self) -> None:
            self._move_event_grouper = _Direct(self.handler)  # before any watch is added
            super().__post_init__()

        def on_queue_overflow(self) -> None:
            super().on_queue_overflow()
            self.handler.overflowed()

        def _add_callback(self, path: bytes) -> None:
            meta = os.path.join(self.path, os.fsencode(paths.META_DIR))
            if path == meta or path.startswith(meta + b"/"):
                return
            super()._add_callback(path)

    class _ChangesEmitter(InotifyEmitter):
        def __init__(self, *args, handler: _Handler, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, **kwargs)
            self.handler = handler

        def get_event_mask_from_filter(self):  # type: ignore[no-untyped-def]
            return CHANGE_MASK

        def on_thread_start(self) -> None:
            self._inotify = _FolderWatches(
                self.handler, self._inotify_fd, os.fsencode(self.watch.path),
                is_recursive=self.watch.is_recursive, event_mask=self.get_event_mask_from_filter(),
                follow_symlink=self.watch.follow_symlink)

        def build_and_queue_event(self, event, *, full_events=False):  # type: ignore[no-untyped-def]
            """A directory moved (or moved in) is one event, as inotify reports it.

            watchdog walks such a directory and adds a "moved" or "created" event for
            every entry below it: a million events and two million paths held for a
            renamed directory of a million files, to tell the node what the scan of the
            directory finds by itself.
            """
            if not isinstance(event, PathedInotifyEvent):  # a paired move
                move_from, move_to = event
                if move_from.ev.is_directory:
                    self.queue_event(DirMovedEvent(self._decode_path(move_from.path),
                                                   self._decode_path(move_to.path)))
                    return
            elif event.ev.is_moved_to and event.ev.is_directory:  # in from outside
                self.queue_event(DirCreatedEvent(self._decode_path(event.path)))
                return
            super().build_and_queue_event(event, full_events=full_events)

    class _CoalescingInotify(InotifyFD):
        """The observer's inotify instance, whose reader lets writes pile up.

        The kernel merges an event into the last one queued when the two are the same:
        a reader that waits COALESCE s after a few writes were reported lets a copy, or
        a program that appends to a file it keeps open, cost an event per wait instead
        of one per write() (a 1 GiB copy in 128 KiB pieces: 8,192 writes, 6,500 events
        read one by one, 0.80 s of CPU against 0.46 s with no IN_MODIFY at all;
        2026-12-02; 20-110 events and 5-36 ms with this). A flood of events (a big
        batch read) is read on at once: the queue (16,384 events) never fills for the
        wait. watchdog's own reader reads as fast as it can.
        """

        def run(self) -> None:
            while self.should_keep_running():
                events = self.read_events()
                for event in events:
                    self.handle_event(event)
                if len(events) < COALESCE_BELOW and any(e.is_modify for e in events):
                    time.sleep(COALESCE)

    class _ChangesObserver(InotifyObserver):
        """watchdog's, reading a _CoalescingInotify of its own (stopped with it)."""

        def __init__(self, handler: _Handler) -> None:
            self._inotify_fd = _CoalescingInotify()
            self._inotify_fd.start()
            BaseObserver.__init__(self, _ChangesEmitter, timeout=DEFAULT_OBSERVER_TIMEOUT,
                                  inotify_fd=self._inotify_fd, handler=handler)


def _observer(handler: _Handler):  # type: ignore[no-untyped-def]
    return _ChangesObserver(handler) if InotifyObserver is not None else Observer()


class FolderWatcher:
    """Watches a folder; `wake` is called (from a watchdog thread) when `changed()` has news."""

    def __init__(self, root: Path, wake: Callable[[], None]) -> None:
        self.handler = _Handler(root, wake)
        self.observer = _observer(self.handler)
        self.observer.schedule(self.handler, os.fsdecode(root), recursive=True,
                              event_filter=CHANGES if InotifyObserver is None
                              else INOTIFY_CHANGES)

    def changed(self) -> set[str] | None:
        """The relative paths reported since the last call; None: events were lost,
        anything may have changed."""
        return self.handler.drain()

    def start(self) -> None:
        self.observer.daemon = True
        self.observer.start()

    def stop(self) -> None:
        """Also for a watcher never started: its inotify reader runs from the start."""
        self.observer.stop()
        if self.observer.is_alive():
            self.observer.join(timeout=2)
