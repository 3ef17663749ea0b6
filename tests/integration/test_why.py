"""Why a file is not synced, for real: `run` nodes and `sync`s over loopback, `status`
asked as a user would.

Each state's `why`: an ignore pattern (and an ignored file's null hash), a conflict,
a download in flight and then a device gone offline, files that can never be written
here (a name too long for this file system, a FIFO in the way, a directory this user
may not write: `sync` exits 5 listing them, and `status` says what to do), and our own
files that no device gets (a name that is not UTF-8, a backslash, an unreadable file).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_two_devices import HOUR_AGO, rows, write
from tests.localusers import LocalUsers, Unavailable
from tests.procs import SECRET, env, p2psync_cmd, start_run, sync, wait_until


def status(folder: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run(p2psync_cmd("status", "--folder", str(folder), "--config-dir",
                                   str(config), *args),
                       capture_output=True, text=True, env=env(), timeout=30)
    assert r.returncode == 0, r.stderr
    return r


def files(folder: Path, config: Path, *paths: str) -> dict[str, dict]:
    return rows(json.loads(status(folder, config, "--json", *paths).stdout))


def problems(stderr: str) -> dict[str, str]:
    """The `path: why` lines of an exit 5, after "could not be synced:"."""
    tail = stderr.partition("could not be synced:\n")[2]
    return dict(line.removeprefix("p2psync: ").split(": ", 1)
                for line in tail.splitlines() if ": " in line)


def test_ignored_and_conflict_say_why_and_status_lists_only_the_paths_asked(
        tmp_path, run_node):
    a, b = tmp_path / "A", tmp_path / "B"
    write(a / ".p2psyncignore", "*.o\n")
    write(a / "build/out.o", "object code")
    write(a / "notes.txt", "laptop's words", mtime=HOUR_AGO)
    write(b / "notes.txt", "desk's words", mtime=HOUR_AGO + 60)  # newer: it keeps the name
    write(a / "other.txt", "fine")
    node = run_node("A", "--name", "laptop")
    r = sync(b, tmp_path / "cfgB", node.address, extra=("--name", "desk"))
    assert r.returncode == 0, r.stderr

    got = files(a, node.config)
    assert got["build/out.o"]["state"] == "ignored"
    assert got["build/out.o"]["hash"] is None
    assert got["build/out.o"]["why"] == "ignored by `*.o` in .p2psyncignore"
    assert got["other.txt"]["state"] == "synced" and got["other.txt"]["why"] is None
    copy = next(p for p in got if ".sync-conflict-" in p)
    assert got["notes.txt"]["state"] == got[copy]["state"] == "conflict"
    assert re.fullmatch(rf"in conflict: this device's version of .+, made without seeing "
                        rf"this one, was kept beside it as `{re.escape(copy)}`; compare them, "
                        rf"keep what you need, delete the copy", got["notes.txt"]["why"])
    assert re.fullmatch(r"conflict copy of `notes.txt`: this device's version of .+, kept beside "
                        r"the newer edit made without seeing it; compare the two, keep what "
                        r"you need, delete this copy", got[copy]["why"]), got[copy]["why"]

    only = files(a, node.config, "notes.txt", str(a / "build"))
    assert sorted(only) == ["build/out.o", "notes.txt"]
    text = status(a, node.config).stdout
    assert "why: ignored by `*.o` in .p2psyncignore" in text
    assert "other.txt\n" in text and "other.txt\n                why" not in text
    outside = subprocess.run(p2psync_cmd("status", "--folder", str(a), "--config-dir",
                                         str(node.config), str(tmp_path)),
                             capture_output=True, text=True, env=env(), timeout=30)
    assert outside.returncode == 2 and "is not inside the folder" in outside.stderr
    assert "Traceback" not in outside.stderr


def test_a_download_in_flight_then_a_device_gone_offline(tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    write(a / "big.bin", os.urandom(96 * 2**20))
    node_a = start_run(a, tmp_path / "cfgA", "--name", "laptop")
    node_b = None
    try:
        node_b = start_run(b, tmp_path / "cfgB", "--peer", node_a.address)
        wait_until(lambda: any(n.startswith(".p2psync-") for n in os.listdir(b)), 30, 0.005,
                   f"no transfer started; log:\n{node_b.log()}")
        node_a.proc.send_signal(signal.SIGSTOP)  # the transfer stalls half-way
        try:
            row = files(b, node_b.config, "big.bin")["big.bin"]
            assert row["state"] == "remote_change"
            assert re.fullmatch(r"downloading from laptop: [\d.]+ [KM]?B of 96\.0 MB "
                                r"\(\d+%\)", row["why"]), row["why"]
            # the silent peer is dropped (6 s): it is offline since it was last seen
            node_b.wait_for_log(r"disconnected from laptop", timeout=30)
            offline = re.compile(r"newer version on laptop, which is offline since \d\d:\d\d"
                                 r"(: waiting for it to come online|: [\d.]+ [KM]?B of 96\.0 "
                                 r"MB \(\d+%\) came in; the rest comes when it is back)")
            wait_until(lambda: offline.fullmatch(
                files(b, node_b.config, "big.bin")["big.bin"]["why"]), 30, 0.2)
        finally:
            node_a.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: (b / "big.bin").exists(), 60, 0.1, node_b.log())
    finally:
        for n in (node_b, node_a):
            if n is not None:
                assert n.stop() == 0, n.log()
    node_b = None
    row = files(b, tmp_path / "cfgB", "big.bin")["big.bin"]
    assert row["state"] == "synced", row


def test_files_that_can_never_be_written_here_are_errors_and_sync_exits_5(tmp_path, run_node):
    a = tmp_path / "A"
    deep = "/".join(f"{i}" + "d" * 199 for i in range(7))
    write(a / deep / "big.bin", os.urandom(300_000))  # more than a block: its own temp file
    write(a / "pipe", "a file where B has a FIFO")
    write(a / "fine.txt", "fine")
    node = run_node("A")
    # B's folder is so deep that deep/big.bin is past PATH_MAX there (not on A)
    b = tmp_path / "B" / "/".join("x" * 250 for _ in range(11))
    b.mkdir(parents=True)
    assert len(os.fsencode(b / deep / "big.bin")) > 4096 > len(os.fsencode(a / deep))
    os.mkfifo(b / "pipe")
    r = sync(b, tmp_path / "cfgB", node.address, timeout=60)
    assert r.returncode == 5, r.stderr
    assert "Traceback" not in r.stderr
    too_long = ("cannot be written here: name too long for this file system (rename it "
                "where it was made, or add it to .p2psyncignore)")
    fifo = "cannot be written here: a FIFO (named pipe) is in the way; remove or rename it"
    listed = problems(r.stderr)
    assert listed[f"{deep}/big.bin"] == too_long
    assert listed["pipe"] == fifo
    got = files(b, tmp_path / "cfgB")
    assert (got[f"{deep}/big.bin"]["state"], got[f"{deep}/big.bin"]["why"]) == ("error",
                                                                                too_long)
    assert (got["pipe"]["state"], got["pipe"]["why"]) == ("error", fifo)
    assert got["fine.txt"]["state"] == "synced"
    # the FIFO goes: the file comes, and the error with it
    os.unlink(b / "pipe")
    r = sync(b, tmp_path / "cfgB", node.address, timeout=60)
    assert r.returncode == 5 and "pipe" not in problems(r.stderr), r.stderr
    assert (b / "pipe").read_text() == "a file where B has a FIFO"
    assert files(b, tmp_path / "cfgB", "pipe")["pipe"]["state"] == "synced"


def test_our_files_no_device_gets_are_errors_here_and_sync_exits_5(tmp_path, run_node):
    b = tmp_path / "B"
    write(b / "fine.txt", "fine")
    with open(os.fsencode(b) + b"/caf\xe9.txt", "wb") as f:  # Latin-1, not UTF-8
        f.write(b"x")
    write(b / "back\\slash.txt", "x")
    node = run_node("A")
    r = sync(b, tmp_path / "cfgB", node.address)
    assert r.returncode == 5, r.stderr
    listed = problems(r.stderr)
    assert listed == {
        "caf\ufffd.txt": "not synced: the name is not valid UTF-8; rename it",
        "back\\slash.txt": "not synced: the name holds a backslash, a path separator on "
                           "Windows; rename it",
    }
    got = files(b, tmp_path / "cfgB")
    assert {p: (f["state"], f["why"]) for p, f in got.items() if f["state"] != "synced"} == {
        p: ("error", why) for p, why in listed.items()}
    assert (node.folder / "fine.txt").read_text() == "fine"


@pytest.fixture
def users():
    try:
        u = LocalUsers()
    except Unavailable as e:
        pytest.skip(str(e))
    yield u
    u.close()


def test_a_directory_this_user_may_not_write_and_a_file_it_may_not_read(tmp_path, users):
    a = users.base / "A"
    write(a / "ro/new.txt", "new")
    write(a / "ok.txt", "ok")
    node = start_run(a, users.base / "cfgA")
    try:
        b = users.mkdir(users.home / "B", users.me, 0o755)
        users.mkdir(b / "ro", users.me, 0o555)
        write(b / "secret.txt", "not for this user")
        os.chmod(b / "secret.txt", 0o600)  # root's, in the user's folder
        cfg = str(users.home / "cfg")
        r = users.p2psync("sync", "--folder", str(b), "--config-dir", cfg, "--no-discovery",
                          "--secret", SECRET, "--peer", node.address, "--timeout", "30")
        assert r.returncode == 5, r.stderr
        assert "Permission denied: '.'" not in r.stderr and "Traceback" not in r.stderr
        no_write = ("cannot be written here: this user may not write in the directory `ro/` "
                    "(give it write access there, or add the path to .p2psyncignore)")
        no_read = ("cannot be read here (permission denied): give this user read access, "
                   "or add it to .p2psyncignore")
        assert problems(r.stderr) == {"ro/new.txt": no_write, "secret.txt": no_read}
        s = users.p2psync("status", "--folder", str(b), "--config-dir", cfg, "--json")
        got = rows(json.loads(s.stdout))
        assert (got["ro/new.txt"]["state"], got["ro/new.txt"]["why"]) == ("error", no_write)
        assert (got["secret.txt"]["state"], got["secret.txt"]["why"]) == ("error", no_read)
        assert got["ok.txt"]["state"] == "synced"
    finally:
        assert node.stop() == 0, node.log()


def test_status_text_escapes_a_names_control_characters():
    """A file a peer named "x\\n  synced  fake" or with a terminal's escape codes
    printed as a line of its own, or sent those codes to the terminal; --json was
    always escaped."""
    from app.cli.status import render

    text = render({"folder": "/f", "device_id": "D", "node": None, "files": [
        {"state": "error", "path": "x\n  synced        fake\x1b]52;c;ZXZpbA==\x07",
         "why": "it said: no\nreally"},
        {"state": "synced", "path": "été/notes.txt"}]})
    lines = text.splitlines()
    assert r"  error         x\n  synced        fake\x1b]52;c;ZXZpbA==\x07" in lines, text
    assert r"                why: it said: no\nreally" in lines, text
    assert "  synced        été/notes.txt" in lines, text
    assert "\x1b" not in text and "\x07" not in text
