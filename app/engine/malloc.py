"""Keep freed block buffers in the process instead of handing them back to the kernel.

A transfer allocates and frees 128 KiB block buffers at hundreds of MB/s. By default
glibc serves each from a fresh mmap and trims its heap eagerly, so the next buffer is
faulted in (and zeroed) again; on a VM whose memory the host backs lazily that costs
more than the copy itself. Raising both thresholds keeps a few MiB of freed buffers
warm for reuse; the window of blocks in flight bounds how much that can be.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
ARENAS = 2  # glibc gives each thread an arena of its own (up to 8 per core), each keeping
# up to TRIM_ABOVE of freed buffers: with four serving threads, a node serving tiny files
# grew from 72 to 109 MB. The GIL lets one thread allocate at a time anyway.
MMAP_ABOVE = 4 * 1024 * 1024  # larger single allocations still get their own mapping
TRIM_ABOVE = 32 * 1024 * 1024  # free heap top kept before it is returned


def keep_freed_buffers() -> bool:
    """Set glibc's thresholds; False where there is no glibc mallopt (nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_ABOVE)) and \
        bool(mallopt(M_TRIM_THRESHOLD, TRIM_ABOVE)) and bool(mallopt(M_ARENA_MAX, ARENAS))


def trim() -> bool:
    """Hand freed heap memory back to the kernel now (glibc malloc_trim); False elsewhere.

    The thresholds above keep freed memory on purpose; after a burst that is over (a
    flood of connections) that memory would stay with the process for good.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    malloc_trim.argtypes = [ctypes.c_size_t]
    return bool(malloc_trim(0))
