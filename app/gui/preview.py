"""The app's Preview: what "Sync now" would do, per device, before it does it.

The same preview as `sync --dry-run` (app/engine/preview.py), of the app's running
node: its latest plan and what the connected devices would fetch from us. The worker
works it out off the UI thread (`collect`, in a helper thread of the engine's loop)
and hands over one `PreviewResult`: the totals of every step, and the first
ROWS_SHOWN steps for the table (a model, no widget per file), so a preview of a
million changes costs the window no more than one of ten thousand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.core.units import human_size
from app.engine.preview import Preview, Step

ROWS_SHOWN = 10_000  # steps the table holds; the totals count them all

LABELS = {
    "fetch": "Fetch", "send": "Send", "delete": "Delete here",
    "delete_on_peer": "Delete on device", "rename": "Rename here",
    "rename_on_peer": "Rename on device", "conflict": "Conflict",
    "mkdir": "New folder", "error": "Cannot sync",
}
HEADERS = ("Action", "File", "Device", "Size", "Details")
DISPLAY = Qt.ItemDataRole.DisplayRole
TOOLTIP = Qt.ItemDataRole.ToolTipRole
ALIGN = Qt.ItemDataRole.TextAlignmentRole
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
_ROOT = QModelIndex()


@dataclass(frozen=True)
class PreviewResult:
    steps: list[Step]  # the first ROWS_SHOWN
    count: int  # every step
    totals: list[str]  # one line per device: "laptop: 3 to fetch (1.2 MB), 1 to send (4 KB)"
    held: str | None  # what the mass-deletion guard would hold back
    names: dict[str, str]  # device ID -> how people know it


def collect(preview: Preview, name_of: Callable[[str], str],
            limit: int = ROWS_SHOWN) -> PreviewResult:
    """Run the preview (in a worker thread): keep `limit` steps, count them all."""
    steps: list[Step] = []
    count = 0
    for step in preview.steps():
        count += 1
        if len(steps) < limit:
            steps.append(step)
    names = {d: name_of(d) for d in {s.peer for s in steps} | set(preview.totals)}
    totals = [f"{names[d]}: {totals_line(t.counts, t.bytes)}"
              for d, t in preview.totals.items()]
    held = None
    if preview.held is not None:
        h = preview.held
        held = (f"Held back: {h.deletes:,} of {h.of:,} files deleted on {name_of(h.device)} "
                "(you will be asked before they are deleted here)")
    for device, h in preview.held_on_peer.items():
        held = (f"Held back on {name_of(device)}: {h.deletes:,} of its {h.of:,} files "
                "deleted here (it asks before deleting them)")
    return PreviewResult(steps, count, totals, held, names)


def totals_line(counts, nbytes: int) -> str:
    parts = [f"{counts[a]:,} {LABELS[a].lower()}" for a in LABELS if counts.get(a)]
    if not parts:
        return "nothing to do"
    return ", ".join(parts) + f" — {human_size(nbytes)} over the network"


class StepsModel(QAbstractTableModel):
    """The preview's steps, one row each, painted by the view."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._steps: list[Step] = []
        self._names: dict[str, str] = {}

    def set_steps(self, steps: list[Step], names: dict[str, str]) -> None:
        self.beginResetModel()
        self._steps, self._names = steps, names
        self.endResetModel()

    def step(self, row: int) -> Step:
        return self._steps[row]

    def rowCount(self, parent=_ROOT) -> int:  # noqa: N802 - Qt's name
        return 0 if parent.isValid() else len(self._steps)

    def columnCount(self, parent=_ROOT) -> int:  # noqa: N802 - Qt's name
        return 0 if parent.isValid() else len(HEADERS)

    def headerData(self, section: int, orientation, role=DISPLAY):  # noqa: N802
        if role == DISPLAY and orientation == Qt.Orientation.Horizontal:
            return HEADERS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role=DISPLAY):
        if not index.isValid():
            return None
        s = self._steps[index.row()]
        col = index.column()
        if role == ALIGN and col == 3:
            return _RIGHT
        if role not in (DISPLAY, TOOLTIP):
            return None
        if col == 0:
            return LABELS[s.kind]
        if col == 1:
            return s.path
        if col == 2:
            return self._names.get(s.peer, s.peer[:7])
        if col == 3:
            return human_size(s.bytes) if s.bytes else ""
        return _details(s)


def _details(s: Step) -> str:
    if s.source is not None:
        return f"from {s.source}"
    if s.copy is not None:  # beside the file: its name is enough
        return f"both kept: {s.copy.rpartition('/')[2]}"
    return s.why or ""


class PreviewDialog(QDialog):
    """Not modal: the window goes on meanwhile. "Sync now" closes it and syncs."""

    sync_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("previewDialog")
        self.setWindowTitle("Preview of Sync now")
        self.resize(1120, 480)
        v = QVBoxLayout(self)
        self.totals = QLabel(objectName="previewTotals")
        self.totals.setWordWrap(True)
        self.totals.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        v.addWidget(self.totals)
        self.model = StepsModel(self)
        self.table = QTableView(objectName="previewTable")
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        for col, width in ((0, 110), (2, 140), (3, 80), (4, 390)):  # room for a copy's name
            header.resizeSection(col, width)
        v.addWidget(self.table, 1)
        self.note = QLabel(objectName="previewNote")
        self.note.setWordWrap(True)
        v.addWidget(self.note)
        buttons = QDialogButtonBox()
        self.sync_button = buttons.addButton("Sync now", QDialogButtonBox.ButtonRole.AcceptRole)
        self.close_button = buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.sync_button.clicked.connect(self._sync)
        self.close_button.clicked.connect(self.hide)
        v.addWidget(buttons)

    def waiting(self) -> None:
        """Shown at once; the result follows from the engine."""
        self.model.set_steps([], {})
        self.totals.setText("Working out what Sync now would do…")
        self.note.setText("")
        self.sync_button.setEnabled(False)
        self.show()
        self.raise_()

    def show_result(self, result: PreviewResult | str) -> None:
        """The worker's answer: a PreviewResult, or one sentence of why there is none."""
        self.sync_button.setEnabled(True)
        if isinstance(result, str):
            self.totals.setText(result)
            return
        lines = result.totals or ["No device is connected: nothing would be synced now."]
        if result.held:
            lines.append(result.held)
        self.totals.setText("<br>".join(f"<b>{_escape(line)}</b>" if i < len(result.totals)
                                        else _escape(line) for i, line in enumerate(lines)))
        self.model.set_steps(result.steps, result.names)
        shown = len(result.steps)
        if result.count > shown:
            self.note.setText(f"Showing the first {shown:,} of {result.count:,} changes.")
        elif not result.count:
            self.note.setText("In sync: Sync now has nothing to do.")
        else:
            self.note.setText("Nothing has changed yet: this is what Sync now would do.")

    def _sync(self) -> None:
        self.hide()
        self.sync_requested.emit()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
