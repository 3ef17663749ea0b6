"""Which permission bits a peer decides: the executable bit, and nothing else.

A peer's other bits were once applied as sent: a `0777` directory let another local
user plant files that then synced to everyone, and a `0000` one locked the node out
of its own folder. Now what a peer creates gets this device's default mode (the
umask), plus the executable bit where the source file has it; a file that is only
updated keeps the read and write bits its owner gave it here. Changing other bits
locally is not a change to sync either (see the scanner).
"""

from __future__ import annotations

import os

from app.core import platform

EXEC = 0o111


def _read_umask() -> int:
    """The process umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)  # elsewhere: set and put back, once, at import
    os.umask(old)
    return old


UMASK = _read_umask()


def is_exec(mode: int) -> bool:
    return bool(mode & EXEC)


def file_mode(source_mode: int, local_mode: int | None = None) -> int:
    """The mode a file from a peer gets here.

    `local_mode`: the mode of the file it replaces, if any (its owner's choice of read
    and write bits stays); else this device's default. Executable where the source is,
    for those who may read it.
    """
    base = (local_mode if local_mode is not None else 0o666 & ~UMASK) & 0o666
    if is_exec(source_mode):
        return base | (base & 0o444) >> 2
    return base


def dir_mode() -> int:
    """The mode a directory a peer creates gets here: this device's default."""
    return 0o777 & ~UMASK


def same_synced_bits(a: int, b: int) -> bool:
    """Whether two modes agree on what syncs (the executable bit).

    Where files have no executable bit (Windows), a file's mode never shows it: its
    absence there is not a change to sync back to the devices that have one.
    """
    return is_exec(a) == is_exec(b) or not platform.EXEC_BIT
