"""app/core/private.py in one process: what counts as ours, what is tightened, what refused.

Another user's ownership is made with chown (root only: those cases skip otherwise);
tests/integration/test_local_users.py has the same cases with real other users.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
import tempfile
from pathlib import Path

import pytest

from app.core import configdir, private
from app.core.index import Index
from app.core.private import NotPrivateError
from app.engine.config import Config
from app.engine.control import ControlServer, query

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


@pytest.fixture
def umask0():
    old = os.umask(0)
    yield
    os.umask(old)


# --- directories ---------------------------------------------------------------------
def test_a_new_dir_is_0700_whatever_the_umask(tmp_path, umask0):
    d = private.private_dir(tmp_path / "a" / "b", "test dir", parents=True)
    assert _mode(d) == 0o700


def test_an_open_dir_of_ours_is_tightened_with_what_p2psync_keeps_in_it(tmp_path, caplog):
    d = tmp_path / "cfg"
    (d / "index").mkdir(parents=True)
    (d / "settings.json").write_text("{}")
    (d / "cert.pem").write_text("")
    (d / "index" / "x.db").write_text("")
    (d / "notes").mkdir()  # the user's own things: a --config-dir may be any dir
    (d / "todo.txt").write_text("")
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours to change")
    (d / "ctl").symlink_to(outside)
    modes = {d: 0o755, d / "index": 0o775, d / "settings.json": 0o644, d / "cert.pem": 0o644,
             d / "index" / "x.db": 0o664, outside: 0o644, d / "notes": 0o755,
             d / "todo.txt": 0o644}
    for p, m in modes.items():
        os.chmod(p, m)
    with caplog.at_level(logging.WARNING, "p2psync"):
        configdir.private_dir(d)
    assert {p.relative_to(tmp_path).as_posix(): _mode(p) for p in modes} == {
        "cfg": 0o700, "cfg/index": 0o700, "cfg/settings.json": 0o600, "cfg/cert.pem": 0o600,
        "cfg/index/x.db": 0o600,
        "outside.txt": 0o644,  # links are never followed
        "cfg/notes": 0o755, "cfg/todo.txt": 0o644,  # not p2psync's: left as they are
    }
    (line,) = [r.getMessage() for r in caplog.records]
    assert f"the config dir {d} was open to other users (mode 755): made it 0700" in line
    caplog.clear()
    configdir.private_dir(d)  # once tight, nothing more to say
    assert not caplog.records


def test_what_the_config_dir_holds_is_all_named():
    from app.engine import config
    from app.net import identity

    assert {config.SETTINGS, config.INDEX_DIR, config.CTL_DIR, identity.KEY_FILE,
            identity.CERT_FILE, configdir.LOCK_FILE} == set(configdir.HOLDS)


@as_root
def test_a_dir_of_another_user_is_refused_and_left_alone(tmp_path):
    d = tmp_path / "theirs"
    d.mkdir(mode=0o777)
    os.chmod(d, 0o777)
    os.chown(d, NOBODY, NOBODY)
    with pytest.raises(NotPrivateError, match=r"config dir .*theirs belongs to another user, "
                       r".*uid 65534.*not to you: refused") as e:
        configdir.private_dir(d)
    assert e.value.exit_code == 2
    assert _mode(d) == 0o777 and list(d.iterdir()) == []
    with pytest.raises(NotPrivateError, match="belongs to another user"):
        Config(d).set_device_name("x")  # every writer goes through the same check


def test_links_where_a_dir_must_be(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    # --config-dir may be a link of ours...
    assert configdir.private_dir(tmp_path / "link") == tmp_path / "link"
    # ...the dirs p2psync makes for itself may not
    with pytest.raises(NotPrivateError, match="is a symbolic link, not a directory"):
        private.private_dir(tmp_path / "link", "control socket dir")
    (tmp_path / "file").write_text("x")
    with pytest.raises(configdir.ConfigDirError, match="cannot create the config dir .*not a "
                       "directory"):
        configdir.private_dir(tmp_path / "file")


@as_root
def test_a_link_of_another_user_is_refused_even_to_our_dir(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    os.chown(tmp_path / "link", NOBODY, NOBODY, follow_symlinks=False)
    with pytest.raises(NotPrivateError, match="config dir link .* belongs to another user"):
        configdir.private_dir(tmp_path / "link")


# --- where the socket goes -----------------------------------------------------------
def test_runtime_dir_is_xdg_only_when_ours_and_closed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    fallback = tmp_path / "tmp" / f"p2psync-{os.geteuid()}"
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert private.runtime_dir() == fallback
    xdg = tmp_path / "run"
    xdg.mkdir(mode=0o700)
    os.chmod(xdg, 0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    assert private.runtime_dir() == xdg / "p2psync"
    os.chmod(xdg, 0o755)
    assert private.runtime_dir() == fallback
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative/run")
    assert private.runtime_dir() == fallback
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "missing"))
    assert private.runtime_dir() == fallback


@as_root
def test_runtime_dir_of_another_user_is_not_used(tmp_path, monkeypatch):
    """`su` and `sudo` may pass on the XDG_RUNTIME_DIR of the user who called them."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    xdg = tmp_path / "run-1000"
    xdg.mkdir(mode=0o700)
    os.chown(xdg, NOBODY, NOBODY)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    assert private.runtime_dir() == tmp_path / "tmp" / f"p2psync-{os.geteuid()}"


def test_a_long_config_path_puts_the_socket_in_the_runtime_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    with tempfile.TemporaryDirectory(dir="/tmp") as near:  # pytest's own can be too long
        base = Path(near)
        monkeypatch.setattr(tempfile, "tempdir", str(base / "tmp"))
        short = Config(base / "cfg").folder_paths(tmp_path / "A").control_socket
        assert short.parent == base / "cfg" / "ctl"
        long = Config(tmp_path / ("c" * 100)).folder_paths(tmp_path / "A").control_socket
        assert long.parent == private.runtime_dir() and len(os.fsencode(long)) < 100
        assert not long.parent.exists()  # computing the path makes nothing


# --- the socket itself ---------------------------------------------------------------
def _bound(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.bind(os.fspath(path))
    s.listen()
    return s


def test_check_socket_accepts_only_a_socket_of_ours_in_a_closed_dir(tmp_path):
    d = tmp_path / "ctl"
    assert private.check_socket(d / "x.sock") is False  # no dir: no node
    d.mkdir(mode=0o700)
    os.chmod(d, 0o700)
    assert private.check_socket(d / "x.sock") is False
    with _bound(d / "x.sock"):
        assert private.check_socket(d / "x.sock") is True
        (d / "link.sock").symlink_to(d / "x.sock")
        with pytest.raises(NotPrivateError, match="link.sock is a symbolic link, not a socket"):
            private.check_socket(d / "link.sock")
        os.chmod(d, 0o777)
        with pytest.raises(NotPrivateError, match=r"writable by other users \(mode 777\)"):
            private.check_socket(d / "x.sock")
    os.chmod(d, 0o700)
    (d / "file.sock").write_text("")
    with pytest.raises(NotPrivateError, match="file.sock is not a socket: refused"):
        private.check_socket(d / "file.sock")


@as_root
def test_check_socket_refuses_another_users_socket_or_dir(tmp_path):
    d = tmp_path / "ctl"
    d.mkdir(mode=0o700)
    with _bound(d / "x.sock"):
        os.chown(d / "x.sock", NOBODY, NOBODY)
        with pytest.raises(NotPrivateError, match="control socket .*x.sock belongs to another"):
            private.check_socket(d / "x.sock")
        os.chown(d, NOBODY, NOBODY)
        with pytest.raises(NotPrivateError, match="control socket dir .*ctl belongs to another"):
            private.check_socket(d / "x.sock")


def test_control_server_replaces_a_stale_socket_and_removes_only_its_own(tmp_path):
    path = tmp_path / "ctl" / "x.sock"
    path.parent.mkdir(mode=0o700)
    _bound(path).close()  # a node that crashed: its socket stays, nobody answers

    async def main() -> None:
        server = ControlServer(path, lambda: {"role": "server", "peers": []})
        await server.start()
        assert _mode(path.parent) == 0o700 and _mode(path) == 0o600
        assert await asyncio.to_thread(query, path) == {"role": "server", "peers": []}
        second = ControlServer(path, dict)  # another process's: a loop of its own
        with pytest.raises(RuntimeError, match="already running"):
            await asyncio.to_thread(asyncio.run, second.start())
        await second.stop()  # it made nothing: removes nothing
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        path.unlink()  # someone replaces ours meanwhile: that one is not ours to remove
        path.write_text("")
        await server.stop()
        assert path.read_text() == ""

    asyncio.run(main())


# --- files ---------------------------------------------------------------------------
def test_index_files_are_0600_whatever_the_umask(tmp_path, umask0):
    db = tmp_path / "index" / "f.db"
    db.parent.mkdir()
    with Index(db, "DEV") as ix:
        ix.set_meta("x", 1)
        files = sorted(tmp_path.glob("index/*"))
        assert [p.name for p in files] == ["f.db", "f.db-shm", "f.db-wal"]
        assert {_mode(p) for p in files} == {0o600}


def test_an_older_open_index_is_tightened_when_opened(tmp_path):
    db = tmp_path / "f.db"
    Index(db, "DEV").close()
    os.chmod(db, 0o644)
    (tmp_path / "f.db-wal").write_bytes(b"")  # as a crash leaves it
    os.chmod(tmp_path / "f.db-wal", 0o644)
    with Index(db, "DEV"):
        assert _mode(db) == 0o600 and _mode(tmp_path / "f.db-wal") == 0o600


def test_config_dir_files_never_get_group_or_other_bits(tmp_path):
    d = configdir.private_dir(tmp_path / "cfg")
    configdir.write_atomic(d / "cert.pem", b"public, but nobody else needs it", 0o644)
    assert _mode(d / "cert.pem") == 0o600
