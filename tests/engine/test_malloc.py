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
