"""The file table's columns in a narrow window: the path keeps its room.

The size, modified and state columns have fixed widths that fit their longest text;
beside the details pane, in a window 800 pixels wide, they took all of the table and
left the path (the stretched first column) a few pixels: "b…o" for every file. When
the table is resized, the state column (then the modified one) gives up width, down
to a minimum, until the path has a fair share again; a wide table gets them back.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QTableView

PATH_SHARE = 0.4  # of the table's width, kept for the path where the others can shrink
MIN_WIDTH = 90  # a column is never made narrower than this


class PathKeepsRoom(QObject):
    """Event filter on a table's viewport; `widths`: column -> its full width, in the
    order they give up room."""

    def __init__(self, view: QTableView, widths: dict[int, int]) -> None:
        super().__init__(view)
        self.view = view
        self.widths = widths
        view.viewport().installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.Resize:
            self.fit()
        return False

    def fit(self) -> None:
        header = self.view.horizontalHeader()
        width = self.view.viewport().width()
        others = sum(header.sectionSize(c) for c in range(1, header.count())
                     if c not in self.widths and not header.isSectionHidden(c))
        over = others + sum(self.widths.values()) - int(width * (1 - PATH_SHARE))
        for col, full in self.widths.items():
            give = min(max(over, 0), full - MIN_WIDTH)
            header.resizeSection(col, full - give)
            over -= give
