"""The conflicts view: every conflict copy, both versions side by side, three ways out.

Each side says whose version it is and when it was made: "In place: desktop's
version, 14:02" is the version that kept the file's name, "Conflict copy: laptop's
version" the one beside it (the version that lost, by date); the buttons name them
the same way ("Keep desktop's"). Text files are shown side by side with the lines
that differ tinted (a tint chosen against the palette's own background, so it reads
in a light and in a dark theme alike); for other files the size and date say which
is which. What a choice did stays written under the panel until the next one, even
once the conflict is gone from the list. The panel only asks: reading the versions
and resolving run in the engine worker (app.core.conflicts on disk).
"""

from __future__ import annotations

import difflib
import time

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QColor, QFontDatabase, QPalette, QTextCursor, QTextFormat
from PySide6.QtWidgets import (
    QAbstractItemView,
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
from app.gui.elide import ElidedLabel
from app.gui.models import state_icon

COPY_ROLE = Qt.ItemDataRole.UserRole
MIN_CONTRAST = 1.5  # the tint against the text's background: plainly visible, not loud
TEXT_CONTRAST = 4.5  # the text on the tint stays readable (WCAG AA)


def luminance(c: QColor) -> float:
    """Relative luminance (WCAG 2): 0 black .. 1 white."""
    def channel(v: float) -> float:
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    return (0.2126 * channel(c.redF()) + 0.7152 * channel(c.greenF())
            + 0.0722 * channel(c.blueF()))


def contrast(a: QColor, b: QColor) -> float:
    """WCAG contrast ratio, 1 (same) .. 21 (black on white)."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _mix(a: QColor, b: QColor, t: float) -> QColor:
    return QColor.fromRgbF(a.redF() + (b.redF() - a.redF()) * t,
                           a.greenF() + (b.greenF() - a.greenF()) * t,
                           a.blueF() + (b.blueF() - a.blueF()) * t)


def diff_tint(palette: QPalette) -> QColor:
    """An opaque tint for changed lines, distinct from the background in any palette.

    The palette's highlight colour mixed into the text background, just enough to stand
    out (MIN_CONTRAST) while the text on it stays readable; a fixed translucent
    highlight was invisible on a dark background.
    """
    base = palette.color(QPalette.ColorRole.Base)
    text = palette.color(QPalette.ColorRole.Text)
    accent = palette.color(QPalette.ColorRole.Highlight)
    if contrast(accent, base) < MIN_CONTRAST:  # a highlight as dark (or light) as the base
        accent = QColor("#d9a400") if luminance(base) < 0.5 else QColor("#1f6feb")
    best = accent
    for step in range(10, 101, 5):
        tint = _mix(base, accent, step / 100)
        best = tint
        if contrast(tint, base) >= MIN_CONTRAST:
            break
    if contrast(text, best) < TEXT_CONTRAST:  # too close to the text: back off a bit
        for step in range(100, 0, -5):
            tint = _mix(base, best, step / 100)
            if contrast(text, tint) >= TEXT_CONTRAST:
                return tint
    return best


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _side_text(side: conflicts.Side) -> str:
    if not side.exists:
        return "(this file is not there any more)"
    if side.text is None:
        return (f"Not a text file: {human_size(side.size)}, modified "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(side.mtime))}")
    return side.text + ("\n… (only the beginning is shown)" if side.truncated else "")


def _side_caption(side: conflicts.Side) -> str:
    if not side.exists:
        return f"{side.path}  (gone)"
    return f"{side.path}  ·  {human_size(side.size)}"


def _whose(name: str) -> str:
    return f"{name}'s" if name else ""


class ConflictsPanel(QWidget):
    load_requested = Signal(str)  # conflict copy path: read both versions
    resolve_requested = Signal(str, str)  # copy path, "original" | "copy" | "both"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._current = ""
        self._names: dict[str, str] = {}  # short device ID -> name
        self._sides: tuple[str, str] = ("", "")  # whose: in place, conflict copy
        self._texts: tuple[str, str] | None = None  # both texts, while a text pair is shown
        self.list = QListWidget()
        self.list.setObjectName("conflictList")
        self.list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.list.currentItemChanged.connect(self._selected)
        self.empty = QLabel("No conflicts.\n\nWhen two devices change the same file before "
                            "they see each other's change, both versions are kept and "
                            "listed here, so you can choose.")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setForegroundRole(self.empty.palette().ColorRole.PlaceholderText)

        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.this_head = QLabel(objectName="thisHead")
        self.other_head = QLabel(objectName="otherHead")
        self.this_caption = ElidedLabel(objectName="thisCaption")
        self.other_caption = ElidedLabel(objectName="otherCaption")
        for head in (self.this_head, self.other_head):
            head.setSizePolicy(self.this_caption.sizePolicy())  # never widen the panel
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

        self.keep_this = QPushButton(objectName="keepThis")
        self.keep_other = QPushButton(objectName="keepOther")
        self.keep_both = QPushButton("Keep both", objectName="keepBoth")
        self.keep_this.setToolTip("Keep the file in place; the conflict copy goes to "
                                  ".p2psync/versions")
        self.keep_other.setToolTip("The conflict copy replaces the file; the replaced "
                                   "version goes to .p2psync/versions")
        self.keep_both.setToolTip("Keep both files: the conflict copy gets an ordinary name")
        self.keep_this.clicked.connect(lambda: self._resolve("original"))
        self.keep_other.clicked.connect(lambda: self._resolve("copy"))
        self.keep_both.clicked.connect(lambda: self._resolve("both"))
        self.result = QLabel(objectName="conflictResult")  # what the last choice did
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._label_sides()

        detail = QWidget()
        grid = QGridLayout(detail)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(self.this_head, 0, 0)
        grid.addWidget(self.other_head, 0, 1)
        grid.addWidget(self.this_caption, 1, 0)
        grid.addWidget(self.other_caption, 1, 1)
        grid.addWidget(self.this_text, 2, 0)
        grid.addWidget(self.other_text, 2, 1)
        grid.setRowStretch(2, 1)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for b in (self.keep_this, self.keep_other, self.keep_both):
            buttons.addWidget(b)
        grid.addLayout(buttons, 3, 0, 1, 2)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.list)
        splitter.addWidget(detail)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 3)
        splitter.setSizes([240, 720])
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(splitter)
        v = QVBoxLayout(self)
        v.setContentsMargins(0, 0, 0, 0)
        v.addWidget(self.stack, 1)
        v.addWidget(self.result)
        self.result.hide()
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
            who = self._names.get(c.device) or f"device {c.device}"
            item.setToolTip(f"{c.original}\nconflict copy: {copy}\n"
                            f"the other version: {_whose(who)}, "
                            f"{c.when.astimezone():%Y-%m-%d %H:%M}")
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
        """Short device ID (7 characters) -> name, to say whose version a copy is."""
        self._names = names

    def show_sides(self, copy: str, this: conflicts.Side, other: conflicts.Side,
                   whose: tuple[str, str] = ("", "")) -> None:
        """Both versions, and whose they are: (device of the version in place, of the copy)."""
        if copy != self._current:
            return
        self._sides = whose
        self._label_sides(this, other)
        self.this_caption.setText(_side_caption(this))
        self.other_caption.setText(_side_caption(other))
        self.this_text.setPlainText(_side_text(this))
        self.other_text.setPlainText(_side_text(other))
        self._texts = (this.text, other.text) if conflicts.is_text_pair(this, other) else None
        if self._texts is not None:
            self._mark_differences(*self._texts)
        self._enable(this.exists or other.exists)

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        """A new palette (the desktop switched to a dark theme): a tint to match it."""
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and self._texts is not None:
            self._mark_differences(*self._texts)

    def _mark_differences(self, a: str, b: str) -> None:
        """Tint the lines that differ between the two versions."""
        a_lines, b_lines = a.splitlines(), b.splitlines()
        if len(a_lines) + len(b_lines) > 20_000:  # a huge file: no diff in the GUI thread
            return
        color = diff_tint(self.palette())  # the panel's: its children may not have it yet
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

    def on_resolved(self, copy: str, changed: list, error: str, text: str = "") -> None:
        """What the choice did: stays under the panel until the next choice."""
        self.result.setText(f"Could not resolve: {error}" if error else text or
                            "Done; the change goes to the other devices.")
        self.result.show()
        if error:
            self._enable(True)

    def current_copy(self) -> str:
        return self._current

    # --- internals -----------------------------------------------------------------
    def _selected(self, item: QListWidgetItem | None, _prev=None) -> None:
        if item is None:
            return
        copy = item.data(COPY_ROLE)
        self._current = copy
        c = conflicts.parse(copy)
        self._sides = ("", self._names.get(c.device, "") if c else "")
        self._clear()
        self.load_requested.emit(copy)

    def _label_sides(self, this: conflicts.Side | None = None,
                     other: conflicts.Side | None = None) -> None:
        """Heads and buttons that say whose version each side is, and when it was made."""
        mine, theirs = self._sides
        if mine and mine == theirs:  # one device, twice: the heads still tell them apart
            mine = theirs = ""
        when = [f" · {_when(side.mtime)}" if side is not None and side.exists else ""
                for side in (this, other)]
        self.this_head.setText(f"<b>In place</b>: {_whose(mine) or 'this'} version{when[0]}")
        self.other_head.setText(f"<b>Conflict copy</b>: {_whose(theirs) or 'the other'} "
                                f"version{when[1]}")
        self.keep_this.setText(f"Keep {_whose(mine)} version" if mine else
                               "Keep the version in place")
        self.keep_other.setText(f"Keep {_whose(theirs)} version" if theirs else
                                "Keep the conflict copy")

    def _clear(self) -> None:
        self._texts = None
        for w in (self.this_caption, self.other_caption):
            w.setText("")
        for edit in (self.this_text, self.other_text):
            edit.setPlainText("")
            edit.setExtraSelections([])
        self._label_sides()
        self._enable(False)

    def _enable(self, on: bool) -> None:
        for b in (self.keep_this, self.keep_other, self.keep_both):
            b.setEnabled(on)

    def _resolve(self, how: str) -> None:
        if self._current:
            self._enable(False)
            self.result.setText("Working…")
            self.result.show()
            self.resolve_requested.emit(self._current, how)
