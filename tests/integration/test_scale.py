"""A folder at scale, over real processes: renamed directories and a 100,000-file first sync.

Correctness only (issue #11); the figures are bench/bench_sync.py's (tiny and million
groups), never asserted here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.procs import sync, wait_until

HOUR_AGO = 1_700_000_000


def _write_many(root: Path, count: int, per_dir: int = 100) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    for i in range(count):
        d = root / f"d{i // per_dir:04d}"
        if i % per_dir == 0:
            d.mkdir(parents=True)
        fd = os.open(d / f"f{i:06d}.txt", flags, 0o644)
        os.write(fd, b"file %d " % i * (1 + i % 7))
        os.close(fd)
        os.utime(d / f"f{i:06d}.txt", (HOUR_AGO, HOUR_AGO))


def _inodes(root: Path) -> dict[str, int]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".p2psync"]
        for name in filenames:
            p = Path(dirpath, name)
            out[p.relative_to(root).as_posix()] = p.stat().st_ino
    return out


def _recorded(node) -> int:
    """Local changes A's scans recorded so far (a rename records two per file)."""
    return sum(int(m.group(1)) for line in list(node.lines)
               if (m := re.search(r"scan: (\d+) local change", line)))


def _pulled(stderr: str) -> list[tuple[int, int, int]]:
    """(changes, bytes fetched, bytes reused) of each round the sync logged."""
    return [(int(a), int(b), int(c)) for a, b, c in re.findall(
        r"pulled (\d+) change\(s\) in [\d.]+ s \((\d+) bytes fetched, (\d+) reused\)", stderr)]


def test_a_renamed_directory_of_thousands_of_files_is_renamed_not_copied(tmp_path, run_node):
    """3,000 files in 30 directories under one: more than an index batch, so the
    deletions and the new paths arrive apart and must still be paired."""
    a, b = tmp_path / "A", tmp_path / "B"
    _write_many(a / "photos", 3000)
    node = run_node("A")
    first = sync(b, tmp_path / "cfgB", node.address, timeout=120)
    assert first.returncode == 0, first.stderr
    before = _inodes(b / "photos")
    assert len(before) == 3000

    recorded = _recorded(node)
    os.rename(a / "photos", a / "pictures")  # B syncs once A recorded every move:
    wait_until(lambda: _recorded(node) >= recorded + 2 * 3000, timeout=60,  # not half
               msg="A never recorded the rename")
    r = sync(b, tmp_path / "cfgB", node.address, timeout=120)
    assert r.returncode == 0, f"{r.stderr}\nrun node:\n{node.log()}"

    assert not (b / "photos").exists()
    after = _inodes(b / "pictures")
    assert after == before, "every file keeps its inode: renamed, never rewritten"
    assert all(fetched == 0 and reused == 0 for _, fetched, reused in _pulled(r.stderr)), \
        r.stderr
    versions = b / ".p2psync" / "versions"
    archived = [p for p in versions.rglob("*") if p.is_file()] if versions.exists() else []
    assert archived == [], f"{len(archived)} copies archived, e.g. {archived[:3]}"


@pytest.mark.slow
def test_a_first_sync_of_100000_files_converges_in_one_sync(tmp_path, run_node):
    """One `sync` receives them all with no disconnect; the loop-lag figures of both
    sides are printed (the benchmark holds the targets, not this test)."""
    a, b = tmp_path / "A", tmp_path / "B"
    _write_many(a, 100_000)
    node = run_node("A", "-v", listen_wait=300)  # it listens once it scanned them
    node.wait_for_log(r"scan: \d+ local change", timeout=300)

    r = sync(b, tmp_path / "cfgB", node.address, timeout=600, extra=("-v",))

    assert r.returncode == 0, f"{r.stderr[-3000:]}\nrun node:\n{node.log()[-3000:]}"
    assert not re.search(r"disconnected|no answer", r.stderr), r.stderr[-3000:]
    assert len(_inodes(b)) == 100_000
    for i in (0, 4321, 99_999):
        rel = f"d{i // 100:04d}/f{i:06d}.txt"
        assert (b / rel).read_bytes() == (a / rel).read_bytes()
    lag = re.findall(r".*loop.*", r.stderr)
    print("sync:", *(lag[-2:] or ["(no loop-lag summary)"]), sep="\n  ")
    assert node.stop() == 0
    print("run node:", *(re.findall(r".*loop.*", node.log())[-2:] or ["(none)"]), sep="\n  ")
