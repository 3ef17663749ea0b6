"""The details pane and the rows' tooltips say why a file is (not) synced, in the app as
a user meets it: a real engine in the window, a second device as a real `run` process.

The window's folder holds a FIFO where the other device has a file (an error that says
what to do), a file both have (synced, with its history), and then, once the other
device is gone, a change of ours that waits for it (it is offline since it left).
"""

from __future__ import annotations

import os
import re

from PySide6.QtCore import Qt

from tests.gui.test_app import WAIT, make_window, run_node, started, write  # noqa: F401 F811

FIFO = "cannot be written here: a FIFO (named pipe) is in the way; remove or rename it"


def select(qtbot, w, path: str) -> None:
    qtbot.waitUntil(lambda: w.files_model.row_of(path) >= 0, timeout=WAIT)
    w.files_view.setCurrentIndex(w.files_model.index(w.files_model.row_of(path), 0))
    qtbot.waitUntil(lambda: w.details.path == path and w.details.why.isVisibleTo(w.details),
                    timeout=WAIT)


def tooltip(w, path: str) -> str:
    return w.files_model.index(w.files_model.row_of(path), 2).data(
        Qt.ItemDataRole.ToolTipRole)


def test_the_details_pane_and_the_tooltips_say_why(qtbot, tmp_path, make_window, run_node):  # noqa: F811
    folder = tmp_path / "A"
    folder.mkdir()
    os.mkfifo(folder / "pipe")
    write(folder / "mine.txt", "mine")
    write(tmp_path / "B" / "pipe", "a file where the window's folder has a FIFO")
    write(tmp_path / "B" / "notes.txt", "their notes")
    w = make_window(folder, secret="shared-key")
    pane = w.details
    assert not pane.why.isVisibleTo(pane)  # nothing selected: a hint, no empty fields
    listen = started(qtbot, w)
    b = run_node("B", "--peer", listen, secret="shared-key")

    qtbot.waitUntil(lambda: w.files_model.state_of("notes.txt") == "synced"
                    and w.files_model.state_of("pipe") == "error", timeout=WAIT)
    select(qtbot, w, "notes.txt")
    assert pane.title.text() == "notes.txt"
    assert pane.state_label.text() == "Synced"
    assert pane.why.text() == "In sync with the other devices."
    history = pane.history.text()
    assert re.search(r"last changed by B, \d\d:\d\d", history), history
    assert "B has this same version" in history

    select(qtbot, w, "pipe")
    qtbot.waitUntil(lambda: pane.why.text() == FIFO, timeout=WAIT)
    assert pane.state_label.text() == "Error"
    assert tooltip(w, "pipe") == f"pipe\n{FIFO}"
    assert "B has another version" in pane.history.text()

    # the other device leaves; our change waits for it, and says since when
    assert b.stop() == 0, b.log()
    qtbot.waitUntil(lambda: not any(p["state"] == "connected" for p in w.peers_model.peers()
                                    if not p.get("self")), timeout=WAIT)
    select(qtbot, w, "mine.txt")
    write(folder / "mine.txt", "mine, changed while B is away")
    offline = re.compile(r"changed here; no device of the share is connected to fetch it "
                         r"\(B, which is offline since \d\d:\d\d\)")
    qtbot.waitUntil(lambda: w.files_model.state_of("mine.txt") == "local_change", timeout=WAIT)
    qtbot.waitUntil(lambda: bool(offline.fullmatch(pane.why.text())), timeout=WAIT)
    assert pane.state_label.text() == "Local change"
    assert offline.fullmatch(tooltip(w, "mine.txt").partition("\n")[2])
