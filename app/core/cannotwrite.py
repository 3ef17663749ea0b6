"""Why a peer's file cannot be written here, in one sentence that says what to do.

The puller records these reasons (app/engine/puller.py): `status` shows them as the
`why` of an `error` row, `sync` exits 5 listing them, and they travel to the peers
in `state` messages. So they name no absolute path (a peer's `state` bounds its
reasons at 500 characters) but the directory in the folder where it went wrong:
"[Errno 13] Permission denied: '.'" said neither which directory nor what to do.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from app.core.ignore import IGNORE_FILE

HEAD = "cannot be written here"
MAX_CHARS = 400  # a `state` message takes reasons of up to 500 characters
_SPECIAL = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
            (stat.S_ISCHR, "a device file"), (stat.S_ISBLK, "a device file"))


def reason(e: OSError, rel: str) -> str:
    """The sentence for an OSError met while writing `rel` (a relative path)."""
    folder = _dir_of(rel)
    code = e.errno
    if code == errno.ENAMETOOLONG:
        text = (f"{HEAD}: name too long for this file system (rename it where it was "
                f"made, or add it to {IGNORE_FILE})")
    elif code in (errno.EACCES, errno.EPERM):
        text = (f"{HEAD}: this user may not write in {folder} (give it write access "
                f"there, or add the path to {IGNORE_FILE})")
    elif code == errno.EROFS:
        text = f"{HEAD}: the file system is read-only"
    elif code == errno.ENOENT:
        text = f"{HEAD}: {folder} is missing and could not be made"
    elif code == errno.ENOTDIR:
        text = f"{HEAD}: a file is in the way of {folder}"
    elif code == errno.EISDIR:
        text = f"{HEAD}: a directory is in the way (move it, or remove it if it is empty)"
    else:
        text = f"{HEAD}: {(e.strerror or str(e)).lower()}"
    return text[:MAX_CHARS]


def in_the_way(root: Path, rel: str) -> str | None:
    """The sentence when something that is not a file stands at `rel` (a FIFO, a
    socket, a device file: the scanner leaves them alone, so the path would wait for
    ever); None when nothing like that is there."""
    try:
        mode = os.lstat(root / rel).st_mode
    except OSError:
        return None
    for test, what in _SPECIAL:
        if test(mode):
            return f"{HEAD}: {what} is in the way; remove or rename it"
    return None


def _dir_of(rel: str) -> str:
    """"the directory `a/b/`" for a/b/c, "the folder's top directory" for c."""
    head = rel.rpartition("/")[0]
    if not head:
        return "the folder's top directory"
    if len(head) > 200:
        head = "…" + head[-200:]
    return f"the directory `{head}/`"
