"""The Versions view, on the real window with its real engine and a real `p2psync run` (B).

B's edit replaces the app's copy of a file: the replaced version is listed (time, size,
"a change from B"), Restore puts it back through the engine, and the restored content
reaches B like any edit. The whole folder's view comes from the File menu, one file's
from the file list's context menu. The retention set in Settings is what the running
node prunes by.
"""

from __future__ import annotations

import json
import time

from PySide6.QtWidgets import QMenu

from app.core import versionstore
from app.core.versionstore import Kept
from app.engine.config import Config
from app.gui.versionsview import VersionsModel
from tests.gui.test_app import WAIT, click, started, write
from tests.gui.test_mass_delete import device_b, window  # noqa: F401 - fixtures (and key)
from tests.gui.test_settings import in_settings

HOUR_AGO = time.time() - 3600


def shown(dialog) -> list[tuple[str, ...]]:
    m = dialog.model
    return [tuple(m.index(r, c).data() for c in range(m.columnCount()))
            for r in range(m.rowCount())]


def select(qtbot, dialog, row: int) -> None:
    dialog.view.selectRow(row)
    qtbot.waitUntil(lambda: dialog.restore_button.isEnabled(), timeout=WAIT)


def test_versions_listed_and_restored_reach_the_peer(qtbot, tmp_path, window,  # noqa: F811
                                                     device_b, monkeypatch):  # noqa: F811
    a, b = tmp_path / "A", tmp_path / "B"
    write(a / "notes.txt", "first draft\n", HOUR_AGO)
    write(a / "other.txt", "other\n", HOUR_AGO)
    w = window()
    device_b(started(qtbot, w))
    qtbot.waitUntil(lambda: (b / "notes.txt").exists(), timeout=WAIT)

    write(b / "notes.txt", "B's rewrite\n")  # replaces A's copy: the first draft is kept
    qtbot.waitUntil(lambda: (a / "notes.txt").read_text() == "B's rewrite\n", timeout=WAIT)

    # one file's versions, from the file list's context menu
    menus: list[QMenu] = []
    monkeypatch.setattr(QMenu, "popup", lambda self, *_: menus.append(self))
    m = w.files_model
    qtbot.waitUntil(lambda: m.row_of("notes.txt") >= 0, timeout=WAIT)
    view = w.files_view
    row = view.model().index(m.row_of("notes.txt"), 0)
    w._files_menu(view.visualRect(row).center())
    [action] = menus[-1].actions()
    assert action.text() == "Versions…"
    action.trigger()
    d = w.versions_dialog
    assert d.windowTitle() == "Versions of notes.txt"
    assert d.view.isColumnHidden(VersionsModel.COL_PATH)
    qtbot.waitUntil(lambda: d.model.rowCount() == 1, timeout=WAIT)
    [(path, when, size, by)] = shown(d)
    assert (path, size, by) == ("notes.txt", "12 B", "B")
    assert when.startswith(time.strftime("%Y-%m-%d"))
    assert d.status.text() == "1 kept version."

    select(qtbot, d, 0)
    click(qtbot, d.restore_button)
    qtbot.waitUntil(lambda: (a / "notes.txt").read_text() == "first draft\n", timeout=WAIT)
    qtbot.waitUntil(lambda: (b / "notes.txt").read_text() == "first draft\n", timeout=WAIT)
    # what the restore replaced is a version too, replaced here
    qtbot.waitUntil(lambda: d.model.rowCount() == 2, timeout=WAIT)
    assert [r[3] for r in shown(d)] == ["this device", "B"]
    assert d.status.text().startswith("Restored notes.txt as it was before ")
    qtbot.waitUntil(lambda: any("Restored notes.txt" in line for line in w.activity.lines),
                    timeout=WAIT)
    d.close()

    # the whole folder, from the File menu
    write(b / "other.txt", "other, B's\n")
    qtbot.waitUntil(lambda: (a / "other.txt").read_text() == "other, B's\n", timeout=WAIT)
    w.versions_action.trigger()
    d = w.versions_dialog
    assert d.windowTitle() == "Versions" and not d.view.isColumnHidden(VersionsModel.COL_PATH)
    qtbot.waitUntil(lambda: d.model.rowCount() == 3, timeout=WAIT)
    assert sorted(r[0] for r in shown(d)) == ["notes.txt", "notes.txt", "other.txt"]
    assert shown(d)[0][0] == "other.txt"  # the newest first

    # a kept version gone meanwhile (pruned by hand): one line says so, nothing changes
    [other] = [v for v in versionstore.list_kept(a, "other.txt")]
    (a / other.version).unlink()
    select(qtbot, d, 0)
    click(qtbot, d.restore_button)
    qtbot.waitUntil(lambda: d.status.text().startswith("Could not restore other.txt: "),
                    timeout=WAIT)
    assert "no earlier version of other.txt is kept" in d.status.text()
    assert (a / "other.txt").read_text() == "other, B's\n"
    assert d.restore_button.isEnabled()
    d.close()


def test_the_retention_set_in_settings_is_what_the_node_prunes_by(qtbot, tmp_path,
                                                                   window):  # noqa: F811
    a = tmp_path / "A"
    write(a / "notes.txt", "notes\n", HOUR_AGO)
    (a / ".p2psync/versions").mkdir(parents=True)
    for name, days in (("old.txt", 10), ("young.txt", 2)):
        version = f".p2psync/versions/{name}~20260101-000000"
        (a / version).write_text(name)
        versionstore.record(a, Kept(name, version, time.time() - days * 86400, len(name)))
    w = window()
    started(qtbot, w)
    w.show_versions()
    d = w.versions_dialog
    qtbot.waitUntil(lambda: d.model.rowCount() == 2, timeout=WAIT)  # 30 days: both kept
    d.close()

    in_settings(qtbot, w, lambda dialog: dialog.days.setValue(7))
    stored = json.loads((w.config.dir / "settings.json").read_text())
    assert stored["versions_days"] == 7 and Config(w.config.dir).versions_days() == 7
    click(qtbot, w.sync_button)  # the full rescan of "Sync now" applies it
    qtbot.waitUntil(lambda: not (a / ".p2psync/versions/old.txt~20260101-000000").exists(),
                    timeout=WAIT)
    assert [k.path for k in versionstore.list_kept(a)] == ["young.txt"]
    w.show_versions()
    d = w.versions_dialog
    qtbot.waitUntil(lambda: d.status.text() == "1 kept version.", timeout=WAIT)
    assert [r[0] for r in shown(d)] == ["young.txt"]


def test_versions_that_cannot_be_read_say_so_in_one_line(qtbot, tmp_path, window):  # noqa: F811
    a = tmp_path / "A"
    write(a / "notes.txt", "notes\n", HOUR_AGO)
    (a / ".p2psync/versions.jsonl").mkdir(parents=True)  # not a file: reading it fails
    w = window()
    started(qtbot, w)
    w.show_versions("notes.txt")
    d = w.versions_dialog
    qtbot.waitUntil(lambda: "cannot be read" in d.status.text(), timeout=WAIT)
    assert d.status.text() == ("The kept versions cannot be read: Is a directory: "
                               f"{a / '.p2psync/versions.jsonl'}")
    assert d.model.rowCount() == 0 and not d.restore_button.isEnabled()
