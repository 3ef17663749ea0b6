"""`kill -9` in a new device's first sync, while files come with the peer's index.

A device whose folder is empty asks its peer for the contents of its small files
along with its index pages, and puts each page's new files in place as it comes in
(Node._take_arrivals): written to temp files, flushed, linked at their names, then
indexed. A kill can fall anywhere in that, between a name and its index entry too.
Real processes over loopback: one `run` node A holds the files; each point is a new
device B (empty folder, own config), a `run` node; once it has a random number of
files, B or A (serving it the pages with their contents) is killed with SIGKILL, then
started again. Every time:

1. right after the kill, every file B has at a final path is whole: A's content at
   that path;
2. B converges with A, and no temp file is left;
3. nothing was made of it on either side: A's folder is as it was (no conflict copy,
   no file rewritten) and neither side archived a version (a file B had linked but not
   indexed is the same content as A's, not an edit to keep).

Seeded (P2PSYNC_CRASH_SEED, P2PSYNC_CRASH_POINTS).
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.procs import RunNode, start_run, tree, wait_until

POINTS = int(os.environ.get("P2PSYNC_CRASH_POINTS", "6"))
SEED = int(os.environ.get("P2PSYNC_CRASH_SEED", "7"))
TINY = 2_000


def _fill(root: Path, rnd: random.Random) -> None:
    for i in range(TINY):  # pages of contents: the path a kill is aimed at
        p = root / f"t/{i // 100:02}/{i:04}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rnd.randbytes(rnd.randrange(0, 300)))
    for i in range(20):
        (root / f"s/{i:02}.bin").parent.mkdir(parents=True, exist_ok=True)
        (root / f"s/{i:02}.bin").write_bytes(rnd.randbytes(rnd.randrange(10_000, 60_000)))
    (root / "big.bin").write_bytes(rnd.randbytes(3 * 128 * 1024 + 5))  # fetched by blocks


def _final_files(root: Path) -> dict[str, bytes]:
    return _final_files_of(tree(root))


def _final_files_of(t: dict) -> dict[str, bytes]:
    """The files of a `tree`, temp files of a transfer left out."""
    return {k: v for k, v in t.items()
            if isinstance(v, bytes) and not Path(k).name.startswith(".p2psync-")}


def _temps(root: Path) -> list[str]:
    """Temp files of a transfer left in the folder (of any name `.p2psync-*`)."""
    return [str(p.relative_to(root)) for p in root.rglob(".p2psync-*")
            if not str(p.relative_to(root)).startswith(".p2psync/")]


def _versions(root: Path) -> list[str]:
    kept = root / ".p2psync" / "versions"
    return [str(p.relative_to(kept)) for p in kept.rglob("*") if p.is_file()] \
        if kept.exists() else []


def _count(root: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(root))


def _one_point(b: Path, cfg: Path, nodes: dict[str, RunNode], restart_a: Callable[[], RunNode],
               victim: str, original: dict, rnd: random.Random) -> bool:
    """One new device, one kill (of it or of A), one restart; returns whether the kill
    fell mid-transfer."""
    files = _final_files_of(original)
    peer = ("--peer", nodes["A"].address)
    nodes["B"] = start_run(b, cfg, *peer)
    arrived = rnd.randrange(1, len(files))
    try:
        wait_until(lambda: _count(b) >= arrived, 60, 0.002,
                   f"B never got {arrived} files:\n{nodes['B'].log()}")
        nodes[victim].proc.send_signal(signal.SIGKILL)
        nodes[victim].proc.wait(10)
        got = _final_files(b)
        wrong = [k for k, v in got.items() if files.get(k) != v]
        assert not wrong, f"after {victim}'s kill B holds files A never had: {wrong[:5]}"
        nodes[victim] = start_run(b, cfg, *peer, listen_wait=60) if victim == "B" \
            else restart_a()
        wait_until(lambda: tree(b) == original and not _temps(b), 90, 0.2,
                   f"B did not converge after {victim}'s kill at {arrived} files:\n"
                   f"{nodes['B'].log()}\nA:\n{nodes['A'].log()}")
    finally:
        nodes.pop("B").stop()
    return len(got) < len(files)


@pytest.mark.slow
def test_kill_9_in_a_new_devices_first_sync_loses_and_invents_nothing(tmp_path):
    rnd = random.Random(SEED)
    a = tmp_path / "A"
    a.mkdir()
    _fill(a, rnd)
    original = tree(a)
    nodes = {"A": start_run(a, tmp_path / "cfgA", listen_wait=60)}
    port = nodes["A"].port

    def restart_a() -> RunNode:  # at its port: B dials it there again
        return start_run(a, tmp_path / "cfgA", port=port, listen_wait=60)

    mid = 0
    try:
        for n in range(POINTS):
            b = tmp_path / f"B{n}"
            victim = "BA"[n % 2]  # the new device, then the one serving it
            mid += _one_point(b, tmp_path / f"cfgB{n}", nodes, restart_a, victim, original, rnd)
            assert tree(a) == original, "A's folder changed"
            assert not _versions(b) and not _versions(a), \
                f"versions archived: A {_versions(a)[:5]}, B {_versions(b)[:5]}"
    finally:
        for node in nodes.values():
            node.stop()
    print(f"kill -9 in a first sync: {POINTS} points (B and A in turn), {mid} of them "
          "mid-transfer")
    assert mid >= POINTS // 2, "too few kills fell in the middle of the transfer to mean much"
