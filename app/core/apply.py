"""Changing the folder on disk without ever losing a byte.

Every destructive step here is guarded: a file is only replaced, deleted or renamed
when what is on disk is still exactly what the index says (otherwise the user edited
it meanwhile, and the caller must rescan instead), and whatever is replaced or
deleted is first moved into `.p2psync/versions/`.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from app.core import paths
from app.core.model import FileEntry, Kind

META_DIR = ".p2psync"
VERSIONS_DIR = f"{META_DIR}/versions"


class DiskChanged(Exception):
    """The path on disk no longer matches the index: rescan before touching it."""


def _split_ext(name: str) -> tuple[str, str]:
    stem, ext = os.path.splitext(name)
    return stem, ext


def conflict_name(rel: str, mtime_ns: int, device_id: str) -> str:
    """`NAME.sync-conflict-YYYYMMDD-HHMMSS-DEVICE.EXT`, from the losing version.

    Built only from the losing version (its mtime, in UTC, and the device that made
    it), so every device that holds that version names its copy the same way and the
    copies merge instead of multiplying.
    """
    head, _, name = rel.rpartition("/")
    stem, ext = _split_ext(name)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(mtime_ns / 1e9))
    new = f"{stem}.sync-conflict-{stamp}-{device_id[:7]}{ext}"
    return f"{head}/{new}" if head else new


def is_conflict_copy(rel: str) -> bool:
    return ".sync-conflict-" in rel.rpartition("/")[2]


def version_name(rel: str, when: float) -> str:
    """`.p2psync/versions/DIR/NAME~YYYYMMDD-HHMMSS.EXT` (local time of archiving)."""
    head, _, name = rel.rpartition("/")
    stem, ext = _split_ext(name)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    new = f"{stem}~{stamp}{ext}"
    return f"{VERSIONS_DIR}/{head}/{new}" if head else f"{VERSIONS_DIR}/{new}"


def matches_disk(root: Path, entry: FileEntry | None, rel: str) -> bool:
    """True when the disk holds what the index says: nothing, or that very file."""
    try:
        st = os.lstat(root / rel)
    except FileNotFoundError:
        st = None
    return stat_matches(entry, st)


def stat_matches(entry: FileEntry | None, st: os.stat_result | None) -> bool:
    """matches_disk for an lstat result already taken (None: nothing there)."""
    if st is None:
        return entry is None or entry.deleted
    if entry is None or entry.deleted:
        return False
    if entry.kind == Kind.DIR:
        return stat.S_ISDIR(st.st_mode)
    if entry.kind == Kind.LINK:
        return stat.S_ISLNK(st.st_mode)
    return (
        stat.S_ISREG(st.st_mode)
        and st.st_size == entry.size
        and st.st_mtime_ns == entry.mtime_ns
        and (entry.inode == 0 or st.st_ino == entry.inode)
        and (entry.ctime_ns == 0 or st.st_ctime_ns == entry.ctime_ns)
    )


def ensure_dirs(root: Path, rel_dir: str) -> list[str]:
    """Create the directory rel_dir and missing parents, refusing links; returns created."""
    created: list[str] = []
    if not rel_dir:
        return created
    parts = rel_dir.split("/")
    for i in range(1, len(parts) + 1):
        sub = "/".join(parts[:i])
        full = paths.safe_join(root, sub)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            os.mkdir(full)
            created.append(sub)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise paths.BadPath(f"{sub} is not a directory")
    return created


def archive(root: Path, rel: str, when: float | None = None) -> str:
    """Move root/rel into the versions folder; returns the archived relative path."""
    when = time.time() if when is None else when
    dest_rel = version_name(rel, when)
    dest = root / dest_rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while os.path.lexists(dest):
        stem, ext = _split_ext(dest_rel)
        dest = root / f"{stem}-{n}{ext}"
        n += 1
    os.rename(root / rel, dest)
    return str(dest.relative_to(root))


def set_meta(path: Path, mode: int, mtime_ns: int) -> None:
    os.chmod(path, mode & 0o777)
    os.utime(path, ns=(mtime_ns, mtime_ns))
