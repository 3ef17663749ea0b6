"""Assets are found one way (app.resources) and load; the Qt-free parts stay Qt-free."""

from __future__ import annotations

import subprocess
import sys

from PySide6.QtGui import QIcon

from app import resources
from app.gui.models import state_icon
from app.gui.window import app_icon
from tests.procs import REPO


def test_icons_exist_at_several_sizes_and_load():
    sizes = [int(p.stem.split("-")[1]) for p in resources.app_icon_files()]
    assert sizes == sorted(sizes) and {16, 32, 256} <= set(sizes)
    assert not app_icon().isNull()
    for name in ("synced", "local_change", "remote_change", "conflict", "error", "ignored",
                 "peer_online", "peer_offline", "peer_connecting", "this_device"):
        files = resources.state_icon_files(name)
        assert [f.suffix for f in files] == [".png"] * 3, name
        icon = state_icon(name)
        assert isinstance(icon, QIcon) and not icon.isNull()
        assert icon.pixmap(32, 32).width() == 32


def test_conflict_resolution_and_resources_import_no_qt():
    code = ("import sys, app.core.conflicts, app.core.states, app.resources;"
            "assert not [m for m in sys.modules if m.startswith('PySide6')], 'Qt imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
