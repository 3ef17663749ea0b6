"""The scanner's `settle`: a file changed within it is left as indexed, and listed."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

from app.core import scanner
from app.core.ignore import Ignore
from app.core.index import Index

DEV = "DEVAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"


def test_a_fresh_file_waits_and_a_still_one_is_taken(tmp_path, monkeypatch):
    root = tmp_path / "folder"
    root.mkdir()
    index = Index(tmp_path / "index.db", DEV)
    ignore = Ignore(root)
    (root / "old.txt").write_text("still")
    time.sleep(0.3)
    (root / "fresh.txt").write_text("being written")
    fresh = os.lstat(root / "fresh.txt")
    written = max(fresh.st_ctime, fresh.st_mtime)

    # The scan sees the clock 0.1 s after fresh.txt was written, however long this
    # machine took to get here (a real clock failed this under load on CI).
    now = written + 0.1
    monkeypatch.setattr(scanner, "time", SimpleNamespace(time=lambda: now,
                                                         monotonic=time.monotonic))
    result = scanner.scan(root, index, ignore, settle=0.25)
    monkeypatch.undo()
    assert [e.path for e in result.changed] == ["old.txt"]
    assert result.unsettled == ["fresh.txt"] and result.unsettled_count == 1
    assert result.settles_at == written + 0.25
    assert result.settles_at > now
    assert index.get("fresh.txt") is None

    (root / "old.txt").write_text("changed, and at once scanned again")  # an indexed one
    result = scanner.scan(root, index, ignore, ["old.txt", "fresh.txt"], settle=60)
    assert sorted(result.unsettled) == ["fresh.txt", "old.txt"]
    assert index.get("old.txt").size == len("still")  # the old version stays as it was

    result = scanner.scan(root, index, ignore, settle=0.0)  # a one-shot sync: no waiting
    assert sorted(e.path for e in result.changed) == ["fresh.txt", "old.txt"]
    assert result.unsettled == []
    index.close()
