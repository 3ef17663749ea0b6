"""The platform layer: every Linux fast path, and the portable fallback that replaces it.

The engine runs on Linux, Windows and macOS. Everything that exists on one system only
is reached through this module, so the rest of the code reads the same everywhere and
a type check as Windows or macOS (scripts/typecheck-platforms) fails on any Linux-only
call made elsewhere. Each fast path keeps the same safety as its fallback:

- writes confined to the folder: directories opened once with O_DIRECTORY|O_NOFOLLOW
  and used through `dir_fd=` (Linux, macOS) / a path-based check before each step:
  the directory's resolved path must be the path itself (no link anywhere on the way)
  and lie inside the folder, and a name that is a link is refused (`Dir`, `open_in`).
  The check can race with a local program swapping a directory for a link between
  the check and the call; no peer can, since peers never create links that lead out;
- temp files: an unnamed O_TMPFILE linked in through /proc/self/fd (Linux) / a named
  temp file, created exclusively, that the caller verifies, flushes and renames;
- O_DIRECT writes of large transfers (Linux) / plain writes through the cache;
- copy_file_range (Linux) / a copy through one bounded buffer;
- os.pread, os.pwrite, os.preadv (POSIX) / seek + read or write under one lock;
- SEEK_DATA/SEEK_HOLE (Linux, macOS) / "all of the file is data";
- syncfs for a batch (Linux) / an fsync per file;
- fcntl.flock, shared or exclusive (POSIX) / `filelock`, always exclusive;
- AF_UNIX for the control socket (POSIX) / loopback TCP with a token (app.engine.control);
- ownership checks by uid (POSIX) / none (Windows: the profile dir is private already).

`P2PSYNC_PORTABLE=1` in the environment turns every fast path off, so that the
fallbacks run for real on Linux (CI runs the integration tests a second time so).

Windows realities become reasons, never crashes: a file open in another program
(`in_use`), symbolic links without the privilege (`symlink_refused`), no executable
bit (`EXEC_BIT`), paths longer than MAX_PATH (`long_path`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import socket
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported by the survey's processes, which need no event loop
    import asyncio

PORTABLE = os.environ.get("P2PSYNC_PORTABLE", "").strip() not in ("", "0")
WINDOWS = sys.platform == "win32"

# --- open flags ----------------------------------------------------------------------
if sys.platform == "win32":
    # O_BINARY: without it Windows translates line ends in os.read/os.write.
    BINARY = os.O_BINARY
    _NOFOLLOW = _DIRECTORY = CLOEXEC = 0
else:
    BINARY = 0
    _NOFOLLOW, _DIRECTORY, CLOEXEC = os.O_NOFOLLOW, os.O_DIRECTORY, os.O_CLOEXEC
# Where a name is opened by path (the fallback), `open_in` refuses links itself.
NOFOLLOW = 0 if PORTABLE else _NOFOLLOW
DIR_FDS = not PORTABLE and not WINDOWS and os.open in os.supports_dir_fd
READ_FLAGS = os.O_RDONLY | BINARY | CLOEXEC | NOFOLLOW
TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | BINARY | CLOEXEC | NOFOLLOW
# A directory to work in through its descriptor (where DIR_FDS): never one a link
# was swapped in for (`open_dir`, the survey's stat of a directory's entries).
DIR_READ_FLAGS = os.O_RDONLY | _DIRECTORY | _NOFOLLOW | CLOEXEC

# Windows has no executable bit: a file's mode there says nothing about it.
EXEC_BIT = not WINDOWS
IN_USE_WHY = "in use by another program"
SYMLINK_WHY = ("symbolic links need Developer Mode or administrator rights on this device")
_SHARING_VIOLATION = 32  # winerror of a file another program holds open
_LOCK_VIOLATION = 33
_ACCESS_DENIED = 5  # what MoveFileEx says when the target is open without FILE_SHARE_DELETE
_PRIVILEGE_NOT_HELD = 1314  # CreateSymbolicLink without the privilege


# --- directories confined to the folder ------------------------------------------------
class Dir:
    """A directory inside the folder: a descriptor (fast path) or a checked path."""

    def __init__(self, root: Path, rel: str, fd: int | None) -> None:
        self.root = root
        self.rel = rel
        self.fd = fd
        self.path = os.path.join(root, *rel.split("/")) if rel else os.fspath(root)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def join(self, name: str) -> str:
        """name's path in this directory, after checking the directory is still ours."""
        _check_inside(self.root, self.path)
        return long_path(os.path.join(self.path, name))


def open_dir(root: Path, rel: str, parent: Dir | None, create: bool) -> Dir:
    """rel (one more component below parent, or the root when parent is None) as a Dir.

    OSError ELOOP/ENOTDIR when a link or a file is in the way (the caller says which),
    FileNotFoundError when it is missing and not `create`.
    """
    if not DIR_FDS:
        d = Dir(root, rel, None)
        try:
            _check_inside(root, d.path)
        except FileNotFoundError:
            if not create:
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(long_path(d.path))
            _check_inside(root, d.path)
        return d
    if parent is None:
        return Dir(root, rel, os.open(root, os.O_RDONLY | _DIRECTORY | CLOEXEC))
    assert parent.fd is not None
    name = rel.rpartition("/")[2]
    try:
        fd = os.open(name, DIR_READ_FLAGS, dir_fd=parent.fd)
    except FileNotFoundError:
        if not create:
            raise
        with contextlib.suppress(FileExistsError):  # made meanwhile: open it below
            os.mkdir(name, dir_fd=parent.fd)
        fd = os.open(name, DIR_READ_FLAGS, dir_fd=parent.fd)
    return Dir(root, rel, fd)


def _check_inside(root: Path, path: str) -> None:
    """Refuse `path` unless it is a real directory below root, with no link on the way."""
    real_root = os.path.realpath(root)
    rel = os.path.relpath(path, root)
    want = real_root if rel == "." else os.path.join(real_root, rel)
    real = os.path.realpath(path)
    if os.path.normcase(real) != os.path.normcase(want) or ".." in rel.split(os.sep):
        raise OSError(errno.ELOOP, "a symbolic link is in the way", path)
    st = os.stat(long_path(path))  # FileNotFoundError when missing
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, "not a directory", path)


def usable_cores() -> int:
    """The cores this process may run on (a container's or taskset's limit, not the
    machine's: os.cpu_count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def open_in(d: Dir, name: str, flags: int, mode: int = 0o777) -> int:
    """os.open of name in d; a name that is a symbolic link is never opened through."""
    flags |= BINARY | CLOEXEC
    if d.fd is not None:
        return os.open(name, flags | _NOFOLLOW, mode, dir_fd=d.fd)
    path = d.join(name)
    if not flags & os.O_EXCL:  # O_CREAT|O_EXCL never follows a link (it fails on one)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISLNK(os.lstat(path).st_mode):
                raise OSError(errno.ELOOP, "a symbolic link, not a file", path)
    return _open(path, flags | NOFOLLOW, mode)


# CreateFile's values (winbase.h); _winapi names only a few of them.
_SHARE_ALL = 0x1 | 0x2 | 0x4  # FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE
_CREATE_NEW, _CREATE_ALWAYS, _OPEN_EXISTING, _OPEN_ALWAYS, _TRUNCATE_EXISTING = 1, 2, 3, 4, 5
_ATTRIBUTE_NORMAL = 0x80


def _open(path: str, flags: int, mode: int) -> int:
    """os.open, except on Windows: there a file is opened with FILE_SHARE_DELETE, so that
    it can be renamed or deleted while it is open, as on POSIX (a temp file is linked or
    renamed into place before it is closed). The C runtime's open never shares delete."""
    if sys.platform != "win32":
        return os.open(path, flags, mode)
    import _winapi
    import msvcrt

    access = {os.O_RDONLY: _winapi.GENERIC_READ, os.O_WRONLY: _winapi.GENERIC_WRITE}.get(
        flags & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR),
        _winapi.GENERIC_READ | _winapi.GENERIC_WRITE)
    create, excl, trunc = flags & os.O_CREAT, flags & os.O_EXCL, flags & os.O_TRUNC
    disposition = (_CREATE_NEW if create and excl else _CREATE_ALWAYS if create and trunc
                   else _OPEN_ALWAYS if create else _TRUNCATE_EXISTING if trunc
                   else _OPEN_EXISTING)
    handle = _winapi.CreateFile(long_path(path), access, _SHARE_ALL, 0, disposition,
                                _ATTRIBUTE_NORMAL, 0)
    try:
        return msvcrt.open_osfhandle(handle, flags & os.O_APPEND)
    except BaseException:
        _winapi.CloseHandle(handle)
        raise


def stat_in(d: Dir, name: str) -> os.stat_result | None:
    """lstat of name in d; None when nothing is there."""
    try:
        if d.fd is not None:
            return os.stat(name, dir_fd=d.fd, follow_symlinks=False)
        return os.lstat(d.join(name))
    except FileNotFoundError:
        return None


def unlink_in(d: Dir, name: str) -> None:
    if d.fd is not None:
        os.unlink(name, dir_fd=d.fd)
    else:
        os.unlink(d.join(name))


def rmdir_in(d: Dir, name: str) -> None:
    if d.fd is not None:
        os.rmdir(name, dir_fd=d.fd)
    else:
        os.rmdir(d.join(name))


def rename_in(d: Dir, src: str, dst: str) -> None:
    """Rename src over dst in d in one step (what was at dst is gone)."""
    if d.fd is not None:
        os.rename(src, dst, src_dir_fd=d.fd, dst_dir_fd=d.fd)
    else:
        replace(d.join(src), d.join(dst))


def link_in(d: Dir, src: str, dst: str) -> None:
    """A hard link dst to the file src in d; FileExistsError when dst exists."""
    if d.fd is not None:
        os.link(src, dst, src_dir_fd=d.fd, dst_dir_fd=d.fd, follow_symlinks=False)
    else:
        hard_link(d.join(src), d.join(dst))


# What link() says where the file system has no hard links (FAT, some network shares,
# across devices): callers fall back to a rename, or to a plain move.
NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK,
                           errno.EXDEV})


def move_between(src_d: Dir, src: str, dst_d: Dir, dst: str) -> None:
    """Give src (in src_d) the name dst (in dst_d), never over anything there (a user's
    new file): a hard link then an unlink; a rename where the file system has no hard
    links (after checking dst is free). FileExistsError when something is at dst."""
    try:
        if src_d.fd is not None and dst_d.fd is not None:
            os.link(src, dst, src_dir_fd=src_d.fd, dst_dir_fd=dst_d.fd, follow_symlinks=False)
        else:
            hard_link(src_d.join(src), dst_d.join(dst))
    except OSError as e:
        if e.errno not in NO_HARD_LINKS:  # FileExistsError too: something is at dst
            raise
        if stat_in(dst_d, dst) is not None:
            raise FileExistsError(errno.EEXIST, "in the way", dst) from None
        if src_d.fd is not None and dst_d.fd is not None:
            os.rename(src, dst, src_dir_fd=src_d.fd, dst_dir_fd=dst_d.fd)
        else:
            os.rename(src_d.join(src), dst_d.join(dst))
        return
    unlink_in(src_d, src)


def hard_link(src: Path | str, dst: Path | str) -> None:
    """os.link of src itself (a link is linked, never followed)."""
    if sys.platform == "win32":
        os.link(src, dst)  # CreateHardLink never follows
    else:
        os.link(src, dst, follow_symlinks=False)


# --- temp files ----------------------------------------------------------------------------
_TMPFILE = getattr(os, "O_TMPFILE", 0)
UNNAMED_TEMPS = DIR_FDS and bool(_TMPFILE) and os.path.isdir("/proc/self/fd")


def open_temp(d: Dir, name: str, unnamed_mode: int = 0o600) -> tuple[int, str | None]:
    """(fd, temp name): an unnamed O_TMPFILE where the system has one, else `name` (0600).

    An unnamed file is never seen half-written by anyone (a watcher included) and never
    left behind, so it may have its final mode (`unnamed_mode`) at once; a leftover under
    the temp name (or a planted link) is removed.
    """
    fd = open_unnamed(d, unnamed_mode)
    if fd is not None:
        return fd, None
    try:
        return open_in(d, name, TEMP_FLAGS, 0o600), name
    except FileExistsError:
        unlink_in(d, name)
        return open_in(d, name, TEMP_FLAGS, 0o600), name


def open_unnamed(d: Dir, mode: int) -> int | None:
    """An unnamed O_TMPFILE in d, made with `mode`; None where the system has none."""
    if not UNNAMED_TEMPS or d.fd is None:
        return None
    try:
        return os.open(".", os.O_WRONLY | _TMPFILE | CLOEXEC, mode, dir_fd=d.fd)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            raise
        return None


def new_file_traits(d: Dir) -> tuple[int, bool] | None:
    """What a file made in directory d takes from d: its mount, and whether it takes
    more than the process gives (a setgid directory gives its group, a default ACL
    its entries); None where that cannot be told. See `traits_alike`."""
    if sys.platform != "linux" or d.fd is None:
        return None
    try:
        return _mount_id(d.fd), bool(os.fstat(d.fd).st_mode & stat.S_ISGID) or \
            _default_acl(d.fd)
    except OSError:
        return None


def traits_alike(a: tuple[int, bool] | None, b: tuple[int, bool] | None) -> bool:
    """Whether a file made in a directory with traits a is the file made in one with
    traits b, and can be linked there: only on one mount (a link across mounts fails)
    where neither gives more than the process (then owner, group and mode come from
    the process alone). A batch asks its staging directory's traits once."""
    return a is not None and b is not None and a[0] == b[0] and not a[1] and not b[1]


def _mount_id(fd: int) -> int:
    """The mount fd lies on (/proc/self/fdinfo's mnt_id)."""
    with open(f"/proc/self/fdinfo/{fd}", "rb") as f:
        for line in f:
            if line.startswith(b"mnt_id:"):
                return int(line.split()[1])
    raise OSError(errno.ENOTSUP, "no mnt_id in fdinfo")


def _default_acl(fd: int) -> bool:
    if sys.platform != "linux":
        return False
    try:
        return "system.posix_acl_default" in os.listxattr(fd)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return False
        raise


def link_unnamed(d: Dir, fd: int, name: str) -> None:
    """Give the unnamed temp file fd (see `open_temp`) the name `name` in d."""
    assert d.fd is not None, "unnamed temp files exist only with directory descriptors"
    os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=d.fd, follow_symlinks=True)


def reopen_direct(fd: int) -> int | None:
    """The file behind fd opened again for O_DIRECT writes; None where there is no such thing.

    A copy nobody reads soon then goes straight to the disk at disk speed, and leaves the
    user's page cache alone; elsewhere the writes go through the cache.
    """
    if PORTABLE or sys.platform != "linux":
        return None
    try:
        return os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
    except OSError:  # no /proc, or tmpfs and the like
        return None


# --- positioned reads and writes ---------------------------------------------------------
_POSITIONED = not PORTABLE and not WINDOWS
# seek + read/write is one step for every thread that uses the same descriptor; one lock
# per descriptor number (numbers are reused, so there are never more than open files).
_fd_locks: dict[int, threading.Lock] = {}
_fd_locks_lock = threading.Lock()


def _seek_lock(fd: int) -> threading.Lock:
    lock = _fd_locks.get(fd)
    if lock is None:
        with _fd_locks_lock:
            lock = _fd_locks.setdefault(fd, threading.Lock())
    return lock


def pread(fd: int, size: int, offset: int) -> bytes:
    if _POSITIONED and sys.platform != "win32":
        return os.pread(fd, size, offset)
    with _seek_lock(fd):
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, size)


def pwrite(fd: int, data: bytes | memoryview, offset: int) -> int:
    if _POSITIONED and sys.platform != "win32":
        return os.pwrite(fd, data, offset)
    with _seek_lock(fd):
        os.lseek(fd, offset, os.SEEK_SET)
        return os.write(fd, data)


def pread_into(fd: int, view: memoryview, offset: int) -> int:
    """Read into view at offset (no copy where preadv exists); the bytes read."""
    if _POSITIONED and sys.platform == "linux":
        return os.preadv(fd, [view], offset)
    data = pread(fd, len(view), offset)
    view[:len(data)] = data
    return len(data)


COPY_BUFFER = 1024 * 1024


def copy_range(src: int, dst: int, length: int, offset: int) -> int:
    """Copy up to length bytes at offset from src to dst (same offset); the bytes copied.

    copy_file_range keeps the bytes in the kernel (or shares extents); the fallback goes
    through one buffer of at most COPY_BUFFER, so memory stays bounded.
    """
    if not PORTABLE and sys.platform == "linux":
        return os.copy_file_range(src, dst, length, offset, offset)
    data = pread(src, min(length, COPY_BUFFER), offset)
    view = memoryview(data)
    done = 0
    while done < len(data):
        n = pwrite(dst, view[done:], offset + done)
        if n <= 0:
            raise OSError(errno.ENOSPC, "the disk took no more data")
        done += n
    return done


def advise_sequential(fd: int) -> None:
    """Tell the kernel fd is read once from start to end (a larger read-ahead), where it
    listens (posix_fadvise); a hint only, so nothing elsewhere."""
    if not PORTABLE and sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)


# --- holes ---------------------------------------------------------------------------------
SEEK_DATA: int | None = None if PORTABLE else getattr(os, "SEEK_DATA", None)
SEEK_HOLE: int | None = None if PORTABLE else getattr(os, "SEEK_HOLE", None)


def allocated(st: os.stat_result) -> int | None:
    """Bytes the file system allocated for the file; None where that is not known."""
    if SEEK_DATA is None:
        return None
    blocks = getattr(st, "st_blocks", None)
    return None if blocks is None else blocks * 512


def disk_bytes(st: os.stat_result) -> int:
    """What the file takes on the disk: its allocated bytes where known, else its size."""
    known = allocated(st)
    return st.st_size if known is None else min(known, st.st_size)


# --- flushing ------------------------------------------------------------------------------
def flush_data(fd: int) -> None:
    """The file's data (and size) on the disk, not just in the page cache."""
    if sys.platform == "linux":
        os.fdatasync(fd)
    else:
        os.fsync(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    if PORTABLE or sys.platform != "linux":
        return None
    try:  # the process's own symbols hold libc's: no `ctypes.util` (it imports subprocess)
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_syncfs = _load_syncfs()


def flush_files(fds: list[int]) -> None:
    """Everything written to these files on the disk: one syncfs, else an fsync each."""
    if not fds:
        return
    if _syncfs is not None and _syncfs(fds[0]) == 0:
        return
    for fd in fds:
        flush_data(fd)


# --- locks between processes ---------------------------------------------------------------
@contextlib.contextmanager
def locked(path: Path, *, shared: bool) -> Iterator[None]:
    """Hold a lock on the file at path: shared or exclusive where flock exists, else
    always exclusive (`filelock`: LockFileEx on Windows), which is safe, only less
    concurrent."""
    if not PORTABLE and sys.platform != "win32":
        import fcntl

        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock
        return
    import filelock

    with filelock.FileLock(os.fspath(path)):
        yield


# --- who we are ----------------------------------------------------------------------------
def my_uid() -> int | None:
    """Our effective uid; None where files have no owner uid (Windows)."""
    if sys.platform == "win32":
        return None
    return os.geteuid()


def set_mode(fd: int, path: str | Path | None, mode: int) -> None:
    """The permission bits of an open file (by path where fchmod is missing)."""
    if sys.platform != "win32":
        os.fchmod(fd, mode)
    elif path is not None:
        os.chmod(path, mode)  # only the read-only bit means anything here


def set_mode_in(d: Dir, name: str | None, fd: int, mode: int) -> None:
    """set_mode of the open file fd, which is `name` in d (None: an unnamed temp file)."""
    if sys.platform != "win32":
        os.fchmod(fd, mode)
    elif name is not None:
        os.chmod(d.join(name), mode)


def set_times_in(d: Dir, name: str | None, fd: int, mtime_ns: int) -> None:
    """The open file fd's times (it is `name` in d): by descriptor where utime takes one
    (POSIX), else by name (Windows)."""
    if os.utime in os.supports_fd or name is None:
        os.utime(fd, ns=(mtime_ns, mtime_ns))
    else:
        os.utime(d.join(name), ns=(mtime_ns, mtime_ns))


# --- sockets -------------------------------------------------------------------------------
UNIX_SOCKETS = not PORTABLE and hasattr(socket, "AF_UNIX") and not WINDOWS


def reuse_port(sock: socket.socket) -> None:
    """SO_REUSEPORT where it exists (several nodes of one machine share the UDP port)."""
    if sys.platform != "win32":
        with contextlib.suppress(AttributeError, OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)


# --- signals ------------------------------------------------------------------------------
def on_stop_signals(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
    """Call callback on the loop at SIGINT or SIGTERM (Ctrl+C, `kill`, a service stop).

    The loop's own signal handlers exist on POSIX only; elsewhere (Windows' Proactor
    loop) a plain signal handler hands the call to the loop, which wakes for it.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, callback)
        except NotImplementedError:
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(callback))


# --- Windows realities ----------------------------------------------------------------------
def in_use(e: BaseException) -> bool:
    """Whether e says another program holds the file open (retry later, it is not ours).

    Windows refuses to replace or delete a file another program has open without
    FILE_SHARE_DELETE: a sharing violation, or a plain access denied on a rename.
    """
    win = getattr(e, "winerror", None)
    return isinstance(e, OSError) and win in (_SHARING_VIOLATION, _LOCK_VIOLATION,
                                              _ACCESS_DENIED)


class InUse(OSError):
    """The file is open in another program: retried later; str() is the reason."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(errno.EBUSY, IN_USE_WHY, os.fspath(path))

    def __str__(self) -> str:
        return IN_USE_WHY


def replace(src: str | Path, dst: str | Path) -> None:
    """os.replace; InUse when another program holds dst (or src) open on Windows."""
    try:
        if sys.platform == "win32":
            os.replace(src, dst)
        else:
            os.rename(src, dst)  # the same on POSIX; fault tests wrap os.rename
    except OSError as e:
        if in_use(e):
            raise InUse(dst) from e
        raise


def symlink_refused(e: BaseException) -> bool:
    """Whether e is Windows refusing a symbolic link for want of the privilege."""
    return isinstance(e, OSError) and getattr(e, "winerror", None) == _PRIVILEGE_NOT_HELD


class NoSymlinks(OSError):
    """This device may not create symbolic links; str() is the reason."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(errno.EPERM, SYMLINK_WHY, os.fspath(path))

    def __str__(self) -> str:
        return SYMLINK_WHY


def symlink(target: str, path: str | Path) -> None:
    """os.symlink; NoSymlinks where this user lacks the privilege (Windows)."""
    try:
        os.symlink(target, path)
    except OSError as e:
        if symlink_refused(e):
            raise NoSymlinks(path) from e
        raise


MAX_PATH = 260  # Windows' classic limit, the terminating NUL included


def long_path(path: str, *, windows: bool = WINDOWS) -> str:
    r"""path with the \\?\ prefix where Windows needs it to pass MAX_PATH; else path.

    Only absolute paths get it (the prefix turns off all other path processing).
    """
    if not windows or len(path) < MAX_PATH - 12 or path.startswith("\\\\?\\"):
        return path
    if path.startswith("\\\\"):  # \\server\share\...
        return "\\\\?\\UNC\\" + path[2:]
    if len(path) > 2 and path[1] == ":":
        return "\\\\?\\" + path.replace("/", "\\")
    return path


# --- file systems --------------------------------------------------------------------------
def name_max(path: Path | str) -> int | None:
    """The longest name (bytes) the file system at path takes, where the system says
    (statvfs); None where it does not (Windows: NTFS takes 255 UTF-16 units)."""
    if sys.platform == "win32":
        return None
    try:
        return os.statvfs(path).f_namemax or None
    except OSError:
        return None
