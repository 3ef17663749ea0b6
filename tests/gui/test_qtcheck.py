"""Where Qt could not open a window, the app says why in one line instead of Qt aborting."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from app.gui import qtcheck

FREE_DISPLAY = 4242  # no X server is run there: its socket is checked below


def _xcb_here() -> bool:
    try:
        import ctypes
        ctypes.CDLL("libxcb.so.1")
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _xcb_here(), reason="needs libxcb")


def test_a_display_nobody_serves_is_named_in_one_line():
    """A DISPLAY left from a session that is gone: Qt aborted the process, blaming a
    library that was installed."""
    assert not Path(f"/tmp/.X11-unix/X{FREE_DISPLAY}").exists()
    problem = qtcheck._display_problem(f":{FREE_DISPLAY}")
    assert problem is not None and "\n" not in problem
    assert f"cannot open a window on the X display :{FREE_DISPLAY} (DISPLAY)" in problem
    assert "p2psync run --folder DIR" in problem
    assert qtcheck._display_problem("not a display") is not None


def test_a_display_that_answers_is_no_problem(tmp_path):
    if shutil.which("Xvfb") is None:
        pytest.skip("needs Xvfb")
    number = FREE_DISPLAY + 1
    server = subprocess.Popen(["Xvfb", f":{number}", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(f"/tmp/.X11-unix/X{number}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert qtcheck._display_problem(f":{number}") is None
    finally:
        server.terminate()
        server.wait(10)
