"""A receiving folder on a really full disk: a small tmpfs, twice its size to fetch.

Real processes over loopback. The receiver's folder is a 20 MiB tmpfs (its index
lives in its config dir, elsewhere); the source holds about 40 MiB. What must hold:
every file that lands is complete, the source's files never change, the files that
do not fit are reported as "no space left" (`sync` exits 5 listing them, `status`
shows them as error), and once the tmpfs is grown a running node finishes the job by
itself, with no restart and no temp file left behind. Skips where mounting is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import subprocess
from pathlib import Path

import pytest

from tests.procs import start_run, status_json, sync, tmpfs, wait_until

MIB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path):
    with tmpfs(tmp_path / "B", "20m") as mnt:
        yield mnt


def _digests(root: Path) -> dict[str, str]:
    """rel -> sha256 of every file at a final path (a temp file is no final path)."""
    out = {}
    for dirpath, dirs, names in os.walk(root):
        if Path(dirpath) == root:
            dirs[:] = [d for d in dirs if d != ".p2psync"]
        for n in names:
            p = Path(dirpath) / n
            if n.startswith(".p2psync-") or p.is_symlink():
                continue
            with contextlib.suppress(FileNotFoundError):  # moved while we read
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _temps(root: Path) -> list[Path]:
    return list(root.rglob(".p2psync-*.tmp"))


def test_a_full_disk_truncates_nothing_and_recovers_by_itself(tmp_path, small_disk):
    a = tmp_path / "A"
    rnd = random.Random(5)
    for i in range(6):
        (a / "big").mkdir(parents=True, exist_ok=True)
        (a / f"big/{i}.bin").write_bytes(rnd.randbytes(5 * MIB + i))
    for i in range(300):
        (a / "small").mkdir(parents=True, exist_ok=True)
        (a / f"small/{i:03}.txt").write_bytes(rnd.randbytes(rnd.randrange(1, 60_000)))
    source = _digests(a)
    node_a = start_run(a, tmp_path / "cfgA")
    try:
        # a one-shot sync into the small disk: some files fit, the rest are listed
        r = sync(small_disk, tmp_path / "cfgB", node_a.address, timeout=60)
        assert r.returncode == 5, r.stderr
        # the empty folder took small files with A's index: that path met the full disk too
        assert re.search(r"pulled \d+ change\(s\) .* with \S+'s index", r.stderr), r.stderr
        lines = [ln for ln in r.stderr.splitlines() if "no space left here" in ln]
        assert lines, r.stderr
        assert all(" needed, " in ln for ln in lines)
        landed = _digests(small_disk)
        assert landed, "nothing fitted at all"
        assert all(source[rel] == h for rel, h in landed.items()), "a wrong file landed"
        assert _digests(a) == source
        assert _temps(small_disk) == []
        rows = {f["path"]: f for f in status_json(small_disk, tmp_path / "cfgB")["files"]}
        errors = [f for f in rows.values() if f["state"] == "error"]
        assert errors and all("no space left" in f["why"] for f in errors)

        # a running node: still full, it waits; grown, it finishes without a restart
        node_b = start_run(small_disk, tmp_path / "cfgB", "--peer", node_a.address)
        try:
            node_b.wait_for_log(r"no space left here", timeout=30)
            assert all(source[rel] == h for rel, h in _digests(small_disk).items())
            subprocess.run(["mount", "-o", "remount,size=100m", str(small_disk)], check=True)
            wait_until(lambda: _digests(small_disk) == source, 60, 0.2,
                       f"never converged after the disk grew; log:\n{node_b.log()}")
            wait_until(lambda: not _temps(small_disk), 20, 0.2, "temp files stayed")
            wait_until(lambda: all(f["state"] == "synced" for f in status_json(
                small_disk, tmp_path / "cfgB")["files"]), 20, 0.2, "errors stayed listed")
        finally:
            assert node_b.stop() == 0, node_b.log()
        assert _digests(a) == source
    finally:
        assert node_a.stop() == 0, node_a.log()
