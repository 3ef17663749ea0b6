"""Paths only this user may reach: the config dir, its files, the control socket.

Another local user must neither read this device's key and index nor stand in for its
running node (a squatted control socket would feed `status` fake peers, or stop `run`).
Every ownership and mode check lives here, so that Windows (issue #14: a named pipe, or
a loopback socket with a token) replaces one module, not a dozen call sites. POSIX only:
elsewhere the checks pass and directories are simply made.

The rules: a path is trusted only when it is ours (owner = our effective uid), not a
symbolic link where none is expected, and, for a directory, not writable by others. A
directory of ours that others can reach is tightened to 0700 (one log line); one that
belongs to someone else is refused with one line (exit 2), never used, never changed.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import struct
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from app.core import platform
from app.errors import UsageError

log = logging.getLogger("p2psync")

POSIX = platform.my_uid() is not None  # files have owners and modes to check
OPEN_TO_OTHERS = 0o077  # group or other may read, write or enter
WRITABLE_BY_OTHERS = 0o022  # group or other may add, remove or replace entries


class NotPrivateError(UsageError):
    """A path that belongs to another user, or is not what it must be: refused (exit 2)."""


def _me() -> int:
    uid = platform.my_uid()
    return -1 if uid is None else uid  # only asked where POSIX is true


def _who(uid: int) -> str:
    if sys.platform == "win32":
        return f"uid {uid}"
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _refuse_not_ours(what: str, path: Path, uid: int, hint: str) -> NotPrivateError:
    return NotPrivateError(f"the {what} {path} belongs to another user, {_who(uid)}, "
                           f"not to you: refused ({hint})")


# --- directories --------------------------------------------------------------------
def private_dir(path: Path, what: str, *, follow: bool = False, parents: bool = False,
                holds: Iterable[str] | None = None, hint: str = "") -> Path:
    """`path` as a directory only we can reach: made 0700, or an existing one checked.

    An existing dir of ours that others can reach is tightened to 0700, and so is what
    p2psync keeps in it (an older p2psync left some files to the umask): the entries
    named in `holds` (dirs among them with what they hold), or, when None, all of its
    entries. Only ours, links never followed, and nothing else: a --config-dir may be a
    dir the user keeps other things in. `follow` lets the path itself be a symbolic
    link (one of ours: `--config-dir` may point elsewhere); the dirs p2psync makes in
    the shared temp dir must be real directories. `parents`: make missing parents too
    (with the umask's mode: they are the user's, not p2psync's). Raises
    NotPrivateError when the path is not ours, OSError when it cannot be made or is
    not a directory.
    """
    path = Path(path)
    hint = hint or ("p2psync keeps its key and indexes only in a directory of yours: "
                    "choose another --config-dir, or have its owner give it to you")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            st = os.lstat(path)  # another process made it first: check it as any other
        else:
            os.chmod(path, 0o700)  # mkdir's mode went through the umask
            return path
    if not POSIX:
        return path
    if stat.S_ISLNK(st.st_mode):
        if not follow:
            raise NotPrivateError(f"the {what} {path} is a symbolic link, not a directory: "
                                  f"refused ({hint})")
        if st.st_uid != _me():
            raise _refuse_not_ours(f"{what} link", path, st.st_uid, hint)
        st = os.stat(path)
    if st.st_uid != _me():
        raise _refuse_not_ours(what, path, st.st_uid, hint)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(20, "not a directory", os.fspath(path))
    if st.st_mode & OPEN_TO_OTHERS:
        log.warning("the %s %s was open to other users (mode %o): made it 0700, and "
                    "p2psync's files in it 0600", what, path, stat.S_IMODE(st.st_mode))
        os.chmod(path, 0o700)
        names = os.listdir(path) if holds is None else holds
        for name in names:
            _tighten(path / name, depth=1)
    return path


def _tighten(path: Path, depth: int) -> None:
    """Take group and other access off `path` (and, `depth` levels down, what it holds)."""
    try:
        st = os.lstat(path)
        if st.st_uid != _me() or stat.S_ISLNK(st.st_mode):
            return
        if st.st_mode & OPEN_TO_OTHERS:
            os.chmod(path, stat.S_IMODE(st.st_mode) & ~OPEN_TO_OTHERS)
        if stat.S_ISDIR(st.st_mode) and depth > 0:
            for name in os.listdir(path):
                _tighten(path / name, depth - 1)
    except OSError:
        return  # gone meanwhile, or not ours to change


def runtime_dir() -> Path:
    """Where control sockets go when the config dir's path is too long for AF_UNIX.

    $XDG_RUNTIME_DIR/p2psync when that dir exists, is ours and closed to others (a
    `su` or `sudo` may pass on another user's), else p2psync-UID in the temp dir,
    which `private_dir` makes 0700 or refuses when someone else got there first.
    Computes a path only: nothing is made here (`status` creates nothing).
    """
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if POSIX and xdg and os.path.isabs(xdg):
        try:
            st = os.stat(xdg)
        except OSError:
            st = None
        if st and stat.S_ISDIR(st.st_mode) and st.st_uid == _me() \
                and not st.st_mode & OPEN_TO_OTHERS:
            return Path(xdg) / "p2psync"
    uid = _me() if POSIX else 0
    return Path(tempfile.gettempdir()) / f"p2psync-{uid}"


# --- the control socket --------------------------------------------------------------
SOCKET_HINT = ("only a socket of yours is trusted: have its owner or an administrator "
               "remove it, or use a --config-dir with a shorter path, which keeps the "
               "socket inside it")


def check_socket(path: Path) -> bool:
    """True when `path` is a socket of ours in a dir of ours; False when nothing is there.

    Checked before binding and before connecting. Anything else is refused with
    NotPrivateError: a dir another user owns or may write to, a symbolic link, a file
    that is not a socket, another user's socket.
    """
    path = Path(path)
    if not POSIX:
        return path.exists()
    try:
        dst = os.lstat(path.parent)
    except (FileNotFoundError, NotADirectoryError):  # nothing there, socket or dir
        return False
    if not stat.S_ISDIR(dst.st_mode):
        raise NotPrivateError(f"the control socket dir {path.parent} is not a directory "
                              f"(a symbolic link or a file): refused ({SOCKET_HINT})")
    if dst.st_uid != _me():
        raise _refuse_not_ours("control socket dir", path.parent, dst.st_uid, SOCKET_HINT)
    if dst.st_mode & WRITABLE_BY_OTHERS:
        raise NotPrivateError(f"the control socket dir {path.parent} is writable by other "
                              f"users (mode {stat.S_IMODE(dst.st_mode):o}): refused "
                              "(`chmod 700` it)")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise NotPrivateError(f"the control socket {path} is a symbolic link, not a socket: "
                              f"refused (remove it if you made it)")
    if not stat.S_ISSOCK(st.st_mode):
        raise NotPrivateError(f"the control socket {path} is not a socket: refused "
                              f"(remove it if you made it)")
    if st.st_uid != _me():
        raise _refuse_not_ours("control socket", path, st.st_uid, SOCKET_HINT)
    return True


def check_token_file(path: Path) -> bool:
    """True when `path` (the loopback control endpoint: port and token) is a file of ours
    that only we may read, in a dir of ours; False when nothing is there.

    Anyone on this machine may connect to a loopback port: the token is what proves the
    client is us, so a file others could read (or write, or swap) is refused.
    """
    path = Path(path)
    if not POSIX:
        return path.is_file()  # the user's profile dir is private to the user already
    try:
        dst = os.lstat(path.parent)
    except (FileNotFoundError, NotADirectoryError):
        return False
    if not stat.S_ISDIR(dst.st_mode) or dst.st_uid != _me() \
            or dst.st_mode & WRITABLE_BY_OTHERS:
        raise NotPrivateError(f"the control dir {path.parent} is not a directory of yours "
                              f"closed to others: refused ({SOCKET_HINT})")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode):
        raise NotPrivateError(f"the control file {path} is not a regular file: refused "
                              f"(remove it if you made it)")
    if st.st_uid != _me():
        raise _refuse_not_ours("control file", path, st.st_uid, SOCKET_HINT)
    if st.st_mode & OPEN_TO_OTHERS:
        raise NotPrivateError(f"the control file {path} is open to other users (mode "
                              f"{stat.S_IMODE(st.st_mode):o}): refused (remove it)")
    return True


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a connected Unix socket (None: unknown).

    SO_PEERCRED is the kernel's word, taken when the connection was made: unlike the
    path checks, nothing can swap it afterwards.
    """
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:
        return None
    try:
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, opt,
                                                              struct.calcsize("3i")))
    except OSError:
        return None
    return uid


def check_peer(sock: socket.socket, path: Path) -> None:
    """Refuse a control socket served by another user's process."""
    uid = peer_uid(sock)
    if uid is not None and uid != _me():
        raise NotPrivateError(f"the control socket {path} is served by another user, "
                              f"{_who(uid)}: refused ({SOCKET_HINT})")


def peer_is_us(sock: socket.socket) -> bool:
    """Whether a client of our control socket runs as us (or its uid is unknown)."""
    uid = peer_uid(sock)
    return uid is None or uid == _me()


# --- files ---------------------------------------------------------------------------
def private_file(path: Path, *, create: bool) -> None:
    """Make `path` owner-only: created empty with 0600 when `create`, else tightened.

    For files other code creates with the umask (SQLite): made first with 0600, they
    keep it. A file that is not ours, or that we cannot open, is left to its user.
    """
    flags = os.O_RDONLY | platform.CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except (FileNotFoundError, PermissionError):
        return
    try:
        if not POSIX:
            return
        st = os.fstat(fd)
        if st.st_uid == _me() and st.st_mode & OPEN_TO_OTHERS:
            platform.set_mode(fd, path, stat.S_IMODE(st.st_mode) & ~OPEN_TO_OTHERS)
    finally:
        os.close(fd)


def sqlite_files(db_path: Path) -> None:
    """The index database and its -wal and -shm owner-only, before SQLite opens them.

    SQLite creates a new database with 0644 minus the umask, and gives its -wal and
    -shm files the database file's mode: a database made 0600 here keeps all three
    private, whatever the process umask (which is process-wide: not ours to change).
    """
    if os.fspath(db_path) == ":memory:":
        return
    private_file(db_path, create=True)
    for companion in ("-wal", "-shm", "-journal"):  # left by a crash, or an older p2psync
        private_file(Path(f"{db_path}{companion}"), create=False)
