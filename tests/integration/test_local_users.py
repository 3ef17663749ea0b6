"""Another local user can neither stand in for our node nor read our config dir. For real.

`me` (an ordinary user) runs p2psync; `other` (another ordinary user of the machine)
squats the control socket's place in the shared temp dir with a server of its own that
answers fake peers, or leaves a file or a link there; or owns the config dir. Each time
`run` refuses with one line (exit 2) and `status` never shows what the squatter says.
A config dir others can read is tightened, and what p2psync writes there is 0600 (the
index's -wal and -shm too, under umask 000). See tests/localusers.py for the users.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from tests.localusers import PYTHON, LocalUsers, Unavailable
from tests.procs import SECRET

FAKE_NAME = "fake-peer-of-other"
# A control-socket server of another user: makes the dir (when asked), serves fake peers,
# and says on stderr each time someone asks it.
SQUATTER = f"""
import json, os, socket, sys
path, make_dir = sys.argv[1], sys.argv[2] == "dir"
if make_dir:
    os.mkdir(os.path.dirname(path), 0o777)
    os.chmod(os.path.dirname(path), 0o777)
s = socket.socket(socket.AF_UNIX)
s.bind(path)
os.chmod(path, 0o777)
s.listen()
print("ready", file=sys.stderr, flush=True)
fake = {{"role": "server", "peers": [{{"device_id": "FAKEFAK-EFAKEFA-KEFAKEF-AKEFAKE-FAKEFAK",
        "name": "{FAKE_NAME}", "address": "10.6.6.6:22100", "role": "server",
        "state": "connected"}}]}}
while True:
    c, _ = s.accept()
    print("asked", file=sys.stderr, flush=True)
    c.settimeout(2)
    try:
        c.recv(1000)
        c.sendall(json.dumps(fake).encode() + b"\\n")
    except OSError:
        pass
    c.close()
"""


@pytest.fixture
def users():
    try:
        u = LocalUsers()
    except Unavailable as e:
        pytest.skip(str(e))
    try:
        yield u
    finally:
        u.close()


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def _share(users: LocalUsers) -> tuple[Path, Path]:
    """`me`'s folder, and a config dir whose path is too long for the socket to live in it."""
    folder = users.mkdir(users.home / "Shared", users.me, 0o755)
    config = users.home / ("long-config-dir-" + "x" * 80)
    return folder, config


def _one_clear_line(r: subprocess.CompletedProcess, code: int, *words: str) -> str:
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "refused" in line or "belongs" in line]
    assert len(errors) == 1, r.stderr
    for w in words:
        assert w in errors[0], errors[0]
    return errors[0]


def _run_once(users: LocalUsers, folder: Path, config: Path,
              tmp: Path | None = None) -> subprocess.CompletedProcess:
    return users.p2psync("run", "--folder", str(folder), "--config-dir", str(config),
                         "--listen", "127.0.0.1:0", "--no-discovery", "--secret", SECRET,
                         tmp=tmp)


def _status(users: LocalUsers, folder: Path, config: Path) -> subprocess.CompletedProcess:
    return users.p2psync("status", "--folder", str(folder), "--config-dir", str(config),
                         "--json")


# --- the control socket ----------------------------------------------------------------
def test_squatted_socket_dir_in_the_temp_dir_is_refused(users):
    folder, config = _share(users)
    sock = users.control_socket(folder, config)
    assert sock.parent == users.tmp / f"p2psync-{users.me.pw_uid}"  # the fallback place
    squatter = users.start(users.other, PYTHON, "-c", SQUATTER, str(sock), "dir")
    squatter.wait_for("ready")

    r = _run_once(users, folder, config)
    _one_clear_line(r, 2, str(sock.parent), "belongs to another user", users.other.pw_name)
    r = _status(users, folder, config)
    _one_clear_line(r, 2, "belongs to another user")
    assert FAKE_NAME not in r.stdout

    assert "asked" not in squatter.log()  # never even connected to
    assert sock.exists() and os.lstat(sock).st_uid == users.other.pw_uid  # nor removed


def test_socket_of_ours_served_by_another_user_is_not_believed(users):
    """Every path check passes (our dir, a socket we own); only the kernel's word says
    who answers: the squatter's server, whose socket was moved into place and chowned
    (what a swap between our check and our connect would amount to)."""
    folder, config = _share(users)
    sock = users.control_socket(folder, config)
    users.mkdir(sock.parent, users.me)
    theirs = users.mkdir(users.tmp / "theirs", users.other, 0o755) / "s.sock"
    squatter = users.start(users.other, PYTHON, "-c", SQUATTER, str(theirs), "no")
    squatter.wait_for("ready")
    os.rename(theirs, sock)
    users.chown(sock, users.me)

    r = _status(users, folder, config)
    _one_clear_line(r, 2, "served by another user", users.other.pw_name)
    assert FAKE_NAME not in r.stdout
    r = _run_once(users, folder, config)
    _one_clear_line(r, 2, "served by another user")
    assert os.lstat(sock).st_uid == users.me.pw_uid  # left as it was found


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_a_file_or_a_link_at_the_socket_path_is_refused(users, kind):
    folder, config = _share(users)
    sock = users.control_socket(folder, config)
    users.mkdir(sock.parent, users.me)
    theirs = users.mkdir(users.tmp / "theirs", users.other, 0o755) / "s.sock"
    squatter = users.start(users.other, PYTHON, "-c", SQUATTER, str(theirs), "no")
    squatter.wait_for("ready")
    if kind == "file":
        sock.write_text("not a socket")
    else:
        sock.symlink_to(theirs)  # a link to the squatter's live server
    users.chown(sock, users.me)

    what = "is not a socket" if kind == "file" else "is a symbolic link"
    r = _run_once(users, folder, config)
    _one_clear_line(r, 2, str(sock), what)
    r = _status(users, folder, config)
    _one_clear_line(r, 2, what)
    assert FAKE_NAME not in r.stdout
    assert "asked" not in squatter.log()
    assert os.path.lexists(sock) and (kind != "symlink" or sock.is_symlink())  # not removed


def test_the_socket_dir_is_made_private_and_a_stale_socket_of_ours_is_replaced(users):
    folder, config = _share(users)
    sock = users.control_socket(folder, config)
    node = users.start_run(folder, config)
    node.wait_for(r"listening on")
    assert _mode(sock.parent) == 0o700 and os.lstat(sock.parent).st_uid == users.me.pw_uid
    assert stat.S_ISSOCK(os.lstat(sock).st_mode) and _mode(sock) == 0o600
    node.proc.send_signal(signal.SIGKILL)  # a crash: the socket stays, nobody answers
    node.proc.wait(10)
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)

    node = users.start_run(folder, config)
    node.wait_for(r"listening on")
    r = _status(users, folder, config)
    assert r.returncode == 0, r.stderr
    assert '"node": {"role"' in r.stdout
    # a process of another user that reaches the socket anyway (root, here) is told nothing
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(os.fspath(sock))
        try:
            s.sendall(b'{"cmd": "status"}\n')
            answer = s.recv(65536)
        except (BrokenPipeError, ConnectionResetError):  # closed at once, request unread
            answer = b""
        assert answer == b""
    assert node.stop() == 0, node.log()
    assert "Traceback" not in node.log(), node.log()
    assert not os.path.lexists(sock)  # ours: removed on the way out
    r = _status(users, folder, config)
    assert r.returncode == 0 and '"node": null' in r.stdout, r.stderr


# --- the config dir ------------------------------------------------------------------
def test_an_open_config_dir_is_tightened_and_everything_in_it_is_0600(users):
    """An older p2psync's config dir, 0755 with a 0644 settings.json, under umask 000."""
    folder = users.mkdir(users.home / "Shared", users.me, 0o755)
    (folder / "a.txt").write_text("a file to index")
    users.chown(folder / "a.txt", users.me)
    config = users.mkdir(users.home / "cfg", users.me, 0o755)
    (config / "settings.json").write_text('{"device_name": "old"}')
    os.chmod(config / "settings.json", 0o644)
    users.chown(config / "settings.json", users.me)
    users.mkdir(config / "index", users.me, 0o755)

    node = users.start_run(folder, config, umask=0o000)
    node.wait_for(r"listening on")
    try:
        tightened = [line for line in node.lines if "open to other users" in line]
        assert len(tightened) == 1 and str(config) in tightened[0], node.log()
        db = next((config / "index").glob("*.db"))
        wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
        assert wal.exists() and shm.exists()  # the node holds the index open
        entries = {p.relative_to(config).as_posix(): _mode(p)
                   for p in [config, *config.rglob("*")]}
        dirs = {".", "index", "ctl"}
        assert entries == {
            **{d: 0o700 for d in dirs},
            **{name: 0o600 for name in entries if name not in dirs},
        }, entries
        assert {"settings.json", "key.pem", "cert.pem", ".lock",
                db.relative_to(config).as_posix(), f"index/{wal.name}",
                f"index/{shm.name}"} <= set(entries)
        assert all(os.lstat(p).st_uid == users.me.pw_uid for p in config.rglob("*"))
        # and another user of the machine can read none of it
        r = users.run(users.other, "cat", str(config / "settings.json"), str(db))
        assert r.returncode != 0 and "Permission denied" in r.stderr
        assert "old" not in r.stdout
    finally:
        assert node.stop() == 0, node.log()


def test_a_new_config_dir_under_umask_000_is_private(users):
    folder = users.mkdir(users.home / "Shared", users.me, 0o777)
    config = users.home / "new" / "cfg"
    r = users.p2psync("sync", "--folder", str(folder), "--config-dir", str(config),
                      "--no-discovery", "--secret", SECRET, "--peer", "127.0.0.1:9",
                      "--timeout", "5", umask=0o000)
    assert r.returncode == 3, r.stderr  # nobody there; what it wrote is what matters
    assert "open to other users" not in r.stderr
    modes = {p.relative_to(config).as_posix(): _mode(p) for p in [config, *config.rglob("*")]}
    assert modes.pop(".") == 0o700 and modes.pop("index") == 0o700
    assert any(name.endswith(".db") for name in modes) and set(modes.values()) == {0o600}


def test_a_config_dir_of_another_user_is_refused(users):
    folder = users.mkdir(users.home / "Shared", users.me, 0o755)
    config = users.mkdir(users.home / "theirs", users.other, 0o777)  # we could write there
    r = _run_once(users, folder, config)
    _one_clear_line(r, 2, f"config dir {config} belongs to another user",
                    users.other.pw_name)
    r = users.p2psync("sync", "--folder", str(folder), "--config-dir", str(config),
                      "--no-discovery", "--secret", SECRET, "--peer", "127.0.0.1:9")
    _one_clear_line(r, 2, "belongs to another user")
    assert list(config.iterdir()) == []  # no key, no index, no lock left in their dir
    assert _mode(config) == 0o777  # and their dir is not ours to change


def test_a_socket_that_cannot_be_made_is_one_line(users):
    """A temp dir whose path is itself too long for AF_UNIX: the bind fails."""
    folder, config = _share(users)
    tmp = users.mkdir(users.base / ("long-tmp-" + "t" * 100), users.me, 0o1777)
    r = _run_once(users, folder, config, tmp=tmp)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    (line,) = [x for x in r.stderr.splitlines() if "control socket" in x]
    assert line.startswith(f"p2psync: cannot open the control socket {tmp}/p2psync-"
                           f"{users.me.pw_uid}/"), line
    assert line.endswith(": AF_UNIX path too long"), line
