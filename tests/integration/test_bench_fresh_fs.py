"""bench_sync.py --fresh-fs: each group of many files on a file system of its own, given
back (unmounted, detached, its image gone) however the group ends."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import bench_sync  # noqa: E402


def _loop_mounts_work(tmp_path: Path) -> bool:
    """Whether this machine lets us make, attach and mount a file system (a container
    may have no loop devices, or may not mount)."""
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("mkfs.ext4", "losetup")):
        return False
    probe, mnt = tmp_path / "probe.img", tmp_path / "probe"
    mnt.mkdir()
    probe.write_bytes(b"\0" * 8 * 1024 * 1024)
    if subprocess.run(["mkfs.ext4", "-q", "-F", str(probe)], capture_output=True).returncode:
        return False
    done = subprocess.run(["losetup", "--find", "--show", str(probe)], capture_output=True,
                          text=True)
    if done.returncode:
        return False
    dev = done.stdout.strip()
    try:
        if subprocess.run(["mount", dev, str(mnt)], capture_output=True).returncode:
            return False
        subprocess.run(["umount", str(mnt)], check=True)
    finally:
        subprocess.run(["losetup", "--detach", dev], check=True)
    probe.unlink()
    mnt.rmdir()
    return True


@pytest.fixture
def parent(tmp_path, monkeypatch):
    if not _loop_mounts_work(tmp_path):
        pytest.skip("needs root, mkfs.ext4, loop devices and mounts")
    monkeypatch.setattr(bench_sync, "FRESH_FS_BYTES", 256 * 1024 * 1024)
    return tmp_path


def _attached(image: Path) -> bool:
    listed = subprocess.run(["losetup", "--list", "--noheadings", "--output", "BACK-FILE"],
                            capture_output=True, text=True).stdout
    return str(image) in listed


def test_a_group_gets_a_new_empty_file_system_and_gives_it_back(parent):
    with bench_sync.fresh_fs(parent, "tiny_files") as mnt:
        assert os.stat(mnt).st_dev != os.stat(parent).st_dev
        assert {p.name for p in mnt.iterdir()} == {"lost+found"}
        (mnt / "a").mkdir()
        (mnt / "a" / "f").write_bytes(b"x")
        assert _attached(parent / "tiny_files.img")
    assert not os.path.ismount(mnt)
    assert not (parent / "tiny_files.img").exists()
    assert not _attached(parent / "tiny_files.img")


def test_a_group_that_fails_gives_it_back_too(parent):
    with pytest.raises(bench_sync.BenchFailure), \
            bench_sync.fresh_fs(parent, "small_files") as mnt:
        raise bench_sync.BenchFailure("the group failed")
    assert not os.path.ismount(mnt)
    assert not (parent / "small_files.img").exists()
    assert not _attached(parent / "small_files.img")
