"""The config dir's small files, safe when several p2psync processes start at once.

`p2psync run`, `status`, `id`, `sync` and the app may all start together on one config
dir (a login script, a user typing fast). Whatever one of them creates or rewrites there
(the device key and certificate, settings.json) must come out whole and the same for all:

- `private_dir` makes the dir owner-only (it holds the device's private key), or
  refuses one that belongs to another user;
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

from app.core import private
from app.errors import P2PError

LOCK_FILE = ".lock"
# What p2psync keeps in the config dir, tightened when an older one left it open (a
# --config-dir may hold the user's own files too: those are never changed).
HOLDS = (LOCK_FILE, "settings.json", "key.pem", "cert.pem", "index", "ctl")
LOCK_TIMEOUT_S = 30.0  # creating an identity takes well under a second


class ConfigDirError(P2PError):
    """The config dir or one of its files cannot be made or read (one line for the user)."""


class ConfigBusy(ConfigDirError):
    """Another process held the config dir's lock for too long (a hung p2psync)."""


def default_log_dir() -> Path:
    """Where the app keeps its log file (platformdirs' user log dir)."""
    from platformdirs import user_log_dir

    return Path(user_log_dir("p2psync", appauthor=False))


def of_index(db_path: str | Path) -> Path:
    """The config dir an index lives in: CONFIG/index/NAME.db (app/engine/config.py)."""
    return Path(db_path).parent.parent


def private_dir(path: Path, what: str = "config dir", *, follow: bool = True,
                holds: tuple[str, ...] | None = HOLDS) -> Path:
    """`path` as an existing directory only this user can reach (see app/core/private.py).

    Made 0700 when missing (mkdir's mode is filtered by the umask, hence a chmod); an
    existing one of ours that others can reach is tightened, with what it holds, and
    said in one log line; one that belongs to another user is refused (exit 2). The
    user chose it with --config-dir, but it holds the device's key and the indexes.
    `follow`: the path may be a symbolic link of ours (e.g. to another disk); `holds`:
    what p2psync keeps there (None: all of it).
    """
    try:
        return private.private_dir(path, what, follow=follow, parents=True, holds=holds)
    except OSError as e:
        raise ConfigDirError(f"cannot create the {what} {path}: "
                             f"{e.strerror or e}") from None


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
    except OSError as e:  # a read-only disk, a full one: a traceback at every start
        raise ConfigDirError(f"cannot write in the config dir {config_dir}: "
                             f"{e.strerror or e}") from None
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
    its certificate last). Everything in the config dir is private: group and other
    bits of `mode` are dropped (the certificate is public, but nobody else needs it).
    """
    mode &= ~private.OPEN_TO_OTHERS
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
