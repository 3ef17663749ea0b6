"""--name applies from the very first start, and the window names devices, not IDs."""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog

from tests.gui.test_app import WAIT, click, make_window, me_row, started  # noqa: F401
from tests.procs import SECRET, live_node, start_run


def test_name_from_the_command_line_on_the_first_start(qtbot, tmp_path, make_window,  # noqa: F811
                                                       monkeypatch):
    folder = tmp_path / "A"
    folder.mkdir()
    w = make_window(name="laptop-A")  # a first start: no folder, no key yet
    assert w.setup_page.name_edit.text() == "laptop-A"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        staticmethod(lambda *a, **k: str(folder)))
    click(qtbot, w.setup_page.choose_button)
    w.setup_page.key_edit.setText(SECRET)
    click(qtbot, w.setup_page.join_button)
    listen = started(qtbot, w)
    b = start_run(tmp_path / "B", tmp_path / "cfgB", "--name", "desktop", "--peer", listen)
    try:
        qtbot.waitUntil(lambda: any(p["name"] == "desktop" and p["state"] == "connected"
                                    for p in w.peers_model.peers()), timeout=WAIT)
        assert me_row(w)["name"] == "laptop-A"
        assert [p["name"] for p in live_node(b)["peers"]] == ["laptop-A"]  # as B sees it
        assert "laptop-A: " in w.subtitle.text()
        # the activity line comes by its own signal (`activity`), not with the peer list
        qtbot.waitUntil(lambda: any(t.startswith("desktop joined at ")
                                    for t in w.activity.lines), timeout=WAIT)
        # names, never IDs, in what the window says
        b_id = next(p["device_id"] for p in w.peers_model.peers() if p["name"] == "desktop")
        texts = [w.subtitle.text(), w.progress_label.text(), w.files_count.text(),
                 *w.activity.lines]
        assert not [t for t in texts if b_id[:7] in t], texts
    finally:
        assert b.stop() == 0, b.log()
