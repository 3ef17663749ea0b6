"""`p2psync versions` and `restore` with real processes: what a peer replaced is listed,
with that peer's name, and a restored version reaches the peer like any edit."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.procs import env, p2psync_cmd, start_run, sync, wait_until


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(p2psync_cmd(*args), capture_output=True, text=True, env=env(),
                          timeout=60)


def write(p: Path, data: bytes, mtime: float) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    os.utime(p, (mtime, mtime))


def test_versions_listed_and_a_restore_reaches_the_peer(tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    write(a / "notes/todo.txt", b"version 1\n", 1_700_000_000)
    node = start_run(a, tmp_path / "cfgA", "--name", "laptop")
    try:
        def ok_sync() -> None:
            r = sync(b, tmp_path / "cfgB", node.address)
            assert r.returncode == 0, r.stderr

        ok_sync()
        write(a / "notes/todo.txt", b"version 2\n", 1_700_000_100)
        wait_until(lambda: ok_sync() is None and
                   (b / "notes/todo.txt").read_bytes() == b"version 2\n", 30, 0.5)

        r = cli("versions", "--folder", str(b), "--config-dir", str(tmp_path / "cfgB"),
                "notes/todo.txt")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("notes/todo.txt\n")
        assert "replaced by a change from laptop (" in r.stdout, r.stdout
        r = cli("versions", "--folder", str(b), "--json")
        [v] = json.loads(r.stdout)["versions"]
        assert v["path"] == "notes/todo.txt" and v["size"] == len(b"version 1\n")

        r = cli("restore", "--folder", str(b), "notes/todo.txt", "--at", v["at"])
        assert r.returncode == 0, r.stderr
        assert "restored notes/todo.txt" in r.stdout
        assert (b / "notes/todo.txt").read_bytes() == b"version 1\n"
        ok_sync()  # the restore is an edit like any other: it goes to the peer
        wait_until(lambda: (a / "notes/todo.txt").read_bytes() == b"version 1\n", 15, 0.1,
                   f"the restore never reached A:\n{node.log()}")
        # on A, the version it replaced is kept in its turn
        kept = json.loads(cli("versions", "--folder", str(a), "--json").stdout)["versions"]
        assert any(k["size"] == len(b"version 2\n") for k in kept)

        r = cli("restore", "--folder", str(b), "notes/nothing.txt")
        assert r.returncode == 2
        assert r.stderr.strip() == ("p2psync: no earlier version of notes/nothing.txt is kept "
                                    "in .p2psync/versions")
    finally:
        assert node.stop() == 0, node.log()


def test_versions_and_restore_take_a_path_as_status_does(tmp_path):
    """`versions ../x` answered "no earlier version of ../x is kept", exit 0, where
    `status` refuses a path outside the folder (exit 2); `restore` refused an absolute
    path inside the folder ("absolute path") that `status` takes as its relative one."""
    folder = tmp_path / "f"
    folder.mkdir()
    for command in ("versions", "restore"):
        for outside in ("../x", "/etc/passwd"):
            r = cli(command, "--folder", str(folder), outside)
            assert r.returncode == 2, r.stderr
            assert r.stderr.strip() == f"p2psync: {outside} is not inside the folder {folder}"
    r = cli("versions", "--folder", str(folder), str(folder / "a.txt"))
    assert r.returncode == 0 and r.stdout.strip() == \
        f"no earlier version of a.txt is kept in {folder}", r.stdout + r.stderr
    r = cli("restore", "--folder", str(folder), str(folder / "a.txt"))
    assert r.returncode == 2 and r.stderr.strip() == \
        "p2psync: no earlier version of a.txt is kept in .p2psync/versions", r.stderr
