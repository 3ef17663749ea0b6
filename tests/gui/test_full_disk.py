"""The app started on a disk too full for its index: it says so and goes on once there
is space.

Folder and config dir on one small tmpfs (a home folder), filled while the engine was
down (killed: its index's WAL stays, so the index opens, then cannot take the scan of
the new files). The window must say why beside its progress bar and in its activity
list, not close or show a failure dialog, and once space is back start by itself and
list the files. Skips where mounting is refused.
"""

from __future__ import annotations

import signal

from tests.gui.test_app import WAIT, click, close_and_wait, make_window, started  # noqa: F401 - a fixture
from tests.procs import fill, start_run, tmpfs

KEY = "full-disk-key"


def test_the_app_waits_for_space_to_record_its_first_scan(qtbot, tmp_path,
                                                          make_window):  # noqa: F811
    with tmpfs(tmp_path / "disk", "4m") as disk:
        folder, cfg = disk / "folder", disk / "cfg"
        start_run(folder, cfg, secret=KEY).stop(signal.SIGKILL)
        filler = fill(disk)
        (folder / "new").mkdir()
        for i in range(3000):
            (folder / f"new/{i:04}.txt").touch()
        w = make_window(folder=folder, secret=KEY, config=cfg)
        said = "Could not record local changes: database or disk is full (trying again"
        qtbot.waitUntil(lambda: any(said in line for line in w.activity.lines),
                        timeout=WAIT)
        assert not w.info and w.worker is not None and w.worker.is_running()
        qtbot.waitUntil(lambda: w.progress_label.text() == (
            "Waiting for space: the disk that holds this folder's index is full (0 B "
            "free)"), timeout=WAIT)
        filler.unlink()
        started(qtbot, w)
        qtbot.waitUntil(lambda: w.files_model.row_of("new/2999.txt") >= 0,
                        timeout=WAIT)
        assert sum(said in line for line in w.activity.lines) == 1, w.activity.lines
        assert "waiting for space" not in w.progress_label.text()


def test_the_app_waits_for_space_to_open_its_index(qtbot, tmp_path, make_window):  # noqa: F811
    """Stopped cleanly, its index's WAL went; on the full disk SQLite cannot make it
    again. The window says so and starts by itself once there is space."""
    with tmpfs(tmp_path / "disk", "4m") as disk:
        folder, cfg = disk / "folder", disk / "cfg"
        assert start_run(folder, cfg, secret=KEY).stop() == 0
        filler = fill(disk)
        (folder / "new.txt").touch()
        w = make_window(folder=folder, secret=KEY, config=cfg)
        qtbot.waitUntil(lambda: w.progress_label.text() == (
            "Waiting for space: the disk that holds this folder's index is full (0 B "
            "free)"), timeout=WAIT)
        assert not w.info and w.worker is not None and w.worker.is_running()
        filler.unlink()
        started(qtbot, w)
        qtbot.waitUntil(lambda: w.files_model.row_of("new.txt") >= 0, timeout=WAIT)


def test_the_app_closed_while_waiting_for_space_stops(qtbot, tmp_path, make_window):  # noqa: F811
    with tmpfs(tmp_path / "disk", "4m") as disk:
        folder, cfg = disk / "folder", disk / "cfg"
        assert start_run(folder, cfg, secret=KEY).stop() == 0
        fill(disk)
        w = make_window(folder=folder, secret=KEY, config=cfg)
        qtbot.waitUntil(lambda: w.progress_label.text().startswith("Waiting for space"),
                        timeout=WAIT)
        close_and_wait(qtbot, w)


def test_a_first_start_on_a_full_disk_keeps_the_folder_and_key(qtbot, tmp_path,
                                                               make_window):  # noqa: F811
    """Nothing of this device is on the disk yet, and its settings cannot be written:
    the setup page says why with the folder given still chosen and the key still
    typed, and once space is freed one click opens the share with that key (the
    folder was dropped: chosen again, the key typed again)."""
    with tmpfs(tmp_path / "disk", "4m") as disk:
        folder, cfg = disk / "folder", disk / "cfg"
        folder.mkdir()
        (folder / "notes.txt").write_text("mine\n")
        filler = fill(disk)
        w = make_window(folder=folder, secret=KEY, config=cfg)
        page = w.setup_page
        assert w.pages.currentWidget() is page and w.worker is None
        assert "No space left on device" in page.message.text()
        assert page.folder_label.text() == str(folder.resolve())
        assert page.key_edit.text() == KEY
        filler.unlink()
        click(qtbot, page.join_button)
        started(qtbot, w)
        assert w.config.share_key(folder.resolve()) == KEY
        qtbot.waitUntil(lambda: w.files_model.row_of("notes.txt") >= 0, timeout=WAIT)
