"""glibc keeps freed block buffers for reuse (see app/engine/malloc.py)."""

from __future__ import annotations

import platform
import sys

import pytest

from app.engine import malloc


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="mallopt thresholds are glibc's")
def test_thresholds_are_accepted_by_glibc():
    assert malloc.keep_freed_buffers() is True


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="malloc_trim is glibc's")
def test_trim_hands_freed_memory_back():
    """What the listener does after a flood (app/engine/listener.py)."""
    malloc.keep_freed_buffers()
    blocks = [bytearray(256 * 1024) for _ in range(200)]  # 50 MiB kept by the thresholds
    del blocks
    assert malloc.trim() is True  # something was handed back
