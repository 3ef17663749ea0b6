"""The `.p2psync/` marker: tells a folder that lost its files from one that is not there.

A mount point whose disk is not mounted, or a folder someone emptied with `rm -rf
dir/{*,.*}`, looks to a scan exactly like "every file was deleted", and the peers
would follow. The node therefore makes `.p2psync/` in the folder (where the kept
versions live too) and notes in the index that it did. When that directory is gone
again while indexed files are missing, the folder is taken for unmounted or emptied:
nothing is scanned as deleted and nothing is written there until the user confirms.

Indexes from before the marker existed have no note: their folder gets the marker
now, unless it is wholly empty while the index lists files (that is the same danger).
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from app.core.index import BRIEF_DELETED, Index
from app.core.model import Kind
from app.core.paths import META_DIR

log = logging.getLogger(__name__)

MADE = "marker_made"  # index meta key: 1 once this folder got its marker


@dataclass(frozen=True)
class Missing:
    """The marker is gone and so are `missing` of the `live` indexed files and links."""

    missing: int
    live: int


def check(root: Path, index: Index) -> Missing | None:
    """None when the folder is there (its marker made now if it had none yet).

    Costs one stat while the marker is in place; an lstat per indexed file only when
    it is gone.
    """
    if _is_dir(root / META_DIR):
        if not index.get_meta(MADE):
            index.set_meta(MADE, 1)
        return None
    found = lost(root, index)
    if found is None:
        make(root, index)
    return found


def lost(root: Path, index: Index) -> Missing | None:
    """What `check` says of a folder, making nothing: a preview must not leave a marker."""
    if _is_dir(root / META_DIR):
        return None
    live = missing = 0
    last = ""
    while chunk := index.brief_range(last):  # a chunk at a time: any size of folder
        for path, state, *_ in chunk:
            if state != BRIEF_DELETED and state != int(Kind.DIR):
                live += 1
                missing += not os.path.lexists(root / path)
        last = chunk[-1][0]
    if missing and (index.get_meta(MADE) or _empty(root)):
        return Missing(missing, live)
    return None


def make(root: Path, index: Index) -> bool:
    """Create the marker and note it; False when the folder cannot take it (not there)."""
    try:
        os.mkdir(root / META_DIR)
    except FileExistsError:
        pass
    except OSError as e:
        log.warning("cannot create %s in %s: %s", META_DIR, root, e.strerror or e)
        return False
    index.set_meta(MADE, 1)
    return True


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _empty(root: Path) -> bool:
    try:
        with os.scandir(root) as it:
            return next(it, None) is None
    except OSError:
        return True  # not there at all
