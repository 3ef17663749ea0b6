"""A node that connects while its first scan runs says nothing of where it is before
the scan ends: its index is still empty, and a peer would agree with an empty folder."""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from app.core import scanner
from app.core.apply import VERSIONS_DIR
from app.engine.puller import Puller
from app.errors import P2PError
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



def test_an_edit_found_by_the_first_scan_is_a_conflict_not_a_replaced_version(
        tmp_path, monkeypatch):
    """A's index arrives while B's first scan runs: B plans nothing before the scan has
    recorded B's own edit. A plan from before it would replace the edit, and if the
    scan ended before the round reached the file, the file matched its new entry:
    the edit was filed as a replaced version, with no conflict copy."""
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir()
    b.mkdir()
    hour_ago = time.time() - 3600
    (a / "f.txt").write_text("first")
    os.utime(a / "f.txt", (hour_ago, hour_ago))
    sync_beta_with_alpha(tmp_path)
    assert (b / "f.txt").read_text() == "first"

    (a / "f.txt").write_text("edit made on A")
    os.utime(a / "f.txt", (hour_ago + 200, hour_ago + 200))
    (b / "f.txt").write_text("edit made on B")
    os.utime(b / "f.txt", (hour_ago + 100, hour_ago + 100))
    scan, run_round = scanner.scan, Puller.run_round
    scanned, rounds = [], []

    def slow_for_b(root, *args, **kwargs):  # B's first scan ends after B has A's index
        if root.name == "B":
            time.sleep(1.5)
        try:
            return scan(root, *args, **kwargs)
        finally:
            scanned.append((root.name, time.monotonic()))

    def timed_round(self, *args, **kwargs):
        rounds.append((self.root.name, time.monotonic()))
        return run_round(self, *args, **kwargs)

    monkeypatch.setattr(scanner, "scan", slow_for_b)
    monkeypatch.setattr(Puller, "run_round", timed_round)
    sync_beta_with_alpha(tmp_path)

    first_scan_of_b = min(t for name, t in scanned if name == "B")
    assert rounds and all(t > first_scan_of_b for name, t in rounds if name == "B"), rounds
    assert (b / "f.txt").read_text() == "edit made on A"
    [copy] = [p for p in b.iterdir() if p.name.startswith("f.") and p.name != "f.txt"]
    assert copy.read_text() == "edit made on B"
    kept = b / VERSIONS_DIR
    assert not any(p.read_text() == "edit made on B" for p in kept.rglob("*") if p.is_file())


def test_a_sync_whose_first_scan_cannot_be_recorded_fails_saying_why(tmp_path, monkeypatch):
    """The index on a full disk: B's first scan fails after B holds A's index. `sync`
    ends at once with that reason; it neither waits out its timeout nor reports the
    folders in sync while B's own files were never recorded."""
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    (tmp_path / "A" / "from-a.txt").write_text("a")
    (tmp_path / "B" / "from-b.txt").write_text("b")
    scan = scanner.scan

    def full_for_b(root, *args, **kwargs):
        if root.name == "B":
            time.sleep(1.0)
            raise sqlite3.OperationalError("database or disk is full")
        return scan(root, *args, **kwargs)

    monkeypatch.setattr(scanner, "scan", full_for_b)
    started = time.monotonic()
    with pytest.raises(P2PError, match=r"^cannot record the scan of \S+ in its index: "
                                       r"database or disk is full \("):
        sync_beta_with_alpha(tmp_path)
    assert time.monotonic() - started < 20
    assert not (tmp_path / "A" / "from-b.txt").exists()
