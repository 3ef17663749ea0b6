"""A join with a mistyped share key says so in the window, and the key can be typed again
there (no "Share another folder…", no folder chosen anew).

Two ways a wrong key shows: a device we were told of (`--peer`) refuses it, which is
said at once; or, with LAN discovery (keyed by the share key), nobody is found at all,
which is said after JOIN_PATIENCE seconds (shortened here)."""

from __future__ import annotations

import socket

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QDialogButtonBox, QFileDialog

import app.gui.window
from tests.gui.test_app import WAIT, click, make_window, write  # noqa: F401
from tests.procs import SECRET, start_run

TYPO = SECRET.replace("HARE7", "HARE1")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join(qtbot, w, folder, key: str, monkeypatch) -> None:
    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        staticmethod(lambda *a, **k: str(folder)))
    click(qtbot, w.setup_page.choose_button)
    w.setup_page.key_edit.setText(key)
    click(qtbot, w.setup_page.join_button)


def retype(qtbot, w, key: str) -> None:
    """Click the banner's button and type the key into the dialog it opens."""
    def type_it() -> None:
        dialog = w._rekey_dialog
        dialog.edit.setText(key)
        dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()

    QTimer.singleShot(200, type_it)
    assert w.banner_button.text() == "Type the key again…"
    click(qtbot, w.banner_button)


def test_a_device_that_refuses_the_key_is_named_at_once(qtbot, tmp_path, make_window,  # noqa: F811
                                                        monkeypatch):
    b = start_run(tmp_path / "B", tmp_path / "cfgB", "--name", "desktop")
    write(tmp_path / "B" / "hello.txt", "hi from desktop\n")
    folder = tmp_path / "A"
    folder.mkdir()
    w = make_window(name=None, peers=[("127.0.0.1", b.port)])
    try:
        join(qtbot, w, folder, TYPO, monkeypatch)
        qtbot.waitUntil(lambda: w.banner.isVisible(), timeout=WAIT)
        text = w.banner_text.text()
        assert f"The device at {b.address} refuses this share key" in text, text
        assert w.banner_button.isVisible()
        b.wait_for_log(r"refused a connection from (\S+ at )?127\.0\.0\.1")  # the other side too
        # the devices view names that address and why, in full
        def row() -> dict:
            return next((p for p in w.peers_model.peers() if p["address"] == b.address), {})

        qtbot.waitUntil(lambda: row().get("state") == "refused", timeout=WAIT)
        assert "share key" in row()["reason"]  # "refused by desktop at ...: wrong share key"

        retype(qtbot, w, SECRET)
        qtbot.waitUntil(lambda: w.files_model.state_of("hello.txt") == "synced", timeout=WAIT)
        assert (folder / "hello.txt").read_text() == "hi from desktop\n"
        assert not w.banner.isVisible()
        assert w.config.share_key(folder.resolve()) == SECRET
        # the join is over at the first status that says a device was met (status and
        # file states are separate signals: the file may be shown synced just before)
        qtbot.waitUntil(lambda: w.settings.value("share/joining", "", str) == "", timeout=WAIT)
    finally:
        assert b.stop() == 0, b.log()


def test_finding_nobody_says_so_and_the_right_key_finds_the_share(qtbot, tmp_path,
                                                                   make_window,  # noqa: F811
                                                                   monkeypatch):
    monkeypatch.setattr(app.gui.window, "JOIN_PATIENCE", 2.0)
    port = free_udp_port()
    b = start_run(tmp_path / "B", tmp_path / "cfgB", "--name", "desktop",
                  "--discovery-port", str(port), discovery=True)
    write(tmp_path / "B" / "hello.txt", "hi from desktop\n")
    folder = tmp_path / "A"
    folder.mkdir()
    w = make_window(name=None, discovery=True, discovery_port=port)
    try:
        join(qtbot, w, folder, TYPO, monkeypatch)
        # first the other key nearby, then (after the patience) the question with its button
        qtbot.waitUntil(lambda: "No device of this share found in 2 s"
                        in w.banner_text.text(), timeout=WAIT)
        assert "1 device nearby uses a different key" in w.banner_text.text()
        assert w.banner_button.text() == "Type the key again…"
        assert w.files_model.state_of("hello.txt") is None

        retype(qtbot, w, SECRET)
        qtbot.waitUntil(lambda: w.files_model.state_of("hello.txt") == "synced", timeout=WAIT)
        assert not w.banner.isVisible()
    finally:
        assert b.stop() == 0, b.log()


def test_a_new_share_waits_without_a_word():
    """Starting a share is no join: meeting nobody for a while is normal there."""
    from app.gui.joincheck import join_problem

    assert join_problem({"ever_connected": True, "refused_us": ["h:1"]}, 999) is None
    assert join_problem({}, 5, patience=20) is None
    assert "No device of this share found in 20 s" in join_problem({}, 20, patience=20)
    two = join_problem({"refused_us": ["a:1", "b:2"]}, 0)
    assert two.startswith("The devices at a:1 and b:2 refuse this share key")
