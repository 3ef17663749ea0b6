"""The activity log: a short, newest-last account of what happened.

Received files, deletions, moves, conflicts, errors, peers joining and leaving,
connections refused (a wrong share key, an address locked out). The
worker already folds bursts into one line ("Received 5,000 files ..."); this widget
keeps the last MAX_LINES lines (a plain text document: no widget per entry).
"""

from __future__ import annotations

import time

from PySide6.QtWidgets import QPlainTextEdit, QWidget

MAX_LINES = 2000
MARKS = {"conflict": "⚠", "error": "✖", "peer": "●", "received": "↓", "local": "↑",
         "deleted": "–", "moved": "→", "role": "◆", "paused": "Ⅱ", "info": "·",
         "refused": "⊘"}


class ActivityLog(QPlainTextEdit):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("activityLog")
        self.setReadOnly(True)
        self.setMaximumBlockCount(MAX_LINES)
        self.setPlaceholderText("Nothing happened yet. Files received, conflicts and "
                                "devices joining or leaving are listed here.")
        self.lines: list[str] = []  # the texts, for tests and the tray's last message

    def add(self, entries) -> None:
        text = []
        for a in entries:
            stamp = time.strftime("%H:%M:%S", time.localtime(a.when))
            text.append(f"{stamp}  {MARKS.get(a.kind, '·')}  {a.text}")
            self.lines.append(a.text)
        del self.lines[:-MAX_LINES]
        if text:
            bar = self.verticalScrollBar()
            at_end = bar.value() >= bar.maximum() - 2
            self.appendPlainText("\n".join(text))
            if at_end:
                bar.setValue(bar.maximum())
