"""A full scan's lstat calls, made ahead of it in a thread of their own."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import pytest

from app.core import scanner, statahead
from app.core.ignore import Ignore
from app.core.index import Index
from app.core.statahead import BATCH, StatAhead

DEV = "AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"


def files(root, count):
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        p = root / f"f{i:04}"
        p.write_bytes(b"x" * i)
        out.append(os.fspath(p))
    return out


def wait_for(cond, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "the stat thread did not get there"
        time.sleep(0.01)


def test_each_path_gets_its_own_lstat_from_the_thread(tmp_path, monkeypatch):
    paths = files(tmp_path, 3 * BATCH + 5) + [os.fspath(tmp_path / "gone")]
    ahead = StatAhead()
    try:
        batches = ahead.submit(paths)
        assert [len(b.paths) for b in batches] == [BATCH, BATCH, BATCH, 6]
        wait_for(lambda: all(b.results is not None for b in batches))
        monkeypatch.setattr(statahead.os, "lstat", None)  # no call of its own now
        for k, path in enumerate(paths[:-1]):
            st = ahead.lstat(batches[k // BATCH], k % BATCH, path)
            assert st.st_size == k and st.st_ino == os.stat(path).st_ino
        with pytest.raises(FileNotFoundError):
            ahead.lstat(batches[-1], 5, paths[-1])
    finally:
        ahead.close()


def test_an_entry_the_scan_reaches_first_is_stat_by_the_scan_and_its_batch_skipped(tmp_path):
    paths = files(tmp_path, 2 * BATCH)
    ahead = StatAhead()
    try:
        with ahead._cond:  # the thread takes nothing while the scan overtakes both batches
            batches = ahead.submit(paths)
            for b in batches:
                assert ahead.lstat(b, 1, b.paths[1]).st_size == paths.index(b.paths[1])
                assert b.overtaken
        wait_for(lambda: not ahead._stack)
        ahead.close()  # joins: the thread is past any batch it took
        assert all(b.results is None for b in batches)
        # an entry whose path is not the one in its slot is never given that slot's stat
        other = statahead.Batch([paths[0]])
        other.results = [os.lstat(paths[0])]
        assert ahead.lstat(other, 0, paths[1]).st_ino == os.lstat(paths[1]).st_ino
    finally:
        ahead.close()


def test_a_full_scan_records_what_it_records_without_the_thread(tmp_path, monkeypatch):
    root = tmp_path / "folder"
    for d in range(5):
        files(root / f"d{d}" / "sub", 40)
        files(root / f"d{d}", 150)
    (root / "link").symlink_to("d0/f0001")
    entries = {}
    for ahead in (True, False):
        monkeypatch.setattr(scanner, "STAT_AHEAD", ahead)
        with Index(tmp_path / f"index-{ahead}.db", DEV) as index:
            scanner.scan(root, index, Ignore(root))
            entries[ahead] = [replace(e, seq=0) for e in index.all_local()]
    assert len(entries[True]) == 5 * (1 + 1 + 40 + 150) + 1
    assert entries[True] == entries[False]
