"""An ignore file that now ignores more is shown in the app's activity list.

The window's engine (device "laptop") shares a folder with a real `p2psync run` (B)
on loopback; B's user writes `*` into .p2psyncignore. The app must say so, naming B,
and the file table must show the files as ignored, saying by which pattern.
"""

from __future__ import annotations

from PySide6.QtCore import Qt

from app.core.states import IGNORED
from tests.gui.test_app import WAIT, shown_state, started, write
from tests.gui.test_mass_delete import device_b, window  # noqa: F401 - fixtures (and key)


def test_a_peers_ignore_everything_is_an_activity_line(qtbot, tmp_path, window,  # noqa: F811
                                                       device_b):  # noqa: F811
    a, b = tmp_path / "A", tmp_path / "B"
    for i in range(10):
        write(a / f"notes/{i}.txt", f"note {i}\n")
    w = window()
    node_b = device_b(started(qtbot, w))
    qtbot.waitUntil(lambda: (b / "notes" / "9.txt").exists(), timeout=WAIT)

    (b / ".p2psyncignore").write_text("*\n")
    qtbot.waitUntil(lambda: any("ignore file now ignores" in line
                                for line in w.activity.lines), timeout=WAIT)
    [line] = [t for t in w.activity.lines if "ignore file now ignores" in t]
    assert line.startswith("B (") and "'s ignore file now ignores 10 of 11 files (before: 0)" \
        in line, line
    m = w.files_model
    qtbot.waitUntil(lambda: m.state_of("notes/3.txt") == IGNORED, timeout=WAIT)
    assert shown_state(w, "notes/3.txt") == "Ignored"
    tip = m.index(m.row_of("notes/3.txt"), 3).data(Qt.ItemDataRole.ToolTipRole)
    assert tip == "ignored by `*` in .p2psyncignore", tip
    assert node_b.proc.poll() is None
