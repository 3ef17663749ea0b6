"""The folder watcher reports changes, and nothing for files that are only read."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from app.engine.watcher import FolderWatcher
from tests.procs import wait_until


class Reports:
    def __init__(self) -> None:
        self.paths: list[str] = []
        self.got = threading.Event()

    def __call__(self, rel: str) -> None:
        self.paths.append(rel)
        self.got.set()


def test_reads_are_silent_writes_are_reported(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    served = tmp_path / "sub" / "served.txt"
    served.write_text("read me")
    reports = Reports()
    watcher = FolderWatcher(tmp_path, reports)
    watcher.start()
    try:
        time.sleep(0.2)  # the watches are set
        for _ in range(50):  # what serving a file to a peer does
            served.read_bytes()
        time.sleep(0.3)
        assert reports.paths == []

        (tmp_path / "sub" / "new.txt").write_text("hello")
        assert reports.got.wait(5)
        assert "sub/new.txt" in reports.paths
        assert "sub/served.txt" not in reports.paths

        served.chmod(0o755)  # a mode change alone is a change to sync
        wait_until(lambda: "sub/served.txt" in reports.paths, 5, 0.02)
    finally:
        watcher.stop()
