"""The desktop app as a user meets it: real widgets (offscreen), a real engine in the
window's worker thread, and a second device as a real `p2psync run` process on loopback.

The window's node listens on 127.0.0.1 (any free port), with LAN discovery off; the
run process is given the window's address with --peer. Every wait is a
qtbot.waitUntil on what the window shows (or on the disk), never a fixed sleep.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog

from app.core.conflicts import parse
from app.engine.config import Config
from app.gui.window import LaunchOptions, MainWindow
from tests.procs import env, p2psync_cmd, start_run, tree

KEY_RX = re.compile(r"^[A-Z2-9]{6}(-[A-Z2-9]{6}){3}$")
WAIT = 30_000  # ms; generous: CI machines are slow, and nothing here sleeps


def click(qtbot, widget) -> None:
    assert widget.isEnabled(), f"{widget.objectName()} is disabled"
    qtbot.mouseClick(widget, Qt.MouseButton.LeftButton)


def write(path: Path, text: str, mtime: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


@pytest.fixture
def make_window(qtbot, tmp_path):
    """A MainWindow on a config dir of its own; always closed, its engine always stopped."""
    windows: list[MainWindow] = []

    def make(folder: Path | None = None, secret: str | None = None, name: str | None = "laptop",
             config: Path | None = None, **options) -> MainWindow:
        opts = LaunchOptions(config=Config(config or tmp_path / "cfg-gui"), folder=folder,
                             secret=secret, name=name, **{
                                 "listen": ("127.0.0.1", 0), "discovery": False,
                                 "log_file": tmp_path / "p2psync.log", **options})
        w = MainWindow(opts)
        # not qtbot.addWidget: pytest-qt would delete the window before this fixture
        # has waited for the engine thread to end
        w.show()
        windows.append(w)
        return w

    yield make
    for w in windows:
        close_and_wait(qtbot, w)
        w.deleteLater()


def close_and_wait(qtbot, w: MainWindow) -> None:
    worker = w.worker
    w.close()
    if worker is not None:
        qtbot.waitUntil(lambda: not worker.is_running(), timeout=WAIT)
        qtbot.waitUntil(lambda: w.worker is None, timeout=WAIT)


@pytest.fixture
def run_node(tmp_path):
    nodes = []

    def start(name: str, *extra: str, secret: str):
        node = start_run(tmp_path / name, tmp_path / f"cfg{name}", "--name", name, *extra,
                         secret=secret)
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        assert node.stop() == 0, node.log()


def started(qtbot, w: MainWindow) -> str:
    """Waits for the engine to listen; returns its HOST:PORT."""
    qtbot.waitUntil(lambda: bool(w.info), timeout=WAIT)
    return w.info["listen"]


def peer_row(w: MainWindow, name: str) -> dict | None:
    return next((p for p in w.peers_model.peers() if p["name"] == name), None)


def me_row(w: MainWindow) -> dict:
    return next((p for p in w.peers_model.peers() if p.get("self")), {})


def states(w: MainWindow) -> dict[str, str]:
    m = w.files_model
    return {p: m.state_of(p) for p in m.all_paths()}


def shown_state(w: MainWindow, path: str) -> str:
    """The state as the table shows it (its text), or "" when the row is not shown."""
    row = w.files_model.row_of(path)
    return "" if row < 0 else w.files_model.index(row, 3).data()


def engine_threads(before: set[threading.Thread]) -> list[str]:
    """Python threads started since `before` that still run (the run node's pipe readers
    excepted); the QThread itself is checked through QThread.isRunning."""
    return [t.name for t in threading.enumerate()
            if t not in before and t.is_alive() and not isinstance(t, threading._DummyThread)
            and "_pump" not in t.name]


# --- the whole first session -------------------------------------------------------------
def test_first_start_share_peer_sync_touch_and_close(qtbot, tmp_path, make_window, run_node,
                                                     monkeypatch):
    threads_before = set(threading.enumerate())
    folder = tmp_path / "A"
    write(folder / "notes.txt", "my notes\n")
    write(folder / "photos/cat.jpg", "not really a cat\n")
    write(tmp_path / "B" / "from-b.txt", "made on B\n")

    # first start: a friendly empty state that says what to do
    w = make_window(name=None)
    assert w.pages.currentWidget() is w.setup_page
    assert not w.setup_page.new_button.isEnabled()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        staticmethod(lambda *a, **k: str(folder)))
    click(qtbot, w.setup_page.choose_button)
    assert w.setup_page.folder_label.text() == str(folder)
    w.setup_page.name_edit.setText("my laptop")

    # start a new share: the key is shown, with a copy button
    click(qtbot, w.setup_page.new_button)
    key = w.setup_page.key_panel.key_label.text()
    assert KEY_RX.match(key), key
    click(qtbot, w.setup_page.key_panel.copy_button)
    assert QGuiApplication.clipboard().text() == key
    click(qtbot, w.setup_page.open_button)
    assert w.pages.currentIndex() == 1
    listen = started(qtbot, w)
    assert w.config.share_key(folder.resolve()) == key
    assert w.config.device_name() == "my laptop"
    qtbot.waitUntil(lambda: set(states(w)) == {"notes.txt", "photos/cat.jpg"}, timeout=WAIT)

    # a second device joins: the peers view shows it, with its role
    b = run_node("B", "--peer", listen, secret=key)

    def roles_settled() -> bool:
        row = peer_row(w, "B")
        return (row is not None and row["state"] == "connected"
                and {row["role"], me_row(w).get("role")} == {"server", "client"})

    qtbot.waitUntil(roles_settled, timeout=WAIT)
    row = w.peers_model.index(w.peers_model.peers().index(peer_row(w, "B")),
                              w.peers_model.COL_ROLE)
    assert row.data() in ("server", "client")
    assert me_row(w)["name"] == "my laptop"
    # `p2psync status` asks the window's node, like a `run` node, over the control socket
    report = json.loads(subprocess.run(
        p2psync_cmd("status", "--folder", str(folder), "--config-dir", str(w.config.dir),
                    "--json"), capture_output=True, text=True, env=env(), check=True,
        timeout=60).stdout)
    assert report["node"]["role"] == me_row(w)["role"]
    assert [p["name"] for p in report["node"]["peers"]] == ["B"]

    # pause and resume
    click(qtbot, w.pause_button)
    qtbot.waitUntil(lambda: w.status.get("paused") is True, timeout=WAIT)
    assert w.pause_button.text() == "Resume"
    click(qtbot, w.pause_button)
    qtbot.waitUntil(lambda: w.status.get("paused") is False, timeout=WAIT)

    # Sync now: every file of both devices reaches "synced" in the table
    click(qtbot, w.sync_button)
    want = {"notes.txt", "photos/cat.jpg", "from-b.txt"}
    qtbot.waitUntil(lambda: states(w) == dict.fromkeys(want, "synced"), timeout=WAIT)
    assert all(shown_state(w, p) == "Synced" for p in want)
    assert tree(folder) == tree(b.folder)
    qtbot.waitUntil(lambda: "Up to date" in w.progress_label.text(), timeout=WAIT)
    qtbot.waitUntil(lambda: any("B joined" in line for line in w.activity.lines),
                    timeout=WAIT)
    qtbot.waitUntil(lambda: any("Received from-b.txt" in line for line in w.activity.lines),
                    timeout=WAIT)

    # touch a file on disk: its row changes, and syncs again without any click
    b.stop()
    qtbot.waitUntil(lambda: peer_row(w, "B") is None or peer_row(w, "B")["state"] != "connected",
                    timeout=WAIT)
    qtbot.waitUntil(lambda: any("B left" in line for line in w.activity.lines), timeout=WAIT)
    write(folder / "notes.txt", "my notes, longer now\n")
    size = (folder / "notes.txt").stat().st_size
    qtbot.waitUntil(lambda: w.files_model.get("notes.txt")[1] == size
                    and shown_state(w, "notes.txt") == "Local change", timeout=WAIT)
    b2 = run_node("B", "--peer", listen, secret=key)
    qtbot.waitUntil(lambda: shown_state(w, "notes.txt") == "Synced", timeout=WAIT)
    qtbot.waitUntil(lambda: (b2.folder / "notes.txt").read_text() == "my notes, longer now\n",
                    timeout=WAIT)

    # closing the window stops the engine and its thread
    worker = w.worker
    close_and_wait(qtbot, w)
    assert worker.thread_object.isFinished()
    qtbot.waitUntil(lambda: engine_threads(threads_before) == [], timeout=WAIT)


# --- conflicts ---------------------------------------------------------------------------
def test_conflict_is_listed_and_keep_both_works(qtbot, tmp_path, make_window, run_node):
    folder = tmp_path / "A"
    hour_ago = time.time() - 3600
    write(folder / "plan.txt", "line 1\nmy version\n", hour_ago)  # older: loses the name
    write(tmp_path / "B" / "plan.txt", "line 1\ntheir version\n")
    w = make_window(folder, secret="shared-key")
    listen = started(qtbot, w)
    b = run_node("B", "--peer", listen, secret="shared-key")

    panel = w.conflicts_panel
    qtbot.waitUntil(lambda: panel.list.count() == 1, timeout=WAIT)
    copy = panel.current_copy()
    c = parse(copy)
    assert c is not None and c.original == "plan.txt"
    assert w.tabs.tabText(1) == "Conflicts (1)"
    assert w.files_model.state_of(copy) == "conflict"
    qtbot.waitUntil(lambda: any("Conflict on plan.txt" in line for line in w.activity.lines),
                    timeout=WAIT)
    # both versions side by side, each with whose it is and when it was made
    qtbot.waitUntil(lambda: "their version" in panel.this_text.toPlainText()
                    and "my version" in panel.other_text.toPlainText(), timeout=WAIT)
    qtbot.waitUntil(lambda: "B's version" in panel.this_head.text(), timeout=WAIT)
    assert re.fullmatch(r"<b>In place</b>: B's version · \d{4}-\d\d-\d\d \d\d:\d\d",
                        panel.this_head.text())
    assert panel.other_head.text() == ("<b>Conflict copy</b>: laptop's version · "
                                       + time.strftime("%Y-%m-%d %H:%M",
                                                       time.localtime(hour_ago)))
    assert (panel.keep_this.text(), panel.keep_other.text()) == (
        "Keep B's version", "Keep laptop's version")

    click(qtbot, panel.keep_both)
    kept = c.both_name
    assert re.fullmatch(r"plan \(conflict [A-Z2-7]{7} \d{4}-\d\d-\d\d \d{6}\)\.txt", kept)
    qtbot.waitUntil(lambda: (folder / kept).exists() and not (folder / copy).exists(),
                    timeout=WAIT)
    qtbot.waitUntil(lambda: panel.list.count() == 0, timeout=WAIT)
    assert w.tabs.tabText(1) == "Conflicts"
    # what was done stays in sight, also once the conflict has left the list
    assert panel.result.isVisibleTo(panel)
    assert panel.result.text() == (f"Kept both versions of plan.txt: laptop's version is now "
                                   f"{kept}")
    qtbot.waitUntil(lambda: w.files_model.state_of(kept) == "synced"
                    and w.files_model.state_of("plan.txt") == "synced"
                    and w.files_model.state_of(copy) is None, timeout=WAIT)
    # the other device follows: both versions kept there too, under the ordinary name
    qtbot.waitUntil(lambda: (b.folder / kept).exists() and not (b.folder / copy).exists(),
                    timeout=WAIT)
    assert (b.folder / kept).read_text() == "line 1\nmy version\n"
    assert (b.folder / "plan.txt").read_text() == "line 1\ntheir version\n"


# --- joining, and what the next start remembers ------------------------------------------
def test_join_with_a_pasted_key_and_next_start_remembers(qtbot, tmp_path, make_window, run_node,
                                                         monkeypatch):
    folder = tmp_path / "A"
    folder.mkdir()
    write(tmp_path / "B" / "hello.txt", "hi from B\n")
    w = make_window(name=None)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        staticmethod(lambda *a, **k: str(folder)))
    click(qtbot, w.setup_page.choose_button)
    w.setup_page.name_edit.setText("kitchen pc")
    assert not w.setup_page.join_button.isEnabled()
    w.setup_page.key_edit.setText("the-key-from-B")  # pasted
    click(qtbot, w.setup_page.join_button)
    listen = started(qtbot, w)
    run_node("B", "--peer", listen, secret="the-key-from-B")
    qtbot.waitUntil(lambda: w.files_model.state_of("hello.txt") == "synced", timeout=WAIT)
    assert (folder / "hello.txt").read_text() == "hi from B\n"
    w.resize(760, 560)
    close_and_wait(qtbot, w)

    config = Config(tmp_path / "cfg-gui")
    assert config.device_name() == "kitchen pc"
    assert config.share_key(folder) == "the-key-from-B"
    # next start: straight to the share, with the same window size
    w2 = make_window(name=None)
    assert w2.pages.currentIndex() == 1
    assert w2.folder == folder.resolve()
    assert (w2.width(), w2.height()) == (760, 560)
    started(qtbot, w2)
    qtbot.waitUntil(lambda: w2.files_model.state_of("hello.txt") is not None, timeout=WAIT)
    qtbot.waitUntil(lambda: me_row(w2).get("name") == "kitchen pc", timeout=WAIT)


def test_wrong_folder_and_busy_folder_say_so(qtbot, tmp_path, make_window, run_node):
    # a folder that does not exist: back to the first page, with the reason
    w = make_window(tmp_path / "gone", secret="k")
    assert w.pages.currentWidget() is w.setup_page
    assert "does not exist" in w.setup_page.message.text()
    close_and_wait(qtbot, w)
    # a folder a `p2psync run` already serves with this config dir: a banner, no crash
    b = run_node("B", secret="k")
    w2 = make_window(b.folder, secret="k", config=b.config)
    qtbot.waitUntil(lambda: w2.banner.isVisible(), timeout=WAIT)
    assert "already running" in w2.banner_text.text()
    qtbot.waitUntil(lambda: w2.worker is None, timeout=WAIT)


def test_menu_opens_the_log_file(qtbot, tmp_path, make_window, monkeypatch):
    from PySide6.QtGui import QDesktopServices

    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(opened.append))
    w = make_window()
    assert w.log_action.isEnabled()
    w.log_action.trigger()
    assert [u.toLocalFile() for u in opened] == [str(tmp_path / "p2psync.log")]


def test_a_long_state_is_cut_at_its_end_and_a_path_in_the_middle(make_window):
    """The files table cuts paths in the middle (folder and name in sight), but the
    state column's sentences at their end: its start says what happened. A short
    label keeps its end: "Inc…84%"."""
    from PySide6.QtWidgets import QStyleOptionViewItem

    w = make_window()
    reason = ("not synced: a symbolic link that points outside the folder (links are "
              "synced only if they stay inside it)")
    path = "projects/2026/a folder with a long name/hostname-link"
    w.files_model.reset_rows([(path, 13, 1.0, "error", reason),
                              ("video.mp4", 3 << 30, 1.0, "remote_change", "")])
    w.files_model.set_progress({"video.mp4": (84, 100)})
    view = w.files_view

    def painted(col: int, width: int, row: int = 0) -> str:
        index = w.files_model.index(row, col)
        option = QStyleOptionViewItem()
        view.itemDelegateForIndex(index).initStyleOption(option, index)
        return view.fontMetrics().elidedText(option.text, option.textElideMode, width)

    state = painted(3, 200)
    assert state.startswith("Error: not synced") and state.endswith("\u2026"), state
    shown = painted(0, 200)
    assert shown.startswith("projects/") and shown.endswith("hostname-link"), shown
    coming = painted(3, view.fontMetrics().horizontalAdvance("Inco\u2026 84%"), row=1)
    assert coming.endswith("84%"), coming


def test_log_file_is_written(tmp_path):
    import logging

    from app.gui.launch import setup_file_logging

    path = setup_file_logging(tmp_path / "logs")
    try:
        logging.getLogger("p2psync.gui").warning("hello log file")
        for h in logging.getLogger().handlers:
            h.flush()
        assert path == tmp_path / "logs" / "p2psync.log"
        assert "hello log file" in path.read_text()
    finally:
        for h in list(logging.getLogger().handlers):
            if getattr(h, "baseFilename", None) == str(path):
                logging.getLogger().removeHandler(h)
                h.close()


def test_damaged_settings_say_so_and_stay(qtbot, tmp_path, make_window):
    """A settings.json the app cannot read is not overwritten (it holds other folders' keys)."""
    folder = tmp_path / "A"
    folder.mkdir()
    cfg = tmp_path / "cfg-gui"
    cfg.mkdir()
    (cfg / "settings.json").write_text("{not json")
    w = make_window(folder, secret="k")
    assert w.pages.currentWidget() is w.setup_page and w.worker is None
    assert "settings.json (not valid JSON): fix or remove it" in w.setup_page.message.text()
    assert (cfg / "settings.json").read_text() == "{not json"


def test_a_control_socket_path_that_is_not_a_socket_only_blinds_status(qtbot, tmp_path,
                                                                        make_window, caplog):
    """The app syncs on (a squatter must not stop it), says why in the log, and leaves the
    file alone; `status` refuses the path with one line instead of asking it."""
    folder = tmp_path / "A"
    folder.mkdir()
    config = Config(tmp_path / "cfg-gui")
    sock = config.folder_paths(folder).control_socket
    sock.parent.mkdir(parents=True, mode=0o700, exist_ok=True)  # shared by tests
    sock.write_text("not a socket")
    w = make_window(folder, secret="k")
    started(qtbot, w)
    assert any("no control socket for `p2psync status`" in r.getMessage()
               and "is not a socket" in r.getMessage() for r in caplog.records)
    assert sock.read_text() == "not a socket"
    r = subprocess.run(p2psync_cmd("status", "--folder", str(folder), "--config-dir",
                                   str(config.dir)), capture_output=True, text=True,
                       env=env(), timeout=60)
    assert r.returncode == 2 and "is not a socket: refused" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
