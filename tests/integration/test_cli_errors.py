"""The command line's failures, exit codes and clean shutdowns, with real processes.

Contract: 0 done; 2 bad usage or bad folder (never created); 3 no peer could be
reached (each address and why); 4 a peer refused us; an error is one clear line on
stderr, never a traceback; `run` exits 0 on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from app import __version__
from app.cli.main import listen_address, peer_address
from tests.procs import SECRET, env, p2psync_cmd, start_run, sync, wait_until


def p2psync(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(p2psync_cmd(*args), capture_output=True, text=True, env=env(),
                          timeout=timeout)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def starts(folder: Path, config: Path) -> list[tuple[str, ...]]:
    """A `run` and a `sync` of folder on config that reach for no peer: the commands a
    failure at start is checked with."""
    common = ("--folder", str(folder), "--config-dir", str(config), "--no-discovery",
              "--secret", SECRET)
    return [("run", *common, "--listen", "127.0.0.1:0"),
            ("sync", *common, "--peer", "127.0.0.1:9")]


def assert_clean_error(r: subprocess.CompletedProcess, code: int) -> str:
    """Exit `code`, no traceback; returns the last stderr line (the error)."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = error_lines(r.stderr)
    assert lines, "no message on stderr"
    return lines[-1]


@pytest.fixture
def node(tmp_path):
    n = start_run(tmp_path / "A", tmp_path / "cfgA")
    yield n
    assert n.stop() == 0, n.log()


# --- exit 2: bad usage, bad folder --------------------------------------------------------
@pytest.mark.parametrize("command", [
    ["sync", "--peer", "127.0.0.1:9", "--secret", "k", "--no-discovery"],
    ["run", "--listen", "127.0.0.1:0", "--secret", "k", "--no-discovery"],
    ["status", "--json"],
])
def test_missing_folder_is_refused_not_created(tmp_path, command):
    missing = tmp_path / "does" / "not exist"
    r = p2psync(command[0], "--folder", str(missing), "--config-dir", str(tmp_path / "cfg"),
                *command[1:])
    line = assert_clean_error(r, 2)
    assert len(error_lines(r.stderr)) == 1, r.stderr
    assert "not exist" in line
    assert not missing.exists() and not missing.parent.exists()


def test_folder_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("not a folder")
    r = p2psync("sync", "--folder", str(f), "--config-dir", str(tmp_path / "cfg"),
                "--peer", "127.0.0.1:9", "--secret", "k", "--no-discovery")
    assert_clean_error(r, 2)
    assert len(error_lines(r.stderr)) == 1, r.stderr
    assert f.read_text() == "not a folder"


@pytest.mark.parametrize("peer", ["nonsense", "127.0.0.1", "127.0.0.1:port", "host:99999",
                                  "127.0.0.1:-1", "", "127.0.0.1:0", ":9", "::1", "[::1",
                                  "fe80::1:22100"])
def test_bad_peer_syntax_is_usage_error(tmp_path, peer):
    """Port 0, no host, an IPv6 address without brackets: `::1` was dialled as host ":"
    port 1, `:9` as 0.0.0.0, port 0 failed as "connection refused"."""
    (tmp_path / "B").mkdir()
    r = p2psync("sync", "--folder", str(tmp_path / "B"), "--config-dir", str(tmp_path / "cfg"),
                "--peer", peer, "--secret", "k", "--no-discovery")
    assert_clean_error(r, 2)
    assert len(error_lines(r.stderr)) == 1, r.stderr


@pytest.mark.parametrize("option", [("--discovery-port", "70000"), ("--discovery-port", "0"),
                                    ("--timeout", "-5"), ("--timeout", "nan")])
def test_a_port_or_time_out_of_range_is_usage_error(tmp_path, option):
    """--discovery-port 70000 ended in a traceback (OverflowError from bind)."""
    (tmp_path / "B").mkdir()
    r = p2psync("sync", "--folder", str(tmp_path / "B"), "--config-dir", str(tmp_path / "cfg"),
                "--peer", "127.0.0.1:9", "--secret", "k", "--no-discovery", *option)
    line = assert_clean_error(r, 2)
    assert len(error_lines(r.stderr)) == 1 and f"argument {option[0]}: expected" in line, line


@pytest.mark.parametrize(("listen", "why"), [
    ("nosuchhost.invalid:0", r"nosuchhost\.invalid is no name this machine knows"),
    ("192.0.2.1:0", r"192\.0\.2\.1 is not an address of this machine; 0\.0\.0\.0 listens "
                    r"on all of them"),
    ("127.0.0.1:{taken}", r"is another p2psync using that port\? pick one with --listen")])
def test_an_address_it_cannot_listen_on_says_why(tmp_path, listen, why):
    """Every failure said "is another p2psync using that port?", a name that does not
    resolve and an address of another machine too. (192.0.2.1: TEST-NET, no packet is
    sent: a bind fails on the spot.)"""
    (tmp_path / "A").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        r = p2psync("run", "--folder", str(tmp_path / "A"), "--config-dir", str(tmp_path / "c"),
                    "--listen", listen.format(taken=taken.getsockname()[1]),
                    "--no-discovery", "--secret", SECRET)
    line = assert_clean_error(r, 1)
    assert re.match(r"^p2psync: cannot listen on \S+: .* \(" + why, line), line


def test_unknown_option_is_usage_error(tmp_path):
    r = p2psync("sync", "--folder", str(tmp_path), "--bogus")
    assert_clean_error(r, 2)
    assert len(error_lines(r.stderr)) == 1, r.stderr


# --- exit 3: nobody reachable ---------------------------------------------------------------
def test_nothing_listening_is_exit_3_refused(tmp_path):
    # a bound socket that does not listen: the kernel refuses connections to its port,
    # and nobody else can take the port while we hold it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        r = sync(tmp_path / "B", tmp_path / "cfgB", f"127.0.0.1:{port}", timeout=20)
    line = assert_clean_error(r, 3)
    assert f"127.0.0.1:{port}" in line and "refused" in line, line
    assert not any(fnmatch.fnmatch(n, ".p2psync-*.tmp") for n in os.listdir(tmp_path / "B"))


def test_peer_that_never_answers_is_exit_3_timed_out(tmp_path):
    # a listening socket that never accepts: TCP connects (the kernel's backlog), but
    # nothing ever answers TLS; deterministic on loopback
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        port = s.getsockname()[1]
        started = time.monotonic()
        r = sync(tmp_path / "B", tmp_path / "cfgB", f"127.0.0.1:{port}", timeout=20)
        took = time.monotonic() - started
    line = assert_clean_error(r, 3)
    assert f"127.0.0.1:{port}" in line and "timed out" in line, line
    assert took < 20, "gave up only at --timeout, not at the connect timeout"


def test_each_unreachable_address_is_named(tmp_path):
    with socket.socket() as s1, socket.socket() as s2:
        s1.bind(("127.0.0.1", 0))
        s2.bind(("127.0.0.1", 0))
        p1, p2 = s1.getsockname()[1], s2.getsockname()[1]
        r = sync(tmp_path / "B", tmp_path / "cfgB", f"127.0.0.1:{p1}", f"127.0.0.1:{p2}",
                 timeout=20)
    line = assert_clean_error(r, 3)
    assert f"127.0.0.1:{p1}" in line and f"127.0.0.1:{p2}" in line, line


# --- exit 4: wrong share key ----------------------------------------------------------------
def test_wrong_secret_is_exit_4_and_node_survives(tmp_path, node):
    (node.folder / "hello.txt").write_text("hi")
    wait_until(lambda: re.search(r"scan: \d+ local change", node.log()), 15, 0.05, node.log())

    r = sync(tmp_path / "B", tmp_path / "cfgB", node.address, secret="not-the-key",
             timeout=20)

    line = assert_clean_error(r, 4)
    assert node.address in line, line
    assert not (tmp_path / "B" / "hello.txt").exists()
    assert node.proc.poll() is None, "the run node died of a wrong key:\n" + node.log()
    r = sync(tmp_path / "B", tmp_path / "cfgB", node.address, secret=SECRET, timeout=30)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "B" / "hello.txt").read_text() == "hi"


def test_sync_without_any_key_is_usage_error(tmp_path, node):
    (tmp_path / "B").mkdir()
    r = p2psync("sync", "--folder", str(tmp_path / "B"), "--config-dir",
                str(tmp_path / "cfgB"), "--peer", node.address, "--no-discovery")
    assert_clean_error(r, 2)


# --- version, signals ----------------------------------------------------------------------
def test_version(tmp_path):
    r = p2psync("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"p2psync {__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", __version__)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_exits_0_on_signal_and_leaves_no_temp_file(tmp_path, sig):
    a = tmp_path / "A"
    a.mkdir()
    (a / "file.txt").write_text("content")
    n = start_run(a, tmp_path / "cfgA")
    r = sync(tmp_path / "B", tmp_path / "cfgB", n.address, timeout=30)
    assert r.returncode == 0, r.stderr
    code = n.stop(sig)
    assert code == 0, n.log()
    assert "Traceback" not in n.log(), n.log()
    for folder in (a, tmp_path / "B"):
        for dirpath, _, files in os.walk(folder):
            assert not fnmatch.filter(files, ".p2psync-*.tmp"), (dirpath, files)
    # and the control socket is gone: status says no node runs
    r = p2psync("status", "--folder", str(a), "--config-dir", str(tmp_path / "cfgA"), "--json")
    assert r.returncode == 0, r.stderr
    assert '"node": null' in r.stdout


def _index_of(config: Path) -> Path:
    [db] = (config / "index").glob("*.db")
    return db


@pytest.mark.parametrize("damage", ["newer", "garbage"])
def test_an_index_that_will_not_open_is_one_line_for_every_command(tmp_path, damage):
    """An index written by a newer p2psync (this build run after it: a downgrade), or
    one that is no database at all: `run`, `sync` and `status` said so with a
    traceback. One line each, exit 1, saying what to do; the index is left as it is."""
    a, cfg = tmp_path / "A", tmp_path / "cfgA"
    a.mkdir()
    assert start_run(a, cfg).stop() == 0
    db = _index_of(cfg)
    if damage == "newer":
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        conn.close()
        want = (r"^p2psync: cannot open the index \S+: index schema 99 is newer than this "
                r"program's \d+ \(a newer p2psync wrote it: use that version, or a newer "
                r"one\)$")
    else:
        for extra in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            extra.unlink(missing_ok=True)
        db.write_bytes(os.urandom(8192))
        want = (r"^p2psync: cannot open the index \S+: file is not a database \(damaged: "
                r"move it away, and this device indexes its folder again at its next "
                r"start\)$")
    before = db.read_bytes()
    common = ("--folder", str(a), "--config-dir", str(cfg))
    for args in (("status", *common), ("status", "--json", *common), *starts(a, cfg)):
        line = assert_clean_error(p2psync(*args), 1)
        assert re.match(want, line), (args[0], line)
    assert db.read_bytes() == before


@pytest.mark.parametrize("damage", ["garbage", "another device's"])
def test_a_key_that_is_not_this_devices_is_one_line(tmp_path, damage):
    """key.pem damaged, or copied from another config dir: every start of `run` and
    `sync` ended in a traceback. One line saying how to make a new identity."""
    a, cfg = tmp_path / "A", tmp_path / "cfgA"
    a.mkdir()
    assert p2psync("id", "--config-dir", str(cfg)).returncode == 0
    if damage == "garbage":
        (cfg / "key.pem").write_bytes(os.urandom(200))
        want = "is not a usable private key"
    else:
        assert p2psync("id", "--config-dir", str(tmp_path / "other")).returncode == 0
        (cfg / "key.pem").write_bytes((tmp_path / "other" / "key.pem").read_bytes())
        want = "is not the key of cert.pem beside it"
    for args in starts(a, cfg):
        line = assert_clean_error(p2psync(*args), 1)
        assert line == (f"p2psync: {cfg / 'key.pem'} {want}; to give this device a new "
                        f"identity (a new device ID), remove key.pem and cert.pem from {cfg}"
                        ), line


def test_a_read_only_config_dir_is_one_line(tmp_path):
    """The config dir on a read-only mount: its lock file could not be opened, and
    `run` and `sync` ended in a traceback. (A read-only bind mount; skips where
    mounting is refused.)"""
    a, cfg, ro = tmp_path / "A", tmp_path / "cfg", tmp_path / "ro"
    for d in (a, ro):
        d.mkdir()
    assert p2psync("id", "--config-dir", str(cfg)).returncode == 0
    if subprocess.run(["mount", "--bind", str(cfg), str(ro)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
        for args in starts(a, ro):
            line = assert_clean_error(p2psync(*args), 1)
            assert line == (f"p2psync: cannot write in the config dir {ro}: Read-only file "
                            "system"), line
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def test_status_with_a_config_dir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "A").mkdir()
    (tmp_path / "cfg").write_text("not a dir")
    line = assert_clean_error(p2psync("status", "--folder", str(tmp_path / "A"),
                                      "--config-dir", str(tmp_path / "cfg")), 1)
    assert line == f"p2psync: the config dir {tmp_path / 'cfg'} is not a directory", line


def test_interrupted_sync_does_not_report_success(tmp_path):
    # a peer that never answers TLS keeps `sync` busy for its 5 s connect timeout
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        (tmp_path / "B").mkdir()
        proc = subprocess.Popen(
            p2psync_cmd("sync", "--folder", str(tmp_path / "B"), "--config-dir",
                        str(tmp_path / "cfgB"), "--no-discovery", "--secret", SECRET,
                        "--peer", f"127.0.0.1:{s.getsockname()[1]}"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        # wait until it is really waiting on the peer: our listener has it queued
        s.settimeout(10)
        conn, _ = s.accept()
        with conn:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=10)
    assert "Traceback" not in err, err
    assert proc.returncode != 0, "an interrupted sync exited 0 (= done, folders agree)"


def test_unreachable_error_is_said_once(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        r = sync(tmp_path / "B", tmp_path / "cfgB", f"127.0.0.1:{port}", timeout=20)
    assert r.returncode == 3
    lines = [line for line in error_lines(r.stderr) if "refused" in line]
    assert len(lines) == 1, r.stderr


def test_addresses_as_typed():
    """What --listen and --peer take: an IPv6 address in brackets, no host where to
    listen (every address), port 0 only there (any free port)."""
    assert peer_address("[::1]:22100") == ("::1", 22100)
    assert peer_address("laptop.local:22100") == ("laptop.local", 22100)
    assert listen_address(":0") == ("0.0.0.0", 0)
    assert listen_address("[::]:22100") == ("::", 22100)
    for bad in ("::1:0", "[::1:0", "x:70000"):
        with pytest.raises(argparse.ArgumentTypeError):
            listen_address(bad)


def test_an_ipv6_peer_is_named_as_typed():
    """`--peer [::1]:9` failed as "::1:9: connection refused"."""
    from app.engine.node import describe_connect_error

    said = describe_connect_error("::1", 9, ConnectionRefusedError())
    assert said.startswith("[::1]:9: connection refused"), said
    assert describe_connect_error("127.0.0.1", 9, ConnectionRefusedError()).startswith(
        "127.0.0.1:9: connection refused")


def test_the_whole_system_is_no_folder_to_share(tmp_path):
    """`--folder /` watched /proc and /sys, hashed their files and made /.p2psync.
    (Asked of `status`, which reads no folder, so the test itself stays harmless.)"""
    from app.engine.folder import checked_folder
    from app.errors import UsageError

    for folder in ("/", "/proc", "/sys/kernel"):
        with pytest.raises(UsageError, match=f"refusing to share {folder}: "):
            checked_folder(Path(folder))
    assert checked_folder(tmp_path) == tmp_path.resolve()
    line = assert_clean_error(p2psync("status", "--folder", "/", "--config-dir",
                                      str(tmp_path / "cfg")), 2)
    assert "refusing to share /: it is the whole system" in line, line


@pytest.mark.parametrize("name", ["a\nb", "x" * 65, " ", "tab\there"])
def test_a_name_no_peer_could_show_is_usage_error(tmp_path, name):
    (tmp_path / "B").mkdir()
    r = p2psync("sync", "--folder", str(tmp_path / "B"), "--config-dir", str(tmp_path / "cfg"),
                "--peer", "127.0.0.1:9", "--secret", "k", "--no-discovery", "--name", name)
    line = assert_clean_error(r, 2)
    assert "argument --name: expected a name of printable characters, at most 64" in line, line


def test_a_usage_error_names_the_program_once(tmp_path):
    """It said "p2psync: p2psync sync: argument --peer: ..." and "p2psync: p2psync:
    argument command: ...\""""
    r = p2psync("sync", "--folder", str(tmp_path), "--peer", "x")
    assert assert_clean_error(r, 2).startswith("p2psync: sync: argument --peer: expected"), \
        r.stderr
    r = p2psync("nonsense")
    assert assert_clean_error(r, 2).startswith("p2psync: argument command: invalid choice"), \
        r.stderr


def test_output_whose_reader_went_away_ends_quietly(tmp_path, node):
    """`p2psync status | head`: the reader takes what it wants and closes the pipe.
    That is no error to show (it printed a traceback): nothing on stderr, exit 1 (as
    Python's convention has it), for each command that prints."""
    folder = ("--folder", str(tmp_path / "A"), "--config-dir", str(tmp_path / "cfgA"))
    for i in range(5):
        (tmp_path / "A" / f"f{i}.txt").write_text("x")
    wait_until(lambda: "f4.txt" in p2psync("status", *folder).stdout)
    for args in (("status", *folder), ("status", "--json", *folder),
                 ("id", "--config-dir", str(tmp_path / "cfgA"))):
        read, write = os.pipe()
        os.close(read)  # gone before a byte is written: the first write meets it
        try:
            r = subprocess.run(p2psync_cmd(*args), stdout=write, stderr=subprocess.PIPE,
                               text=True, env=env(), timeout=60)
        finally:
            os.close(write)
        assert (r.returncode, r.stderr) == (1, ""), (args, r.returncode, r.stderr)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_output_on_a_full_disk_is_one_line(tmp_path, node):
    """`p2psync status > report.txt` on a full disk: one line saying so, exit 1 (it
    printed an OSError traceback)."""
    folder = ("--folder", str(tmp_path / "A"), "--config-dir", str(tmp_path / "cfgA"))
    for args in (("status", *folder), ("status", "--json", *folder),
                 ("id", "--config-dir", str(tmp_path / "cfgA"))):
        with open("/dev/full", "w") as full:
            r = subprocess.run(p2psync_cmd(*args), stdout=full, stderr=subprocess.PIPE,
                               text=True, env=env(), timeout=60)
        assert assert_clean_error(r, 1) == \
            "p2psync: cannot write the output: No space left on device", args
