"""watchdog -> rescan requests: changed paths, never transfers.

The observer thread only reports which relative paths changed; the node debounces
them into one subpath scan, so a burst of writes costs one scan and an edit reaches
the peers well under a second later.
"""

from __future__ import annotations

import logging
import os
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

from app.core import paths

log = logging.getLogger(__name__)

# Changes only. Without a filter inotify also reports every open and read-only close,
# so serving 10,000 files to a peer would wake the observer thread 20,000 times.
CHANGES = [DirAttribEvent, DirCreatedEvent, DirDeletedEvent, DirModifiedEvent, DirMovedEvent,
           FileAttribEvent, FileClosedEvent, FileCreatedEvent, FileDeletedEvent,
           FileModifiedEvent, FileMovedEvent]


class _Handler(FileSystemEventHandler):
    def __init__(self, root: Path, report: Callable[[str], None]) -> None:
        self.root = os.fsdecode(root)
        self.report = report

    def _rel(self, p: str | bytes) -> str | None:
        rel = os.path.relpath(os.fsdecode(p), self.root).replace(os.sep, "/")
        if rel == "." or rel.startswith("../") or rel == ".." or rel.split("/")[0] == ".p2psync":
            return None
        if paths.is_temp_name(rel.rpartition("/")[2]):
            return None
        return rel

    def on_any_event(self, event: FileSystemEvent) -> None:
        for p in (event.src_path, getattr(event, "dest_path", "")):
            rel = self._rel(p) if p else None
            if rel is not None:
                self.report(rel)


class FolderWatcher:
    def __init__(self, root: Path, report: Callable[[str], None]) -> None:
        self.observer = Observer()
        self.observer.schedule(_Handler(root, report), os.fsdecode(root), recursive=True,
                              event_filter=CHANGES)

    def start(self) -> None:
        self.observer.daemon = True
        self.observer.start()

    def stop(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=2)
