"""The Versions view: the earlier versions `.p2psync/versions/` keeps, and Restore.

One dialog for one file (from the file list's context menu) or for the whole folder
(File → Versions…): each kept version with when it was replaced, its size and which
device's change replaced it, newest first. Restore puts the chosen one back through
the same code as `p2psync restore` (app.core.restore), so the content it replaces
becomes a version in its turn and the restore reaches the other devices as an
ordinary edit. The dialog only asks: listing and restoring run in the engine worker
(`EngineWorker.list_versions` / `restore_version`), never on the UI thread.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.core.units import human_size

SHOWN_MAX = 5000  # the newest versions a folder's list shows (the rest: one line says so)


@dataclass(frozen=True)
class VersionRow:
    """One kept version as the view shows it (made in the engine worker)."""

    path: str  # the file it was a version of
    when: float  # when it was replaced or deleted here
    size: int
    by: str  # whose change replaced it: "desktop", "this device" (a restore), "device ABCDEFG"
    at: str  # the time as `restore --at` takes it: which one to put back


class VersionsModel(QAbstractTableModel):
    COL_PATH, COL_WHEN, COL_SIZE, COL_BY = range(4)
    HEADERS = ("File", "Replaced", "Size", "Replaced by")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[VersionRow] = []

    def set_rows(self, rows: list[VersionRow]) -> None:
        self.beginResetModel()
        self.rows = sorted(rows, key=lambda r: (-r.when, r.path))
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex,
             role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        r = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return (r.path, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.when)),
                    human_size(r.size), r.by)[col]
        if role == Qt.ItemDataRole.TextAlignmentRole and col == self.COL_SIZE:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{r.path}, as it was before {r.at} (p2psync restore --at {r.at})"
        return None


class VersionsDialog(QDialog):
    """The kept versions of one file (path) or of the whole folder (path None)."""

    def __init__(self, worker, path: str | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("versionsDialog")
        self.worker = worker
        self.path = path
        self.setWindowTitle(f"Versions of {path}" if path else "Versions")
        v = QVBoxLayout(self)
        self.title = QLabel(objectName="versionsTitle")
        self.title.setWordWrap(True)
        self.title.setText(
            f"Earlier versions of <b>{html.escape(path)}</b> kept on this device" if path
            else "Earlier versions kept on this device, of every file")
        v.addWidget(self.title)
        self.model = VersionsModel(self)
        self.view = QTableView(objectName="versionsView")
        self.view.setModel(self.model)
        self.view.setShowGrid(False)
        self.view.setWordWrap(False)
        self.view.setAlternatingRowColors(True)
        self.view.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.verticalHeader().hide()
        h = self.view.horizontalHeader()
        h.setHighlightSections(False)
        h.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        h.setSectionResizeMode(VersionsModel.COL_BY, QHeaderView.ResizeMode.Stretch)
        if path:  # one file: its name is in the title
            self.view.hideColumn(VersionsModel.COL_PATH)
        else:
            h.setSectionResizeMode(VersionsModel.COL_PATH, QHeaderView.ResizeMode.Stretch)
            h.setSectionResizeMode(VersionsModel.COL_BY, QHeaderView.ResizeMode.ResizeToContents)
        self.view.doubleClicked.connect(lambda _: self.restore_selected())
        self.view.selectionModel().selectionChanged.connect(lambda *_: self._refresh_buttons())
        v.addWidget(self.view, 1)
        self.status = QLabel("Reading the kept versions…", objectName="versionsStatus")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        v.addWidget(self.status)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.restore_button = QPushButton("Restore", objectName="restoreVersion")
        self.restore_button.setToolTip("Put this version back; what is there now is kept "
                                       "as a version too, and the other devices get it")
        self.restore_button.clicked.connect(self.restore_selected)
        self.buttons.addButton(self.restore_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.rejected.connect(self.close)
        v.addWidget(self.buttons)
        self._busy = False
        self._done_text = ""  # what the last restore did, kept above the next listing
        worker.versions_listed.connect(self._listed)
        worker.version_restored.connect(self._restored)
        self.resize(760 if path is None else 620, 420)
        self._refresh_buttons()
        self.reload()

    def reload(self) -> None:
        self.worker.list_versions(self.path)

    def selected(self) -> VersionRow | None:
        rows = self.view.selectionModel().selectedRows()
        return self.model.rows[rows[0].row()] if rows else None

    def restore_selected(self) -> None:
        row = self.selected()
        if row is None or self._busy:
            return
        self._busy = True
        self.status.setText(f"Restoring {row.path} as it was before {_shown(row.when)}…")
        self._refresh_buttons()
        self.worker.restore_version(row.path, row.at)

    # --- from the worker ---------------------------------------------------------------
    def _listed(self, path: str | None, rows: list[VersionRow], total: int,
                error: str) -> None:
        if path != self.path:
            return  # another dialog's answer
        self.model.set_rows(rows)
        if error:
            text = f"The kept versions cannot be read: {error}"
        elif total == 0:
            what = f" of {self.path}" if self.path else ""
            text = f"No earlier version{what} is kept on this device."
        elif total > len(rows):
            text = f"The newest {len(rows):,} of {total:,} kept versions."
        else:
            text = f"{total:,} kept version{'s' if total != 1 else ''}."
        self.status.setText(f"{self._done_text} {text}".strip())
        self._refresh_buttons()

    def _restored(self, path: str, done: str, error: str) -> None:
        if self.path is not None and path != self.path:
            return
        self._busy = False
        if error:
            self._done_text = ""
            self.status.setText(f"Could not restore {path}: {error}")
        else:
            self._done_text = done
            self.status.setText(done)
            self.reload()  # what it replaced is a version now
        self._refresh_buttons()

    def _refresh_buttons(self) -> None:
        self.restore_button.setEnabled(not self._busy and self.selected() is not None)


def _shown(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
