"""A file still being written is not picked up until it settles (two real `run` nodes).

A is written to in small appends, each one its own open/append/close (every close is
an inotify event that used to send a version at once); B must never see, nor archive,
a partial version: it keeps the old content until the appends stop, then gets the
whole file once, with the old one as its only kept version.
"""

from __future__ import annotations

import threading
import time

from tests.integration.test_two_devices import HOUR_AGO, versions, write
from tests.procs import sync, wait_until

APPEND_EVERY = 0.2
APPEND_FOR = 3.0


def test_a_file_being_appended_to_is_sent_once_it_settles(tmp_path, run_node):
    a, b = tmp_path / "A", tmp_path / "B"
    write(a / "log/growing.bin", b"old content\n", HOUR_AGO)
    node_a = run_node("A")
    node_b = run_node("B", "--peer", node_a.address)
    wait_until(lambda: (b / "log/growing.bin").exists(), 20, 0.05,
               f"B never got the file; log:\n{node_b.log()}")
    assert (b / "log/growing.bin").read_bytes() == b"old content\n"

    seen_on_b: set[bytes] = set()
    line = b"x" * 1000 + b"\n"
    appends = 0
    mark = len(node_a.lines)
    end = time.monotonic() + APPEND_FOR
    while time.monotonic() < end:
        with open(a / "log/growing.bin", "ab") as f:  # each close: one inotify event
            f.write(line)
        appends += 1
        seen_on_b.add((b / "log/growing.bin").read_bytes())
        time.sleep(APPEND_EVERY)
    whole = (a / "log/growing.bin").read_bytes()
    assert appends >= 10

    assert seen_on_b == {b"old content\n"}, "B got a version while A was still writing"
    assert versions(b) == {}, "B archived a version while A was still writing"
    wait_until(lambda: (b / "log/growing.bin").read_bytes() == whole, 20, 0.05,
               f"B never got the whole file; A:\n{node_a.log()}\nB:\n{node_b.log()}")
    time.sleep(1.5)  # nothing else follows
    assert list(versions(b).values()) == [b"old content\n"]  # only the version replaced
    assert [line for line in node_a.lines[mark:] if "scan: " in line] == [
        "p2psync: scan: 1 local change(s)"], node_a.log()  # one version, the whole file


def test_a_sync_waits_for_a_file_still_being_written_and_says_so(tmp_path, run_node):
    a, b = tmp_path / "A", tmp_path / "B"
    write(a / "notes.txt", "notes\n", HOUR_AGO)
    node_a = run_node("A")
    stop = threading.Event()

    def append() -> None:
        while not stop.is_set():
            with open(a / "growing.bin", "ab") as f:
                f.write(b"y" * 1000 + b"\n")
            time.sleep(APPEND_EVERY)

    writer = threading.Thread(target=append)
    writer.start()
    try:
        r = sync(b, tmp_path / "cfgB", node_a.address, timeout=4)
    finally:
        stop.set()
        writer.join()
    assert r.returncode == 1, r.stderr
    assert "1 file(s) still being written there" in r.stderr, r.stderr
    assert not (b / "growing.bin").exists()  # nothing half-written came over
    assert (b / "notes.txt").read_text() == "notes\n"

    r = sync(b, tmp_path / "cfgB", node_a.address)  # once it is still: the whole file
    assert r.returncode == 0, r.stderr
    assert (b / "growing.bin").read_bytes() == (a / "growing.bin").read_bytes()
