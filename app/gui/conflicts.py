"""The conflicts view: every conflict copy, both versions side by side, three ways out.

"This one" is the version that kept the file's name; "the other" is the conflict
copy beside it (the version that lost, by date). Text files are shown side by side;
for other files the size and date say which is which. The panel only asks: reading
the versions and resolving run in the engine worker (app.core.conflicts on disk).
"""

from __future__ import annotations

import difflib
import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFontDatabase, QPalette, QTextCursor, QTextFormat
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
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from app.core import conflicts
from app.core.units import human_size
from app.gui.models import state_icon

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
        self._names: dict[str, str] = {}
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

    def set_device_names(self, names: dict[str, str]) -> None:
        """Short device ID (7 characters) -> name, to say whose version the copy is."""
        self._names = names
        if self._current:
            self._set_other_head(self._current)

    def show_sides(self, copy: str, this: conflicts.Side, other: conflicts.Side) -> None:
        if copy != self._current:
            return
        self.this_caption.setText(_side_caption(this))
        self.other_caption.setText(_side_caption(other))
        self.this_text.setPlainText(_side_text(this))
        self.other_text.setPlainText(_side_text(other))
        if conflicts.is_text_pair(this, other):
            self._mark_differences(this.text, other.text)
        self._enable(this.exists or other.exists)

    def _mark_differences(self, a: str, b: str) -> None:
        """Tint the lines that differ between the two versions."""
        a_lines, b_lines = a.splitlines(), b.splitlines()
        if len(a_lines) + len(b_lines) > 20_000:  # a huge file: no diff in the GUI thread
            return
        color = QColor(self.palette().color(QPalette.ColorRole.Highlight))
        color.setAlpha(45)
        marks: tuple[list[int], list[int]] = ([], [])
        matcher = difflib.SequenceMatcher(None, a_lines, b_lines, autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op != "equal":
                marks[0].extend(range(i1, i2))
                marks[1].extend(range(j1, j2))
        for edit, lines in ((self.this_text, marks[0]), (self.other_text, marks[1])):
            selections = []
            doc = edit.document()
            for n in lines:
                sel = QTextEdit.ExtraSelection()
                sel.format.setBackground(color)
                sel.format.setProperty(QTextFormat.Property.FullWidthSelection, True)
                sel.cursor = QTextCursor(doc.findBlockByNumber(n))
                selections.append(sel)
            edit.setExtraSelections(selections)

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
        self._set_other_head(copy)
        self._clear()
        self.result.setText("")
        self.load_requested.emit(copy)

    def _set_other_head(self, copy: str) -> None:
        c = conflicts.parse(copy)
        if c is None:
            return
        who = self._names.get(c.device)
        who = f"{who} ({c.device})" if who else f"device {c.device}"
        self.other_head.setText(f"<b>The other</b> (conflict copy: the version of {who})")

    def _clear(self) -> None:
        for w in (self.this_caption, self.other_caption):
            w.setText("")
        for edit in (self.this_text, self.other_text):
            edit.setPlainText("")
            edit.setExtraSelections([])
        self._enable(False)

    def _enable(self, on: bool) -> None:
        for b in (self.keep_this, self.keep_other, self.keep_both):
            b.setEnabled(on)

    def _resolve(self, how: str) -> None:
        if self._current:
            self._enable(False)
            self.result.setText("Working…")
            self.resolve_requested.emit(self._current, how)
