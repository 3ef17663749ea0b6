"""Writing many small files in one call: the disk half of a batched fetch.

A first sync of 10,000 small files is bound by per-file costs, not by bytes, so the
puller hands a whole batch of fetched contents to this function on its writer
thread while the event loop receives the next batch. Every file still follows the
safe path: content checked against its hash, temp file (`_Staging`), mode and mtime
set, whatever the index says is at the final path checked and archived, then the
finished file appears at its name in one step (a hard link, see `_publish`). The
work is done relative to directory descriptors (`app.core.dirfds`), so each
directory is resolved once per batch and no step can be sent through a link.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from app.core import apply, diskio, hashing, modes, paths, platform
from app.core.dirfds import DirFds
from app.core.model import FileEntry
from app.core.platform import Dir
from app.core.versions import Vector
from app.errors import without_traceback


@dataclass
class SmallFile:
    rel: str  # a validated relative path
    data: bytes  # the whole content, as a peer sent it
    block_hash: bytes  # what it must hash to (b"" for an empty file)
    mode: int  # the permission bits it gets here (app.core.modes.file_mode)
    mtime_ns: int
    local: FileEntry | None  # what the index says is at rel now
    brings: Vector  # the version it is (it must supersede local's: `apply.check_planned`)
    by: str = ""  # the device whose version this is (for the versions index)

    @property
    def temp_name(self) -> str:
        """The temp file's name, in rel's directory: worked out only where a file is
        written under a name (most are unnamed), as it cost ~3% of a tiny file's
        receiving."""
        return paths.temp_name_for(self.rel, self.block_hash).rpartition("/")[2]


class BadContent(Exception):
    """The bytes do not match their hash: fetch them again, from another peer if need be."""


@dataclass
class Placed:
    inode: int
    ctime_ns: int
    mode: int  # permission bits


def write_small_files(root: Path, files: list[SmallFile], room: int | None = None
                      ) -> list[Placed | Exception]:
    """Put each file in place; per file, where it now is on disk or why it failed.

    Three steps, so that one flush makes the whole batch durable before any name
    points at it: every file is written to its temp file, the file system is
    flushed once, then each is checked against the disk again and linked into place.
    A failure (`BadContent`, `apply.DiskChanged`, `paths.BadPath`, `diskio.NoSpace`,
    `OSError`) concerns that file alone and leaves no temp file behind. The caller
    holds the disk lock. `room`: the bytes it may write (default: `diskio.room`).
    """
    with stage(root, files, room) as staged:
        return staged.publish()


class Staged:
    """A batch written to temp files and flushed to the disk, not at its names yet.

    The first two steps of `write_small_files`, which need no disk lock: the temp
    files are unnamed (or named as temp files, which no scan takes for the folder's),
    so another batch can be written and flushed while this one is published.
    `publish` is the third step (under the disk lock); closing gives back every
    descriptor and removes whatever temp file was not published.
    """

    def __init__(self, root: Path, files: list[SmallFile], room: int | None) -> None:
        self.root = root
        self.files = files
        self.out: list[Placed | Exception | None] = [None] * len(files)
        self.staged: dict[int, _Temp] = {}
        self.dirs = DirFds(root, create=True)
        self.staging = _Staging(self.dirs)
        try:
            self._write(diskio.room(root) if room is None else room)
        except BaseException:
            self.close()
            raise

    def _write(self, left: int) -> None:
        for i, f in enumerate(self.files):
            try:
                self.staged[i] = _stage(self.dirs, self.staging, f, left)
                left -= len(f.data)
            except (BadContent, OSError, paths.BadPath, apply.DiskChanged) as e:
                self.out[i] = without_traceback(e)
        try:
            diskio.flush_fs([t.fd for t in self.staged.values()])
        except OSError as e:
            failed = without_traceback(e)
            for i in self.staged:
                self.out[i] = failed
            _discard(self.staged, self.out)

    def publish(self) -> list[Placed | Exception]:
        """Each staged file at its name (the caller holds the disk lock); per file, where
        it now is or why it is not."""
        for i, t in self.staged.items():
            try:
                try:
                    self.out[i] = _place(self.root, self.dirs, self.files[i], t)
                except OSError as e:
                    if e.errno != errno.EXDEV or t.name is not None:
                        raise
                    self.staged[i] = t = self._beside(self.files[i], t)
                    self.out[i] = _place(self.root, self.dirs, self.files[i], t)
            except (OSError, paths.BadPath, apply.DiskChanged) as e:
                self.out[i] = without_traceback(e)
        _discard(self.staged, self.out)
        return self.out  # type: ignore[return-value]

    def _beside(self, f: SmallFile, t: _Temp) -> _Temp:
        """f written again, beside its place: the staging directory's file could not be
        linked there (EXDEV: a bind mount, a project quota), and neither can the next."""
        os.close(t.fd)
        t.fd = -1
        self.staging.alike[t.dfd.rel] = False
        again = _stage(self.dirs, self.staging, f, len(f.data))
        try:
            diskio.flush_fs([again.fd])
        except BaseException:
            _discard({0: again}, [])
            raise
        return again

    def close(self) -> None:
        _discard(self.staged, self.out)
        self.staging.close()
        self.dirs.__exit__()

    def __enter__(self) -> Staged:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stage(root: Path, files: list[SmallFile], room: int | None = None) -> Staged:
    """Write and flush a batch (no disk lock needed); see `Staged`."""
    return Staged(root, files, room)


@dataclass
class _Temp:
    """A written, not yet published temp file: its descriptor, directory and name."""

    fd: int
    dfd: Dir
    name: str | None  # None: an unnamed O_TMPFILE, gone once closed
    published: bool = False


def _discard(staged: dict[int, _Temp], out: list) -> list:
    """Close every temp file; the named ones that never reached their place go too."""
    for t in staged.values():
        if t.fd >= 0:
            os.close(t.fd)
            t.fd = -1
        if t.name is not None and not t.published:
            with contextlib.suppress(OSError):
                platform.unlink_in(t.dfd, t.name)  # nothing worth resuming in one block
    staged.clear()
    return out


def _stage(dirs: DirFds, staging: _Staging, f: SmallFile, room: int) -> _Temp:
    """Check the content and the space, then write it to a temp file (`_Staging`)."""
    if (hashing.block_hash(f.data) if f.data else b"") != f.block_hash:
        raise BadContent(f"{f.rel}: the bytes do not match their hash")
    if len(f.data) > room:
        raise diskio.NoSpace(len(f.data), room)
    parent, _, name = f.rel.rpartition("/")
    apply.check_planned(f.local, f.brings)
    dfd = dirs.open(parent)
    # Where nothing is expected, the link that publishes it finds out (`_publish`).
    if _expected(f.local) and not apply.stat_matches(f.local, _lstat(dfd, name)):
        raise apply.DiskChanged  # changed since it was indexed: rescan, never overwrite
    fd, temp = staging.open_temp(dfd, f)
    t = _Temp(fd, dfd, temp)
    try:
        diskio.write_all(fd, f.data, 0)  # every byte, or an exception
        if temp is not None or f.mode & 0o777 & modes.UMASK:  # created 0600, or the umask
            platform.set_mode_in(dfd, temp, fd, f.mode & 0o777)  # took bits it must have
        platform.set_times_in(dfd, temp, fd, f.mtime_ns)
    except BaseException:
        _discard({0: t}, [])
        raise
    return t


def _place(root: Path, dirs: DirFds, f: SmallFile, t: _Temp) -> Placed:
    """Archive what the index says is there (if it still is), then publish the temp file.

    A file it replaces is hard-linked into the versions folder and then replaced in one
    rename, so its path is never empty in between (see `apply.archive`'s `keep`).
    """
    name = f.rel.rpartition("/")[2]
    if not _expected(f.local):  # nothing there, as far as we know: the link checks
        _publish(t.dfd, t.fd, t.name, name)
        t.published = True
        done = os.fstat(t.fd)  # after the link, which moved the ctime
        return Placed(done.st_ino, done.st_ctime_ns, done.st_mode & 0o777)
    st = _lstat(t.dfd, name)
    if not apply.stat_matches(f.local, st):
        raise apply.DiskChanged
    replace = st is not None and not stat.S_ISDIR(st.st_mode)
    if st is not None and stat.S_ISDIR(st.st_mode):
        platform.rmdir_in(t.dfd, name)  # fails, keeping everything, unless it is empty
    elif replace:
        apply.archive(root, f.rel, by=f.by, keep=True)
        replace = os.path.lexists(root / f.rel)  # else: no hard links here, it was moved
    if replace:
        _replace(t.dfd, t.fd, t.name, f.temp_name, name)
    else:
        _publish(t.dfd, t.fd, t.name, name)
    t.published = True
    done = os.fstat(t.fd)  # after the link, which moved the ctime
    return Placed(done.st_ino, done.st_ctime_ns, done.st_mode & 0o777)


def _expected(local: FileEntry | None) -> bool:
    """Whether the index says something is at the path (else: nothing should be)."""
    return local is not None and not local.deleted


def _lstat(dfd: Dir, name: str) -> os.stat_result | None:
    return platform.stat_in(dfd, name)


def _publish(dfd: Dir, fd: int, temp: str | None, name: str) -> None:
    """Give the finished file its name: a hard link (then the temp name goes, if any).

    Unlike a rename, a link never replaces what a user created at that name a moment
    ago (that is `DiskChanged`). Where the file system has no hard links, a rename.
    """
    try:
        if temp is None:  # an unnamed O_TMPFILE: link it through /proc
            platform.link_unnamed(dfd, fd, name)
            return
        platform.link_in(dfd, temp, name)
    except FileExistsError:
        raise apply.DiskChanged from None
    except OSError as e:
        if temp is None or e.errno not in platform.NO_HARD_LINKS:
            raise
        platform.rename_in(dfd, temp, name)
        return
    platform.unlink_in(dfd, temp)


def _replace(dfd: Dir, fd: int, temp: str | None, temp_name: str, name: str) -> None:
    """Rename the finished file over name (whose version is kept already): one step.

    An unnamed file first gets the temp name; the rename then replaces atomically.
    """
    if temp is None:
        with contextlib.suppress(FileNotFoundError):
            platform.unlink_in(dfd, temp_name)  # a leftover (or a planted link) goes
        platform.link_unnamed(dfd, fd, temp_name)
    try:
        platform.rename_in(dfd, temp or temp_name, name)
    except BaseException:
        if temp is None:
            with contextlib.suppress(OSError):
                platform.unlink_in(dfd, temp_name)
        raise


STAGING = f"{paths.META_DIR}/staging"


class _Staging:
    """Where a batch's unnamed temp files are made: in `.p2psync/staging`, which the
    folder's watcher does not watch, wherever a file made there is the file made beside
    its place (`platform.traits_alike`); else beside it.

    Made beside its place, an unnamed file's times and close reach the watching node as
    two inotify events under a name that exists nowhere ("#<inode>"): two thirds of the
    30,000 events a pull of 10,000 files made, each through watchdog's three threads
    while the pull competes with them for the interpreter. The link that names the file
    is the one event left. `.p2psync` itself is never made here: gone, it means the
    folder is not there (app.core.marker), so then every temp file is made beside its place.
    """

    def __init__(self, dirs: DirFds) -> None:
        self.dirs = dirs
        self.opened: list[Dir] = []
        self.dir: Dir | None = None
        self.tried = False
        self.alike: dict[str, bool] = {}
        self.home_traits: tuple[int, bool] | None = None  # of `dir`, asked once it opened

    def open_temp(self, dfd: Dir, f: SmallFile) -> tuple[int, str | None]:
        """(fd, temp name): an unnamed O_TMPFILE where the system has one (made with its
        final mode at once: nobody ever sees it), else a named file beside its place
        (`f.temp_name`, worked out only then), made 0600."""
        mode = f.mode & 0o777
        home = self._home()
        fd = platform.open_unnamed(home if home is not None and self._alike(home, dfd)
                                   else dfd, mode)
        if fd is not None:
            return fd, None
        return platform.open_temp(dfd, f.temp_name, mode)

    def _home(self) -> Dir | None:
        if not self.tried:
            self.tried = True
            if platform.UNNAMED_TEMPS:
                try:
                    meta = platform.open_dir(self.dirs.root, paths.META_DIR, self.dirs.open(""),
                                             create=False)
                    self.opened.append(meta)
                    self.dir = platform.open_dir(self.dirs.root, STAGING, meta, create=True)
                    self.opened.append(self.dir)
                    self.home_traits = platform.new_file_traits(self.dir)
                except (OSError, paths.BadPath):
                    self.dir = None  # missing, a link, unwritable: beside its place
        return self.dir

    def _alike(self, home: Dir, dfd: Dir) -> bool:
        alike = self.alike.get(dfd.rel)
        if alike is None:
            alike = self.alike[dfd.rel] = platform.traits_alike(
                self.home_traits, platform.new_file_traits(dfd))
        return alike

    def close(self) -> None:
        for d in self.opened:
            d.close()
        self.opened.clear()
