"""Changing the folder on disk without ever losing a byte.

Every destructive step here is guarded: a file is only replaced, deleted or renamed
when what is on disk is still exactly what the index says (otherwise the user edited
it meanwhile, and the caller must rescan instead), and whatever is replaced or
deleted is first moved into `.p2psync/versions/` and listed in the versions index
(app.core.versionstore). The names made here from a user's name (conflict copies, kept
versions) are shortened where they would not fit the file system.
"""

from __future__ import annotations

import calendar
import errno
import os
import re
import stat
import time
from collections.abc import Iterable
from pathlib import Path

from app.core import paths, platform, versionstore
from app.core.model import FileEntry, Kind
from app.core.versions import Order, Vector, compare

META_DIR = paths.META_DIR
VERSIONS_DIR = versionstore.VERSIONS_DIR
# A conflict copy's relative path stays within this, or within the original's own length
# when that is longer: the copy is a synced file, and the headroom is for the folder's own
# path on the devices it reaches (an absolute path must stay below PATH_MAX there).
COPY_PATH_BYTES = paths.MAX_PATH_BYTES - 256

CONFLICT_COPY = re.compile(
    r"^(?P<stem>.*?)\.sync-conflict-(?P<date>\d{8})-(?P<time>\d{6})-(?P<device>[A-Z2-7]{7})"
    r"(?P<ext>.*)$", re.S
)
_SHORTENED = re.compile(rf"(?P<prefix>.*)~[0-9a-f]{{{paths.SHORT_HASH_HEX}}}", re.S)


class DiskChanged(Exception):
    """The path on disk no longer matches the index: rescan before touching it."""


def _split_ext(name: str) -> tuple[str, str]:
    stem, ext = os.path.splitext(name)
    return stem, ext


def _nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


def _join(head: str, name: str) -> str:
    return f"{head}/{name}" if head else name


def name_room(head: str, max_path: int) -> int:
    """The bytes a name in directory head may take: within the name and the path limits."""
    return min(paths.MAX_NAME_BYTES, max_path - (_nbytes(head) + 1 if head else 0))


def fit_name(name: str, tag: str, room: int) -> str:
    """`STEM` + tag + `.EXT`, shortened to room bytes where it does not fit.

    Only the stem is shortened (`PREFIX~HASH`, paths.shorten_stem), so the copy still
    opens with the same program; an extension too long for that is shortened along with
    the stem. Deterministic: the same name and tag give the same result everywhere. When
    not even the shortest form fits, the shorter of the two is returned and the caller's
    path check has the last word.
    """
    stem, ext = _split_ext(name)
    normal = f"{stem}{tag}{ext}"
    if _nbytes(normal) <= room:
        return normal
    tail = tag + ext
    if _nbytes(tail) + paths.SHORT_MIN_BYTES > room:
        stem, tail = name, tag
    short = paths.shorten_stem(stem, room - _nbytes(tail)) + tail
    return short if _nbytes(short) < _nbytes(normal) else normal


def conflict_name(rel: str, mtime_ns: int, device_id: str) -> str:
    """`NAME.sync-conflict-YYYYMMDD-HHMMSS-DEVICE.EXT`, from the losing version.

    Built only from the losing version (its mtime, in UTC, and the device that made
    it), so every device that holds that version names its copy the same way and the
    copies merge instead of multiplying. Where that name would exceed 255 bytes, or the
    copy's path COPY_PATH_BYTES (and the original's length), the stem is shortened to
    `PREFIX~HASH`: then conflict_original finds the original among the copy's siblings.
    """
    head, _, name = rel.rpartition("/")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(mtime_ns / 1e9))
    tag = f".sync-conflict-{stamp}-{device_id[:7]}"
    room = name_room(head, max(COPY_PATH_BYTES, _nbytes(rel)))
    return _join(head, fit_name(name, tag, room))


def is_conflict_copy(rel: str) -> bool:
    return ".sync-conflict-" in rel.rpartition("/")[2]


def conflict_original(copy_rel: str, siblings: Iterable[str] = ()) -> str | None:
    """The path a conflict copy stands beside; None when copy_rel is not a conflict copy.

    A copy's name holds its original's name, except when conflict_name had to shorten
    it: then the original is the sibling (a name in the copy's directory) whose conflict
    copy is this very name. Without such a sibling, the name read as it stands.
    """
    head, _, name = copy_rel.rpartition("/")
    m = CONFLICT_COPY.match(name)
    if m is None or not m["stem"]:
        return None
    literal = m["stem"] + m["ext"]
    short = _SHORTENED.fullmatch(m["stem"])
    if short is None:
        return _join(head, literal)
    try:
        when = calendar.timegm(time.strptime(m["date"] + m["time"], "%Y%m%d%H%M%S"))
    except ValueError:
        return _join(head, literal)
    names = set(siblings)
    candidates = [literal] + sorted(n for n in names if n.startswith(short["prefix"]))
    for cand in candidates:
        rel = _join(head, cand)
        if cand in names and conflict_name(rel, when * 10**9, m["device"]) == copy_rel:
            return rel
    return _join(head, literal)


def version_name(rel: str, when: float, root: Path | None = None, n: int = 0) -> str:
    """Where archive keeps rel: `.p2psync/versions/DIR/NAME~YYYYMMDD-HHMMSS.EXT`.

    The time is the local time of archiving; the n-th name taken already adds `-n`
    after it. With root, the absolute path must stay below PATH_MAX (root's own length
    counts); without, the relative path within MAX_PATH_BYTES. Where the name would be
    longer than 255 bytes it is shortened in the same directory; where the path would be
    too long, the version goes directly into the versions folder under a flat name with
    a hash of its directory. The versions index keeps the full path either way.
    OSError(ENAMETOOLONG) only when root alone leaves no room for any name.
    """
    head, _, name = rel.rpartition("/")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    tag = f"~{stamp}-{n}" if n else f"~{stamp}"
    max_path = paths.MAX_PATH_BYTES if root is None else \
        paths.PATH_MAX - 1 - len(os.fsencode(root)) - 1
    vdir = f"{VERSIONS_DIR}/{head}" if head else VERSIONS_DIR
    room = name_room(vdir, max_path)
    stem, ext = _split_ext(name)
    normal = f"{stem}{tag}{ext}"
    if _nbytes(normal) <= room:
        return f"{vdir}/{normal}"
    if _nbytes(normal) > paths.MAX_NAME_BYTES:  # the name is too long: shorten it in place
        short = fit_name(name, tag, room)
        if _nbytes(short) <= room:
            return f"{vdir}/{short}"
    if head:  # the path is too long: flat
        tag = f"~{paths.short_hash(head)}{tag}"
    room = name_room(VERSIONS_DIR, max_path)
    flat = fit_name(name, tag, room)
    if _nbytes(flat) > room:
        raise OSError(errno.ENAMETOOLONG, f"no name for a version of {rel} fits below "
                      f"PATH_MAX in the versions folder", str(root))
    return f"{VERSIONS_DIR}/{flat}"


def check_planned(local: FileEntry | None, brings: Vector) -> None:
    """Raise DiskChanged unless the version a plan brings supersedes the index's entry.

    A plan is made from the index as it was. A scan may record a local edit before
    the plan is carried out, and the file then matches its new entry on disk:
    replacing it would file that edit as a replaced version where it is a conflict.
    The path is rescanned and planned again instead.
    """
    if local is not None and compare(brings, local.version) != Order.NEWER:
        raise DiskChanged


def matches_disk(root: Path, entry: FileEntry | None, rel: str) -> bool:
    """True when the disk holds what the index says: nothing, or that very file."""
    try:
        st = os.lstat(root / paths.on_disk(root, rel))
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


def archive(root: Path, rel: str, when: float | None = None, by: str = "",
            keep: bool = False) -> str:
    """Move root/rel into the versions folder and list it in the versions index.

    Returns the archived relative path (version_name). `by` is the device whose change
    replaced or deleted it ("" when local or unknown). When the index cannot take its
    line (a full disk, say), the file goes back where it was and the error is raised:
    every kept version is listed, and a failed archive changes nothing.

    `keep`: the caller is about to rename a new version over rel, so the old one is
    hard-linked into the versions folder and its name stays until that rename: the
    path never goes missing, and a crash in between cannot look like a deletion.
    Where the file system has no hard links, it is moved as without `keep`.
    """
    when = time.time() if when is None else when
    src = root / paths.on_disk(root, rel)  # stored NFD, say: that very file
    size = os.lstat(src).st_size
    n = 0
    while True:
        dest_rel = version_name(rel, when, root, n)
        dest = root / dest_rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not os.path.lexists(dest):
            break
        n += 1
    linked = keep and hard_link(src, dest)
    if not linked:
        platform.replace(src, dest)
    try:
        versionstore.record(root, versionstore.Kept(rel, dest_rel, when, size, by))
    except OSError:
        if linked:
            os.unlink(dest)
        elif not os.path.lexists(src):
            os.rename(dest, src)
        raise
    return dest_rel


def hard_link(src: Path, dest: Path) -> bool:
    """A second name for src (a link itself, never its target); False: no hard links here."""
    try:
        platform.hard_link(src, dest)
    except OSError as e:
        if e.errno not in platform.NO_HARD_LINKS:
            raise
        return False
    return True


def set_meta(path: Path, mode: int, mtime_ns: int) -> None:
    os.chmod(path, mode & 0o777)
    os.utime(path, ns=(mtime_ns, mtime_ns))
