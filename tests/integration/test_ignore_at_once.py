"""A change of .p2psyncignore takes effect at once on every device, both ways.

Two real `run` nodes on loopback. Newly ignored files stop being offered and stop
counting as `local_change` / `remote_change` on both devices, whether the rule was
written here or arrived from the peer; files a rule no longer ignores are scanned at
once (not at the next full rescan, a minute later) and reach the peer.
"""

from __future__ import annotations

import time

from tests.integration.test_two_devices import HOUR_AGO, rows, status, wait_indexed, write
from tests.procs import wait_until

AT_ONCE = 20.0  # well under the full rescan's 60 s: only an immediate scan gets there


def states(node) -> dict[str, str]:
    return {p: r["state"] for p, r in rows(status(node.folder, node.config)).items()}


def started_pair(tmp_path, run_node):
    a, b = tmp_path / "A", tmp_path / "B"
    write(a / "notes.txt", "notes", HOUR_AGO)
    node_a = run_node("A")
    node_b = run_node("B", "--peer", node_a.address)
    wait_until(lambda: (b / "notes.txt").exists(), 20, 0.05, node_b.log())
    return node_a, node_b


def test_a_rule_that_arrives_is_applied_before_the_files_it_ignores(tmp_path, run_node):
    """A's own new file, indexed and offered just before A's new rule ignores it: B takes
    the rule first and never fetches the file; neither side counts it as a change."""
    node_a, node_b = started_pair(tmp_path, run_node)
    a, b = node_a.folder, node_b.folder
    assert node_b.stop() == 0
    write(a / "debug.log", "A's log", HOUR_AGO)
    wait_indexed(node_a, "debug.log")
    write(a / ".p2psyncignore", "*.log\n", HOUR_AGO)
    wait_indexed(node_a, ".p2psyncignore")
    node_b = run_node("B", "--peer", node_a.address)

    wait_until(lambda: (b / ".p2psyncignore").exists(), 20, 0.05, node_b.log())
    time.sleep(2)  # a fetch of the file would have happened by now
    assert not (b / "debug.log").exists(), node_b.log()
    wait_until(lambda: states(node_a).get("debug.log") == "ignored", 10, 0.2)
    wait_until(lambda: states(node_b).get("debug.log") in (None, "ignored"), 10, 0.2)
    assert states(node_a)["notes.txt"] == states(node_b)["notes.txt"] == "synced"


def test_a_peers_own_file_that_a_new_rule_ignores_is_no_change_anywhere(tmp_path, run_node):
    """B made a file while it was away; A's rule, made meanwhile, ignores it: it is not
    fetched, and it is `ignored` on both devices, not `remote_change` / `local_change`."""
    node_a, node_b = started_pair(tmp_path, run_node)
    a, b = node_a.folder, node_b.folder
    assert node_b.stop() == 0
    write(a / ".p2psyncignore", "*.log\n", HOUR_AGO)
    wait_indexed(node_a, ".p2psyncignore")
    write(b / "b.log", "B's log", HOUR_AGO)  # indexed by B's first scan, before the rule
    time.sleep(1.5)  # settled: B's first scan takes it
    node_b = run_node("B", "--peer", node_a.address)

    wait_until(lambda: (b / ".p2psyncignore").exists(), 20, 0.05, node_b.log())
    wait_until(lambda: states(node_a).get("b.log") == "ignored", 10, 0.2,
               f"A: {states(node_a)}")
    wait_until(lambda: states(node_b).get("b.log") == "ignored", 10, 0.2,
               f"B: {states(node_b)}")
    assert not (a / "b.log").exists()


def test_a_rule_removed_here_sends_what_it_ignored_at_once(tmp_path, run_node):
    node_a, node_b = started_pair(tmp_path, run_node)
    a, b = node_a.folder, node_b.folder
    write(a / ".p2psyncignore", "*.log\n", HOUR_AGO)
    wait_until(lambda: (b / ".p2psyncignore").exists(), 20, 0.05, node_b.log())
    write(a / "a.log", "A's log", HOUR_AGO)
    time.sleep(2)
    assert not (b / "a.log").exists()

    (a / ".p2psyncignore").write_text("")
    wait_until(lambda: (b / "a.log").exists(), AT_ONCE, 0.05,
               f"A:\n{node_a.log()}\nB:\n{node_b.log()}")
    assert (b / "a.log").read_text() == "A's log"


def test_a_rule_removed_on_the_peer_sends_what_it_ignored_here_at_once(tmp_path, run_node):
    node_a, node_b = started_pair(tmp_path, run_node)
    a, b = node_a.folder, node_b.folder
    write(a / ".p2psyncignore", "*.log\n", HOUR_AGO)
    wait_until(lambda: (b / ".p2psyncignore").exists(), 20, 0.05, node_b.log())
    write(b / "b.log", "B's log", HOUR_AGO)
    time.sleep(2)
    assert not (a / "b.log").exists()
    assert states(node_b).get("b.log") in (None, "ignored")  # listed after a full rescan

    (a / ".p2psyncignore").write_text("")  # arrives at B, which must scan b.log now
    wait_until(lambda: (a / "b.log").exists(), AT_ONCE, 0.05,
               f"A:\n{node_a.log()}\nB:\n{node_b.log()}")
    assert (a / "b.log").read_text() == "B's log"
