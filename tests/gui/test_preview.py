"""The app's Preview: what Sync now would do, per device, in a dialog; then Sync now does it.

The window's engine (device "laptop", paused so that nothing is fetched behind the
preview's back) shares a folder with a real `p2psync run` (B) on loopback.
"""

from __future__ import annotations

from app.core.model import BLOCK_SIZE
from app.engine.preview import Preview, Step, Totals
from app.gui.preview import HEADERS, ROWS_SHOWN, PreviewResult, StepsModel, collect
from tests.gui.test_app import WAIT, click, make_window, run_node, started, states, write  # noqa: F401,E501
from tests.procs import tree

KEY = "preview-key"


def table(dialog) -> list[list[str]]:
    m = dialog.model
    return [[m.index(r, c).data() or "" for c in range(len(HEADERS))]
            for r in range(m.rowCount())]


def test_preview_lists_what_sync_now_then_does(qtbot, tmp_path, make_window,  # noqa: F811
                                               run_node):  # noqa: F811
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir()
    w = make_window(folder=a, secret=KEY)
    address = started(qtbot, w)
    click(qtbot, w.pause_button)  # nothing comes in until the preview was seen
    write(b / "notes/todo.txt", "buy milk\n")
    write(b / "big.bin", "x" * (3 * BLOCK_SIZE))
    node = run_node("B", "--peer", address, secret=KEY)
    qtbot.waitUntil(lambda: {"notes/todo.txt", "big.bin"} <= set(states(w)), timeout=WAIT)

    click(qtbot, w.preview_button)
    dialog = w.preview_dialog
    assert dialog.isVisible()
    qtbot.waitUntil(lambda: dialog.model.rowCount() == 3, timeout=WAIT)
    b_name = next(n for n in dialog.model._names.values() if n.startswith("B ("))
    assert sorted(table(dialog)) == [
        ["Fetch", "big.bin", b_name, "384 KB", ""],
        ["Fetch", "notes/todo.txt", b_name, "9 B", ""],
        ["New folder", "notes", b_name, "", ""],
    ]
    assert dialog.totals.text() == (f"<b>{b_name}: 2 fetch, 1 new folder — 384 KB over the "
                                    "network</b>")
    assert tree(a) == {}  # the preview changed nothing

    click(qtbot, dialog.sync_button)  # closes it and syncs; resuming lets the files in
    assert not dialog.isVisible()
    click(qtbot, w.pause_button)
    qtbot.waitUntil(lambda: tree(a) == tree(b), timeout=WAIT)
    assert set(tree(a)) == {"notes", "notes/todo.txt", "big.bin"}, node.log()


def test_a_large_preview_keeps_its_totals_and_a_bounded_table():
    class Many(Preview):
        def __init__(self) -> None:
            self.folder, self.peers, self.held, self.held_on_peer = None, [], None, {}
            self.totals = {"DEV": Totals()}

        def _all_steps(self):
            for i in range(ROWS_SHOWN + 5):
                yield Step(f"f{i}", "fetch", "DEV", 10)

    result = collect(Many(), lambda d: "desk (DEV)")
    assert isinstance(result, PreviewResult)
    assert len(result.steps) == ROWS_SHOWN and result.count == ROWS_SHOWN + 5
    assert result.totals == [f"desk (DEV): {ROWS_SHOWN + 5:,} fetch — 97.7 KB over the network"]
    model = StepsModel()
    model.set_steps(result.steps, result.names)
    assert model.rowCount() == ROWS_SHOWN
    assert model.index(0, 2).data() == "desk (DEV)"


def test_a_preview_that_fails_says_so_in_the_dialog(qtbot, tmp_path, make_window,  # noqa: F811
                                                     monkeypatch):
    import sqlite3

    import app.gui.worker

    async def broken(node):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(app.gui.worker, "live_preview", broken)  # a disk that fails reads
    (tmp_path / "A").mkdir()
    w = make_window(folder=tmp_path / "A", secret=KEY)
    started(qtbot, w)
    click(qtbot, w.preview_button)
    dialog = w.preview_dialog
    qtbot.waitUntil(lambda: dialog.totals.text() == "The preview failed: disk I/O error",
                    timeout=WAIT)
    assert dialog.model.rowCount() == 0 and dialog.sync_button.isEnabled()
