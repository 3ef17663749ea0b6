"""The config dir's small files, safe when several p2psync processes start at once.

`p2psync run`, `status`, `id`, `sync` and the app may all start together on one config
dir (a login script, a user typing fast). Whatever one of them creates or rewrites there
(the device key and certificate, settings.json) must come out whole and the same for all:

- `private_dir` makes the dir owner-only (it holds the device's private key);
- `locked` serialises creators and read-modify-write updates across processes and
  threads (`filelock`: flock on POSIX, LockFileEx on Windows; no fcntl in the engine);
- `write_atomic` writes a unique temp file, fsyncs it, then renames it into place, so
  a reader sees the old file or the new one, never a half-written one.

Reading needs no lock: every file is only ever replaced by a rename.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from app.errors import P2PError

LOCK_FILE = ".lock"
LOCK_TIMEOUT_S = 30.0  # creating an identity takes well under a second


class ConfigDirError(P2PError):
    """The config dir or one of its files cannot be made or read (one line for the user)."""


class ConfigBusy(ConfigDirError):
    """Another process held the config dir's lock for too long (a hung p2psync)."""


def private_dir(path: Path) -> Path:
    """`path` as an existing directory; made 0700 when this call creates it.

    mkdir's mode is filtered by the umask, hence the chmod. An existing dir keeps its
    mode: it may be one the user chose on purpose with --config-dir.
    """
    path = Path(path)
    if path.is_dir():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            if not path.is_dir():
                raise NotADirectoryError(20, "not a directory") from None
            return path  # another process made it first (and chmods it)
        os.chmod(path, 0o700)
    except OSError as e:
        raise ConfigDirError(f"cannot create the config dir {path}: "
                             f"{e.strerror or e}") from None
    return path


@contextlib.contextmanager
def locked(config_dir: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the config dir's lock (one lock file for the whole dir).

    Waits for other holders, in this process's other threads as in other processes;
    a holder that dies releases it (an OS lock, not a marker file). Not reentrant:
    never nest two `locked` calls on one dir in one thread.
    """
    from filelock import FileLock, Timeout  # light, but only creators and writers need it

    path = private_dir(config_dir) / LOCK_FILE
    lock = FileLock(path, timeout=timeout, mode=0o600)
    try:
        lock.acquire()
    except Timeout:
        raise ConfigBusy(f"another p2psync has held {path} for over {timeout:.0f} s; "
                         "is one hung? stop it and try again") from None
    try:
        yield
    finally:
        lock.release()


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data`: unique temp file, fsync, chmod, rename, fsync the dir.

    The temp name is unique per call (threads share a pid), the mode is set before the
    rename (so the file is never readable beyond `mode`), and nothing is left behind
    on failure.
    """
    tmp = write_temp(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_dir(path.parent)


def write_temp(path: Path, data: bytes, mode: int = 0o600) -> Path:
    """`data` in a new fsynced temp file beside `path` with `mode`; the caller renames it.

    For callers that rename several files in a chosen order (the identity's key first,
    its certificate last).
    """
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp makes 0600; the umask never widens it
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def sync_dir(path: Path) -> None:
    """fsync a directory so the renames in it survive a power cut (POSIX only)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
