"""The folder's directories, each resolved once for a batch of work, never through a link.

Working relative to a directory descriptor (`dir_fd=`) instead of a path means a
directory is looked up once for many files, and since every component was opened
with O_NOFOLLOW, no step can be sent through a symlink out of the folder. Where there
are no directory descriptors (Windows, or P2PSYNC_PORTABLE=1), each step checks the
directory's path instead (app.core.platform.Dir). A `DirFds` lives for one batch of
work; its descriptors are closed with it.
"""

from __future__ import annotations

import errno
import stat
from pathlib import Path

from app.core import paths, platform
from app.core.platform import Dir


class DirFds:
    """Directories below root (`platform.Dir`); missing ones are made when `create`."""

    def __init__(self, root: Path, *, create: bool) -> None:
        self.root = root
        self.create = create
        self.dirs: dict[str, Dir] = {}

    def __enter__(self) -> DirFds:
        return self

    def __exit__(self, *exc: object) -> None:
        for d in self.dirs.values():
            d.close()
        self.dirs.clear()

    def open(self, rel_dir: str) -> Dir:
        """rel_dir ("" is the root) as a Dir; BadPath if a link or file is in the way."""
        d = self.dirs.get(rel_dir)
        if d is not None:
            return d
        parent = None
        if rel_dir:
            parent = self.open(rel_dir.rpartition("/")[0])
        try:
            d = platform.open_dir(self.root, rel_dir, parent, self.create)
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENOTDIR) or parent is None:
                raise
            st = platform.stat_in(parent, rel_dir.rpartition("/")[2])
            what = "a symlink" if st and stat.S_ISLNK(st.st_mode) else "not a directory"
            raise paths.BadPath(f"{rel_dir} is {what}") from e
        self.dirs[rel_dir] = d
        return d
