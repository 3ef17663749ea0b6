"""Getting an earlier version back: list what `.p2psync/versions/` keeps, put one back.

The versions index (app.core.versionstore) lists every version archived since it
exists; versions kept by older releases have no line there, so their names are read
as well (`DIR/NAME~YYYYMMDD-HHMMSS.EXT`, optionally `-N`). A restore is an ordinary
edit of the folder: the kept bytes are copied (the kept version stays, so a restore
can itself be undone) into a temp file beside the path, checked, flushed, and renamed
over it after the current content was kept as a version in its turn. The running
node (or the next `run`/`sync`) sees the change and sends it to the peers like any
other edit: its new version vector dominates what they have.
"""

from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from app.core import apply, diskio, hashing, paths, platform, versionstore
from app.core.versionstore import VERSIONS_DIR

STAMP = "%Y%m%d-%H%M%S"
_LEGACY = re.compile(r"^(?P<stem>.*)~(?P<stamp>\d{8}-\d{6})(?:-\d+)?(?P<ext>(\.[^./~]*)?)$")
_CHUNK = 1024 * 1024


class RestoreError(Exception):
    """The restore cannot be done as asked; str() says why. Nothing was changed."""


@dataclass(frozen=True)
class Version:
    """One kept version as the user sees it."""

    path: str  # the original's relative path
    stored: str  # where it is kept (relative to the folder)
    when: float  # when it was replaced or deleted here
    size: int
    by: str  # the device whose change replaced it ("" when local or unknown)

    @property
    def stamp(self) -> str:
        """The time as `restore --at` takes it (local time, like the versions' names)."""
        return time.strftime(STAMP, time.localtime(self.when))


def kept_versions(root: Path, path: str | None = None) -> list[Version]:
    """The versions kept on disk (of one path, or all), oldest first."""
    listed = versionstore.list_kept(root, path)
    out = [Version(k.path, k.version, k.when, k.size, k.by) for k in listed]
    known = {k.version for k in versionstore.entries(root)}
    out += [v for v in _unlisted(root, known) if path is None or v.path == path]
    out.sort(key=lambda v: (v.when, v.stored))
    return out


def restore(root: Path, path: str, at: str | None = None) -> tuple[Version, str | None]:
    """Put a kept version of path back (the newest, or the one kept at `at`).

    Returns the version restored and where the content it replaced is kept now (None
    when nothing was there).
    """
    paths.validate(path)
    found = kept_versions(root, path)
    if not found:
        raise RestoreError(f"no earlier version of {path} is kept in {VERSIONS_DIR}")
    chosen = found[-1] if at is None else next((v for v in reversed(found) if v.stamp == at),
                                                None)
    if chosen is None:
        times = ", ".join(v.stamp for v in found)
        raise RestoreError(f"no version of {path} was kept at {at} (kept: {times})")
    src = root / chosen.stored
    full = paths.safe_join(root, path)
    if os.path.lexists(full) and stat.S_ISDIR(os.lstat(full).st_mode):
        raise RestoreError(f"{path} is a folder now; move it away first")
    diskio.check_space(root, os.lstat(src).st_size)
    apply.ensure_dirs(root, path.rpartition("/")[0])
    tmp = paths.safe_join(root, paths.temp_name_for(path, b"restore" + os.urandom(8)))
    _copy(src, tmp)
    try:
        replaced = None
        if os.path.lexists(full):
            replaced = apply.archive(root, path, keep=True)
        platform.replace(tmp, full)  # the path is never empty: see apply.archive's keep
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return chosen, replaced


def _copy(src: Path, tmp: Path) -> None:
    """src's bytes into a new temp file, checked against src and on the disk."""
    fd = os.open(tmp, platform.TEMP_FLAGS, 0o666)
    try:
        with open(src, "rb") as f:
            offset = 0
            while chunk := f.read(_CHUNK):
                diskio.write_all(fd, chunk, offset)
                offset += len(chunk)
        platform.set_mode(fd, tmp, stat.S_IMODE(os.stat(src).st_mode))
        diskio.flush_data(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    if hashing.hash_file(tmp)[1] != hashing.hash_file(src)[1]:
        tmp.unlink(missing_ok=True)
        raise OSError(f"the copy of {src.name} does not match it; nothing was changed")


def _unlisted(root: Path, known: set[str]) -> list[Version]:
    """Versions kept before the versions index existed, read from their names."""
    base = root / VERSIONS_DIR
    out = []
    for dirpath, _, names in os.walk(base):
        for name in names:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            m = _LEGACY.match(name)
            if rel in known or m is None or not m["stem"] or full.is_symlink():
                continue
            try:
                when = time.mktime(time.strptime(m["stamp"], STAMP))
            except ValueError:
                continue
            head = str(Path(dirpath).relative_to(base))
            original = m["stem"] + m["ext"]
            original = original if head == "." else f"{head}/{original}"
            out.append(Version(original, rel, when, full.stat().st_size, ""))
    return out
