"""The app asks before a mass deletion: "Keep them" brings the files back, "Delete them" deletes.

The window's engine (device "laptop") shares a folder with a real `p2psync run` (B) on
loopback; B moves a directory of 20 of the 31 files out of its folder, which the
window's engine holds back and asks about.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox, QTextEdit

from app.engine.config import Config
from app.gui.massdelete import texts
from app.gui.window import LaunchOptions, MainWindow
from tests.gui.test_app import WAIT, click, close_and_wait, started, write
from tests.procs import start_run

KEY = "mass-delete-key"
DOCS = [f"docs/f{i:02}.txt" for i in range(20)]


@pytest.fixture
def window(qtbot, tmp_path):
    """The app on tmp_path/A, made once the files are in place; always closed."""
    made: list[MainWindow] = []

    def make() -> MainWindow:
        made.append(MainWindow(LaunchOptions(
            config=Config(tmp_path / "cfg-gui"), folder=tmp_path / "A", secret=KEY,
            name="laptop", listen=("127.0.0.1", 0), discovery=False)))
        made[-1].show()
        return made[-1]

    yield make
    for w in made:
        close_and_wait(qtbot, w)
        w.deleteLater()


@pytest.fixture
def device_b(request, tmp_path):
    """B's `run`, logging what it scans (a failing test's report carries its log)."""
    nodes = request.node.run_nodes = []

    def start(peer: str):
        nodes.append(start_run(tmp_path / "B", tmp_path / "cfgB", "--name", "B", "-v",
                               "--peer", peer, secret=KEY))
        return nodes[-1]

    yield start
    for node in nodes:
        assert node.stop() == 0, node.log()


def files(folder: Path) -> set[str]:
    """Names only (no reads): the engine may be deleting them meanwhile."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(folder):
        if dirpath == str(folder):
            dirnames[:] = [d for d in dirnames if d != ".p2psync"]
        out.update(os.path.relpath(os.path.join(dirpath, f), folder) for f in filenames)
    return out


def test_texts_of_the_question():
    held = {"reason": "threshold", "deletes": 200, "of": 300,
            "devices": [{"device_id": "X", "name": "desk (ABCDEFG)", "deletes": 200}]}
    question, info = texts(held)
    assert question == "<b>200 of 300 files</b> were deleted on desk (ABCDEFG)."
    assert "come back to the other devices" in info
    question, _ = texts({**held, "reason": "unmounted"})
    assert "unmounted or emptied" in question and "200 of 300 files" in question


def test_dialog_keep_brings_them_back_and_delete_deletes(qtbot, tmp_path, window, device_b,
                                                        caplog):
    caplog.set_level(logging.DEBUG, logger="app")  # the window's engine, in a failure's report
    a, b = tmp_path / "A", tmp_path / "B"
    for rel in [*DOCS, *(f"f{i:02}.txt" for i in range(11))]:
        write(a / rel, f"content of {rel}\n")
    everything = files(a)
    w = window()
    dialog = w.mass_delete_dialog
    node_b = device_b(started(qtbot, w))
    qtbot.waitUntil(lambda: files(b) == everything, timeout=WAIT)

    # B loses the directory (one move: one scan records all 20 deletions); we are asked
    os.rename(b / "docs", tmp_path / "trash1")
    qtbot.waitUntil(dialog.isVisible, timeout=WAIT)
    assert "20 of 31 files" in dialog.text() and "B (" in dialog.text()
    assert files(a) == everything  # nothing deleted while the question waits
    # which files: under "Show Details…", one a line (the directory too: under load its
    # deletion can be planned a round after its files', and the dialog is told again)
    qtbot.waitUntil(lambda: dialog.detailedText().splitlines() == ["docs", *DOCS],
                    timeout=WAIT)
    show = next(x for x in dialog.buttons()
                if dialog.buttonRole(x) == QMessageBox.ButtonRole.ActionRole)
    click(qtbot, show)
    listed = dialog.findChild(QTextEdit)
    qtbot.waitUntil(listed.isVisible, timeout=WAIT)
    assert listed.toPlainText().splitlines() == ["docs", *DOCS]
    click(qtbot, dialog.keep_button)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT)
    # our copies win: B fetches them back
    qtbot.waitUntil(lambda: files(b) == everything, timeout=WAIT)
    assert files(a) == everything
    # (its own signal: under load the check of B's files can outlast its delivery)
    qtbot.waitUntil(lambda: any("Kept 20 files" in line for line in w.activity.lines),
                    timeout=WAIT)

    # B deletes them again; this time we confirm
    os.rename(b / "docs", tmp_path / "trash2")
    qtbot.waitUntil(dialog.isVisible, timeout=WAIT)
    click(qtbot, dialog.delete_button)
    qtbot.waitUntil(lambda: files(a) == everything - set(DOCS), timeout=WAIT)
    qtbot.waitUntil(lambda: not (a / "docs").exists(), timeout=WAIT)  # the dir goes last
    assert len(list((a / ".p2psync" / "versions" / "docs").iterdir())) == 20
    qtbot.waitUntil(lambda: w.held is None, timeout=WAIT)
    assert files(b) == files(a), node_b.log()
