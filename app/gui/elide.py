"""Long paths cut in the middle, so both the folder and the file name stay in sight.

"Notes/2026/…/file_007_notes.txt" says more than "Notes/2026/projects/cli…": every
place the window shows a path elides it in the middle (views: `setTextElideMode`;
labels: `ElidedLabel`), and the whole text is in the tooltip. A sentence in such a view
(a file's state and why) is cut at its end instead (`EndCut`, where the model says
`SENTENCE_ROLE`): "Error: not synced: a symbolic li…" says what happened, "Error: not
sy…stay inside it)" does not. A short label keeps its end ("Inc…84%").
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSizePolicy, QStyledItemDelegate, QWidget

SENTENCE_ROLE = Qt.ItemDataRole.UserRole + 2  # true: the cell's text is cut at its end


class ElidedLabel(QLabel):
    """A one-line label that cuts its text in the middle to fit, never widening its parent."""

    def __init__(self, text: str = "", parent: QWidget | None = None, **kwargs) -> None:
        super().__init__(parent, **kwargs)
        self._full = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        self._full = text
        self.setToolTip(text)
        self._fit()

    def text(self) -> str:
        """The whole text (what is painted may be cut)."""
        return self._full

    def shown(self) -> str:
        return super().text()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        width = self.contentsRect().width()
        shown = self._full if width <= 0 else self.fontMetrics().elidedText(
            self._full, Qt.TextElideMode.ElideMiddle, width)
        super().setText(shown)


class EndCut(QStyledItemDelegate):
    """Cuts the text of a cell whose model says SENTENCE_ROLE at its end, whatever the
    view's own mode."""

    def initStyleOption(self, option, index) -> None:  # noqa: N802 - Qt's name
        super().initStyleOption(option, index)
        if index.data(SENTENCE_ROLE):
            option.textElideMode = Qt.TextElideMode.ElideRight
