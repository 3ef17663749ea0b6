"""Settings and About, on the real window with its real engine (offscreen: no tray).

Start at login writes a real XDG autostart entry, under a temp XDG_CONFIG_HOME; its
Exec line is run to show that it starts this app."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QDialogButtonBox, QSystemTrayIcon

from app import __version__
from app.engine.config import Config
from tests.gui.test_app import WAIT, make_window, me_row, started  # noqa: F401
from tests.procs import SECRET, env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_settings(qtbot, w, fill) -> None:
    """Open File → Settings…, let `fill` change the dialog, press OK."""
    def go() -> None:
        d = w._settings_dialog
        fill(d)
        d.buttons.button(QDialogButtonBox.StandardButton.Ok).click()

    QTimer.singleShot(200, go)
    w.settings_action.trigger()


def test_settings_apply_at_once_and_are_stored(qtbot, tmp_path, make_window,  # noqa: F811
                                               monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    folder = tmp_path / "A"
    folder.mkdir()
    w = make_window(folder, secret=SECRET, name=None)
    started(qtbot, w)
    port = free_port()

    def fill(d) -> None:
        assert d.name.text() == w.config.device_name()
        assert not d.tray.isEnabled() and "no tray" in d.tray.text()  # offscreen: none
        d.name.setText("studio")
        d.port.setValue(port)
        d.days.setValue(7)
        d.login.setChecked(True)

    in_settings(qtbot, w, fill)
    # the engine reconnects with the new name and port
    qtbot.waitUntil(lambda: w.info.get("listen") == f"127.0.0.1:{port}", timeout=WAIT)
    qtbot.waitUntil(lambda: me_row(w).get("name") == "studio", timeout=WAIT)
    assert "studio: " in w.subtitle.text()
    stored = json.loads((w.config.dir / "settings.json").read_text())
    assert stored["device_name"] == "studio" and stored["versions_days"] == 7
    assert stored["app"] == {"listen_port": port, "discovery": True, "close_to_tray": False}
    assert Config(w.config.dir).versions_days() == 7  # what the engine prunes by
    assert SECRET in json.dumps(stored["folders"])  # the share key is still there

    entry = tmp_path / "xdg" / "autostart" / "p2psync.desktop"
    text = entry.read_text()
    assert "[Desktop Entry]" in text and "X-GNOME-Autostart-enabled=true" in text
    command = shlex.split(next(x for x in text.splitlines() if x.startswith("Exec="))[5:])
    assert command[-3:] == ["gui", "--config-dir", str(w.config.dir)]
    r = subprocess.run([*command, "--help"], capture_output=True, text=True, env=env(),
                       timeout=60)
    assert r.returncode == 0 and "usage: p2psync gui" in r.stdout, r.stderr

    in_settings(qtbot, w, lambda d: d.login.setChecked(False))
    assert not entry.exists()


def test_close_to_tray_only_where_a_tray_is(qtbot, tmp_path, make_window):  # noqa: F811
    folder = tmp_path / "A"
    folder.mkdir()
    w = make_window(folder, secret=SECRET)
    started(qtbot, w)
    w.config.update(lambda s: s.setdefault("app", {}).update(close_to_tray=True))
    # a tray, as a desktop with one has it: closing hides the window, syncing goes on
    w.tray.icon = QSystemTrayIcon(w)
    w.close()
    assert not w.isVisible() and w.worker is not None and w.worker.is_running()
    w.quit()  # File → Quit, the tray's Quit, Ctrl+C: really quits
    qtbot.waitUntil(lambda: w.worker is None, timeout=WAIT)

    # no tray (offscreen, a bare X server): closing quits whatever the setting says
    w2 = make_window(folder, secret=SECRET, config=tmp_path / "cfg-2")
    started(qtbot, w2)
    w2.config.update(lambda s: s.setdefault("app", {}).update(close_to_tray=True))
    assert not w2.tray.available
    w2.close()
    qtbot.waitUntil(lambda: w2.worker is None, timeout=WAIT)


def test_about_says_version_licence_and_where_things_live(qtbot, tmp_path,
                                                          make_window):  # noqa: F811
    folder = tmp_path / "A"
    folder.mkdir()
    w = make_window(folder, secret=SECRET)
    started(qtbot, w)
    w.about_action.trigger()
    about = w._about_dialog
    assert about.isVisible()
    assert about.rows["Licence"] == "MIT licence"
    assert about.rows["Settings and keys"] == str(w.config.dir)
    assert about.rows["Log file"] == str(tmp_path / "p2psync.log")
    assert about.rows["This device"].startswith("laptop (device ID ")
    assert about.title.text() == f"<h2>p2psync {__version__}</h2>"
    about.close()
