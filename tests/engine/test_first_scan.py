"""A node that connects while its first scan runs says nothing of where it is before
the scan ends: its index is still empty, and a peer would agree with an empty folder."""

from __future__ import annotations

import time

from app.core import scanner
from tests.twonodes import sync_beta_with_alpha


def test_a_peer_does_not_agree_with_a_folder_still_being_scanned(tmp_path, monkeypatch):
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    (tmp_path / "A" / "one.txt").write_text("one")
    (tmp_path / "A" / "two.txt").write_text("two")
    scan = scanner.scan

    def slow_for_a(root, *args, **kwargs):  # A's first scan ends after B has A's index
        if root.name == "A":
            time.sleep(1.5)
        return scan(root, *args, **kwargs)

    monkeypatch.setattr(scanner, "scan", slow_for_a)

    sync_beta_with_alpha(tmp_path)
    assert sorted(p.name for p in (tmp_path / "B").iterdir() if p.name != ".p2psync") == \
        ["one.txt", "two.txt"]
