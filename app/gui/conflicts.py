"""The conflicts view: every conflict copy, both versions side by side, three ways out.

"This one" is the version that kept the file's name; "the other" is the conflict
copy beside it (the version that lost, by date). Text files are shown side by side;
for other files the size and date say which is which. The panel only asks: reading
the versions and resolving run in the engine worker (app.core.conflicts on disk).
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.core import conflicts
from app.gui.models import human_size, state_icon

COPY_ROLE = Qt.ItemDataRole.UserRole


def _side_text(side: conflicts.Side) -> str:
    if not side.exists:
        return "(this file is not there any more)"
    if side.text is None:
        return (f"Not a text file: {human_size(side.size)}, modified "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(side.mtime))}")
    return side.text + ("\n… (only the beginning is shown)" if side.truncated else "")


def _side_caption(side: conflicts.Side) -> str:
    if not side.exists:
        return side.path
    return (f"{side.path}  ·  {human_size(side.size)}  ·  "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(side.mtime))}")


class ConflictsPanel(QWidget):
    load_requested = Signal(str)  # conflict copy path: read both versions
    resolve_requested = Signal(str, str)  # copy path, "original" | "copy" | "both"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._current = ""
        self.list = QListWidget()
        self.list.setObjectName("conflictList")
        self.list.currentItemChanged.connect(self._selected)
        self.empty = QLabel("No conflicts.\n\nWhen two devices change the same file before "
                            "they see each other's change, both versions are kept and "
                            "listed here, so you can choose.")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setForegroundRole(self.empty.palette().ColorRole.PlaceholderText)

        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.this_caption = QLabel()
        self.other_caption = QLabel()
        for cap in (self.this_caption, self.other_caption):
            cap.setWordWrap(True)
            cap.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.this_text = QPlainTextEdit(objectName="thisText")
        self.other_text = QPlainTextEdit(objectName="otherText")
        for edit in (self.this_text, self.other_text):
            edit.setReadOnly(True)
            edit.setFont(mono)
            edit.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        # scroll the two versions together
        self.this_text.verticalScrollBar().valueChanged.connect(
            self.other_text.verticalScrollBar().setValue)
        self.other_text.verticalScrollBar().valueChanged.connect(
            self.this_text.verticalScrollBar().setValue)

        self.keep_this = QPushButton("Keep this one", objectName="keepThis")
        self.keep_other = QPushButton("Keep the other", objectName="keepOther")
        self.keep_both = QPushButton("Keep both", objectName="keepBoth")
        self.keep_this.setToolTip("Keep the file in place; the conflict copy goes to "
                                  ".p2psync/versions")
        self.keep_other.setToolTip("The conflict copy replaces the file; the replaced "
                                   "version goes to .p2psync/versions")
        self.keep_both.setToolTip("Keep both files: the conflict copy gets an ordinary name")
        self.keep_this.clicked.connect(lambda: self._resolve("original"))
        self.keep_other.clicked.connect(lambda: self._resolve("copy"))
        self.keep_both.clicked.connect(lambda: self._resolve("both"))
        self.result = QLabel(objectName="conflictResult")
        self.result.setWordWrap(True)

        detail = QWidget()
        grid = QGridLayout(detail)
        grid.setContentsMargins(0, 0, 0, 0)
        this_head = QLabel("<b>This one</b> (in place)")
        self.other_head = QLabel("<b>The other</b> (conflict copy)")
        grid.addWidget(this_head, 0, 0)
        grid.addWidget(self.other_head, 0, 1)
        grid.addWidget(self.this_caption, 1, 0)
        grid.addWidget(self.other_caption, 1, 1)
        grid.addWidget(self.this_text, 2, 0)
        grid.addWidget(self.other_text, 2, 1)
        grid.setRowStretch(2, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.result, 1)
        for b in (self.keep_this, self.keep_other, self.keep_both):
            buttons.addWidget(b)
        grid.addLayout(buttons, 3, 0, 1, 2)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.list)
        splitter.addWidget(detail)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 3)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(splitter)
        v = QVBoxLayout(self)
        v.setContentsMargins(0, 0, 0, 0)
        v.addWidget(self.stack)
        self._enable(False)

    # --- from the window -----------------------------------------------------------
    def set_conflicts(self, copies: list[str]) -> None:
        current = self._current
        self.list.blockSignals(True)
        self.list.clear()
        select = None
        for copy in copies:
            c = conflicts.parse(copy)
            if c is None:
                continue
            item = QListWidgetItem(state_icon("conflict"), c.original)
            item.setData(COPY_ROLE, copy)
            item.setToolTip(f"{copy}\nthe other version: from device {c.device}, "
                            f"{c.when.astimezone():%Y-%m-%d %H:%M:%S}")
            self.list.addItem(item)
            if copy == current:
                select = item
        self.list.blockSignals(False)
        self.stack.setCurrentIndex(1 if self.list.count() else 0)
        if select is not None:
            self.list.setCurrentItem(select)
        elif self.list.count():
            self.list.setCurrentRow(0)
        else:
            self._current = ""
            self._clear()

    def show_sides(self, copy: str, this: conflicts.Side, other: conflicts.Side) -> None:
        if copy != self._current:
            return
        self.this_caption.setText(_side_caption(this))
        self.other_caption.setText(_side_caption(other))
        self.this_text.setPlainText(_side_text(this))
        self.other_text.setPlainText(_side_text(other))
        self._enable(this.exists or other.exists)

    def on_resolved(self, copy: str, changed: list, error: str) -> None:
        if error:
            self.result.setText(f"Could not resolve: {error}")
            self._enable(True)
        else:
            self.result.setText("Done; the change goes to the other devices.")

    def current_copy(self) -> str:
        return self._current

    # --- internals -----------------------------------------------------------------
    def _selected(self, item: QListWidgetItem | None, _prev=None) -> None:
        if item is None:
            return
        copy = item.data(COPY_ROLE)
        self._current = copy
        c = conflicts.parse(copy)
        if c is not None:
            self.other_head.setText(f"<b>The other</b> (conflict copy from device "
                                    f"{c.device})")
        self._clear()
        self.result.setText("")
        self.load_requested.emit(copy)

    def _clear(self) -> None:
        for w in (self.this_caption, self.other_caption):
            w.setText("")
        self.this_text.setPlainText("")
        self.other_text.setPlainText("")
        self._enable(False)

    def _enable(self, on: bool) -> None:
        for b in (self.keep_this, self.keep_other, self.keep_both):
            b.setEnabled(on)

    def _resolve(self, how: str) -> None:
        if self._current:
            self._enable(False)
            self.result.setText("Working…")
            self.resolve_requested.emit(self._current, how)
