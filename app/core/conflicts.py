"""Resolving a conflict: keep this one, keep the other, or keep both. Nothing is lost.

A conflict leaves two files side by side (see app.core.apply.conflict_name):

    NAME.EXT                                      "this one": the version in place
    NAME.sync-conflict-YYYYMMDD-HHMMSS-DEVICE.EXT "the other": the version that lost

The three ways out, each a plain operation on disk; whatever is discarded goes to
`.p2psync/versions/` (app.core.apply.archive), never to oblivion:

* keep_original ("keep this one"): the copy is archived;
* keep_copy ("keep the other"): the file in place is archived and the copy takes its name;
* keep_both: the copy is renamed to an ordinary name, `NAME (conflict DEVICE
  YYYY-MM-DD HHMMSS).EXT`, so it stops being reported as a conflict.

The caller holds the node's disk lock while one runs (so no scan or transfer sees it
half done) and asks the node to rescan the paths returned, which spreads the change
to the peers like any edit. Qt-free; the window calls these through its worker.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from app.core import apply, paths

TEXT_LIMIT = 512 * 1024  # the side-by-side view shows at most this much of each version


class ConflictError(Exception):
    """The conflict cannot be resolved as asked; str() says why. Nothing was changed."""


@dataclass(frozen=True)
class Conflict:
    copy: str  # relative path of the conflict copy ("the other")
    original: str  # relative path of the file it stands beside ("this one")
    device: str  # first 7 characters of the ID of the device that made the copy's version
    when: datetime  # modification time of the copy's version (UTC, from its name)

    @property
    def both_name(self) -> str:
        """The ordinary name `keep_both` gives the copy (before any " 2" to make it free)."""
        return _both_name(self, 1)


def parse(copy_rel: str) -> Conflict | None:
    """The conflict a path names, or None when it is not a conflict copy.

    From the name alone: the original of a copy whose name had to be shortened is only
    found by `resolve`, which looks at the folder.
    """
    head, _, name = copy_rel.rpartition("/")
    m = apply.CONFLICT_COPY.match(name)
    if m is None or not m["stem"]:
        return None
    try:
        when = datetime.strptime(m["date"] + m["time"], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    original = m["stem"] + m["ext"]
    return Conflict(copy=copy_rel, original=f"{head}/{original}" if head else original,
                    device=m["device"], when=when)


def resolve(root: Path, copy_rel: str) -> Conflict | None:
    """parse, with the original looked up among the copy's siblings in the folder.

    What the window should act on: a copy of a long name carries only a shortened
    form of it (apply.conflict_name), and the original is the sibling that gives it.
    """
    c = parse(copy_rel)
    if c is None:
        return None
    head = copy_rel.rpartition("/")[0]
    try:
        names = os.listdir(paths.safe_join(root, head) if head else root)
    except (OSError, paths.BadPath):
        return c
    original = apply.conflict_original(copy_rel, names)
    return c if original in (None, c.original) else replace(c, original=original)


def _both_name(c: Conflict, n: int) -> str:
    """`NAME (conflict DEVICE YYYY-MM-DD HHMMSS[ n]).EXT`, shortened like the copy's name."""
    head, _, name = c.original.rpartition("/")
    stamp = c.when.strftime("%Y-%m-%d %H%M%S")
    extra = f" {n}" if n > 1 else ""
    limit = max(apply.COPY_PATH_BYTES, len(c.copy.encode("utf-8")))
    new = apply.fit_name(name, f" (conflict {c.device} {stamp}{extra})",
                         apply.name_room(head, limit))
    return f"{head}/{new}" if head else new


def _check_copy(root: Path, c: Conflict) -> Path:
    full = paths.safe_join(root, c.copy)
    try:
        st = os.lstat(full)
    except FileNotFoundError:
        raise ConflictError(f"{c.copy} is no longer there") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConflictError(f"{c.copy} is a folder; resolve it by hand")
    return full


def keep_original(root: Path, c: Conflict) -> list[str]:
    """Keep the file in place; the conflict copy goes to the versions folder."""
    _check_copy(root, c)
    apply.archive(root, c.copy)
    return [c.copy]


def keep_copy(root: Path, c: Conflict) -> list[str]:
    """Keep the conflict copy under the original name; the file in place is archived."""
    copy_full = _check_copy(root, c)
    orig_full = paths.safe_join(root, c.original)
    archived = None
    if os.path.lexists(orig_full):
        if stat.S_ISDIR(os.lstat(orig_full).st_mode):
            raise ConflictError(f"{c.original} is a folder; resolve it by hand")
        archived = apply.archive(root, c.original)
    else:
        apply.ensure_dirs(root, c.original.rpartition("/")[0])
    try:
        os.rename(copy_full, orig_full)
    except OSError:
        if archived is not None:  # put the original back: the folder is as it was
            os.rename(root / archived, orig_full)
        raise
    return [c.copy, c.original]


def keep_both(root: Path, c: Conflict) -> list[str]:
    """Keep both: the conflict copy gets an ordinary name beside the original."""
    copy_full = _check_copy(root, c)
    n = 1
    while True:
        new = _both_name(c, n)
        new_full = paths.safe_join(root, new)
        if not os.path.lexists(new_full):
            break
        n += 1
    os.rename(copy_full, new_full)
    return [c.copy, new]


@dataclass(frozen=True)
class Side:
    """One version as the side-by-side view shows it."""

    path: str
    exists: bool
    size: int = 0
    mtime: float = 0.0
    text: str | None = None  # None: not shown as text (binary, or missing)
    truncated: bool = False


def read_side(root: Path, rel: str, limit: int = TEXT_LIMIT) -> Side:
    """The file's size and date, and its text when it is a text file (UTF-8, no NUL)."""
    try:
        full = paths.safe_join(root, rel)
        st = os.lstat(full)
    except (OSError, paths.BadPath):
        return Side(rel, exists=False)
    if not stat.S_ISREG(st.st_mode):
        return Side(rel, exists=True, size=st.st_size, mtime=st.st_mtime)
    try:
        with open(full, "rb") as f:
            data = f.read(limit + 1)
    except OSError:
        return Side(rel, exists=True, size=st.st_size, mtime=st.st_mtime)
    truncated = len(data) > limit
    data = data[:limit]
    text = None
    if b"\0" not in data:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            # a multi-byte character cut by the limit is still text
            if truncated and e.start >= len(data) - 4:
                text = data[: e.start].decode("utf-8", "replace")
    return Side(rel, exists=True, size=st.st_size, mtime=st.st_mtime, text=text,
                truncated=truncated)


def is_text_pair(a: Side, b: Side) -> bool:
    return a.text is not None and b.text is not None
