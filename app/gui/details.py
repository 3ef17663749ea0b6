"""The details pane: the selected file's state, why it is in that state, and its history.

Beside the files table. Selecting a row asks the engine worker for the file's
details (`wanted`; app.core.states.details, read off the GUI thread, as one path's
row and its version history), and they come back through `show_details`. While a
file is selected, a change of its row asks again, so the pane follows the file as
it comes in, conflicts or gets fixed.
"""

from __future__ import annotations

import html
import time

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.core.units import human_size
from app.gui.models import ROW_ROLE, STATE_LABELS, state_icon

EMPTY = "Select a file to see why it is, or is not, synced."


class DetailsPane(QFrame):
    wanted = Signal(str)  # a path whose details the pane needs

    def __init__(self, parent=None) -> None:
        super().__init__(parent, objectName="detailsPane")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.path: str | None = None
        v = QVBoxLayout(self)
        v.setContentsMargins(10, 8, 10, 8)
        self.title = self._label("detailsPath", bold=True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.meta = self._label("detailsMeta")
        self.state = QWidget(objectName="detailsState")  # the state's icon and name
        h = QHBoxLayout(self.state)
        h.setContentsMargins(0, 4, 0, 0)
        self.state_icon = QLabel()
        self.state_label = QLabel(objectName="detailsStateLabel")
        font = self.state_label.font()
        font.setBold(True)
        self.state_label.setFont(font)
        h.addWidget(self.state_icon)
        h.addWidget(self.state_label, 1)
        self.why = self._label("detailsWhy")
        self.why.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.history_title = self._label("detailsHistoryTitle", bold=True)
        self.history_title.setText("History")
        self.history = self._label("detailsHistory")
        for w in (self.title, self.meta, self.state, self.why, self.history_title,
                  self.history):
            v.addWidget(w)
        v.addStretch(1)
        self.setMinimumWidth(220)
        self.clear()

    def _label(self, name: str, bold: bool = False) -> QLabel:
        label = QLabel(objectName=name)
        label.setWordWrap(True)
        label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        if bold:
            font = label.font()
            font.setBold(True)
            label.setFont(font)
        return label

    def beside(self, view: QTableView) -> QSplitter:
        """The view and this pane side by side; selecting a row of the view shows it."""
        split = QSplitter(Qt.Orientation.Horizontal, objectName="detailsSplitter")
        split.addWidget(view)
        split.addWidget(self)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setChildrenCollapsible(True)
        view.selectionModel().currentRowChanged.connect(self._current_changed)
        view.model().modelReset.connect(self._model_reset)
        return split

    # --- what the window and the worker call -------------------------------------------
    def clear(self) -> None:
        self.path = None
        self.title.setText(EMPTY)
        for w in (self.meta, self.state, self.why, self.history_title, self.history):
            w.hide()

    def on_rows(self, rows: list, removed: list) -> None:
        """Rows of the table changed (the worker's `files_update`): the selected file's
        details are asked again when it is among them."""
        if self.path is not None and (self.path in removed
                                      or any(r[0] == self.path for r in rows)):
            self.wanted.emit(self.path)

    def on_progress(self, progress: dict) -> None:
        """Downloads moved on (the worker's `progress`): the selected file's why says how
        far it came."""
        if self.path is not None and self.path in progress:
            self.wanted.emit(self.path)

    def show_details(self, path: str, found: dict) -> None:
        if path != self.path:
            return  # an answer for a file no longer selected
        row, history = found.get("row"), found.get("history") or []
        self.title.setText(path)
        if row is None:
            self.meta.setText("Not in this folder any more.")
            self.meta.show()
            for w in (self.state, self.why, self.history_title, self.history):
                w.hide()
            return
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["mtime"])) \
            if row["mtime"] else "unknown"
        self.meta.setText(f"{human_size(row['size'])}, modified {when}")
        label = STATE_LABELS.get(row["state"], row["state"])
        self.state_icon.setPixmap(state_icon(row["state"]).pixmap(16, 16))
        self.state_label.setText(label)
        self.why.setText(row["why"] or "In sync with the other devices.")
        self.history.setText("<br>".join(f"• {html.escape(line)}" for line in history)
                             or "No history recorded yet.")
        for w in (self.meta, self.state, self.why, self.history_title, self.history):
            w.show()

    # --- internals -------------------------------------------------------------------------
    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        row = current.data(ROW_ROLE) if current.isValid() else None
        if row is None:
            self.clear()
            return
        if row[0] != self.path:
            self.path = row[0]
            self.title.setText(self.path)
        self.wanted.emit(self.path)

    def _model_reset(self) -> None:
        if self.path is not None:
            self.wanted.emit(self.path)
