"""A work-around for a reference-counting bug of the Qt binding, applied once at import.

PySide6 6.12.0 on Python 3.11 (pyproject.toml asks for <6.12, constraints.txt pins
6.11.3, which is sound) returns
`None` from every void C++ method (`setText`, `beginResetModel`, `processEvents` ...)
and `True` from `SignalInstance.emit()`
without taking a new reference. Each such call lowers the singleton's reference
count by one; after some tens of thousands of calls it reaches zero and the
interpreter aborts ("none_dealloc: deallocating None"). Python 3.12 made these
singletons immortal, which hides the bug there.

`ensure_safe()` does the same for Python 3.11: it probes whether the binding drops
references, and if it does, raises the counts of None, True and False by 2**40, so
they cannot reach zero in the life of any process. These three objects are static
and never freed, so nothing else changes. It is a no-op on Python 3.12+ and on a
binding without the bug.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

MARGIN = 1 << 40
_done = False


def _binding_drops_references() -> bool:
    from PySide6.QtCore import QObject

    probe = QObject()
    n = 200
    before = sys.getrefcount(None)
    for _ in range(n):
        probe.setObjectName("probe")  # a void method: returns None
    return before - sys.getrefcount(None) >= n // 2


def ensure_safe() -> None:
    global _done
    if _done or sys.version_info >= (3, 12):
        _done = True
        return
    _done = True
    if _binding_drops_references():
        for obj in (None, True, False):
            ctypes.c_ssize_t.from_address(id(obj)).value += MARGIN
        log.debug("PySide6 drops references to None/True: made them immortal")


ensure_safe()
