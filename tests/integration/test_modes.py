"""Peer-chosen permissions are never applied: an ordinary user's node, for real.

Root ignores mode bits, so the receiving `sync` runs as an ordinary user (setpriv),
with its own umask (027). The peer offers a world-writable directory, a directory
nobody may enter, a world-writable file, a private file and a private executable.
What lands follows the receiver's umask plus the executable bit, nothing else.
Skips where no ordinary user can be made or cannot run p2psync from this checkout.
"""

from __future__ import annotations

import os
import pwd
import shutil
import site
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.procs import REPO, SECRET, start_run, tree

USER = "p2psync-test"
PYTHON = "/usr/bin/python3"


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


@pytest.fixture
def ordinary_user():
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        r = subprocess.run(["useradd", "-M", "-r", "-s", "/usr/sbin/nologin", USER],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot add a user: {r.stderr.strip()}")
    pw = pwd.getpwnam(USER)
    home = Path(tempfile.mkdtemp(prefix="p2psync-user-", dir="/tmp"))
    os.chown(home, pw.pw_uid, pw.pw_gid)
    path = os.pathsep.join([str(REPO), *site.getsitepackages()])
    as_user = ["setpriv", "--reuid", str(pw.pw_uid), "--regid", str(pw.pw_gid),
               "--clear-groups", "--", "env", f"PYTHONPATH={path}", "HOME=" + str(home)]
    probe = subprocess.run([*as_user, PYTHON, "-c", "import app.cli.main, msgpack, blake3"],
                           capture_output=True, text=True)
    if probe.returncode != 0 or sys.version_info[:2] != (3, 11):
        shutil.rmtree(home, ignore_errors=True)
        pytest.skip(f"this checkout is not usable by an ordinary user: {probe.stderr[-200:]}")
    try:
        yield home, as_user
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_what_a_peer_creates_follows_the_receivers_umask_plus_exec(tmp_path, ordinary_user):
    home, as_user = ordinary_user
    a = tmp_path / "A"
    (a / "open").mkdir(parents=True)
    (a / "open/x.txt").write_text("world-writable at the source")
    (a / "locked").mkdir()
    (a / "locked/inside.txt").write_text("in a dir nobody may enter at the source")
    (a / "private.txt").write_text("private")
    (a / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(a / "open/x.txt", 0o666)
    os.chmod(a / "open", 0o777)
    os.chmod(a / "private.txt", 0o600)
    os.chmod(a / "run.sh", 0o700)
    os.chmod(a / "locked/inside.txt", 0o644)
    os.chmod(a / "locked", 0o000)
    node = start_run(a, tmp_path / "cfgA")
    try:
        b = home / "B"
        b.mkdir()
        os.chown(b, *_ids(home))
        cmd = [*as_user, "sh", "-c", 'umask 027 && exec "$@"', "sh", PYTHON, "-m", "app",
               "sync", "--folder", str(b), "--config-dir", str(home / "cfg"),
               "--no-discovery", "--secret", SECRET, "--peer", node.address,
               "--timeout", "60"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
        assert r.returncode == 0, r.stderr
    finally:
        os.chmod(a / "locked", 0o755)  # so that pytest can clean up
        assert node.stop() == 0, node.log()
    got = tree(b)
    assert got["locked/inside.txt"] == b"in a dir nobody may enter at the source"
    assert {rel: _mode(b / rel) for rel in ("open", "locked", "open/x.txt", "private.txt",
                                            "run.sh", "locked/inside.txt")} == {
        "open": 0o750, "locked": 0o750,  # directories: the umask's default
        "open/x.txt": 0o640, "private.txt": 0o640, "locked/inside.txt": 0o640,
        "run.sh": 0o750,  # the executable bit, for those who may read it
    }
    uid, _ = _ids(home)
    assert all(os.lstat(b / rel).st_uid == uid for rel in got)


def _ids(p: Path) -> tuple[int, int]:
    st = os.stat(p)
    return st.st_uid, st.st_gid
