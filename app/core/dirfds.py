"""Directory descriptors opened without following links, each resolved once.

Working relative to a directory descriptor (`dir_fd=`) instead of a path means a
directory is looked up once for many files, and since every component was opened
with O_NOFOLLOW, no step can be sent through a symlink out of the folder. A
`DirFds` lives for one batch of work; its descriptors are closed with it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from app.core import paths

_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class DirFds:
    """Descriptors of directories below root; missing ones are made when `create`."""

    def __init__(self, root: Path, *, create: bool) -> None:
        self.root = root
        self.create = create
        self.fds: dict[str, int] = {}

    def __enter__(self) -> DirFds:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def open(self, rel_dir: str) -> int:
        """The descriptor of rel_dir ("" is the root); BadPath if a link or file is in the way."""
        fd = self.fds.get(rel_dir)
        if fd is not None:
            return fd
        if not rel_dir:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        else:
            parent, _, name = rel_dir.rpartition("/")
            fd = self._open_child(self.open(parent), name, rel_dir)
        self.fds[rel_dir] = fd
        return fd

    def _open_child(self, parent_fd: int, name: str, rel_dir: str) -> int:
        try:
            try:
                return os.open(name, _FLAGS, dir_fd=parent_fd)
            except FileNotFoundError:
                if not self.create:
                    raise
                with contextlib.suppress(FileExistsError):  # made meanwhile: open it below
                    os.mkdir(name, dir_fd=parent_fd)
                return os.open(name, _FLAGS, dir_fd=parent_fd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
                what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
                raise paths.BadPath(f"{rel_dir} is {what}") from e
            raise
