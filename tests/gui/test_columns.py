"""The path column keeps its room in a narrow window (app/gui/columns.py)."""

from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import QHeaderView, QTableView

from app.gui.columns import MIN_WIDTH, PATH_SHARE, PathKeepsRoom


def _table(qtbot) -> tuple[QTableView, QHeaderView]:
    view = QTableView()
    view.setModel(QStandardItemModel(3, 4))
    qtbot.addWidget(view)
    h = view.horizontalHeader()
    h.setStretchLastSection(False)
    h.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    for col, width in ((1, 100), (2, 160), (3, 300)):
        h.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
        h.resizeSection(col, width)
    PathKeepsRoom(view, {3: 300, 2: 160})
    return view, h


def test_narrow_the_state_column_gives_way_wide_it_comes_back(qtbot):
    view, h = _table(qtbot)
    view.resize(800, 300)
    view.show()
    qtbot.waitExposed(view)
    qtbot.waitUntil(lambda: h.sectionSize(3) < 300)
    width = view.viewport().width()
    assert h.sectionSize(0) >= width * PATH_SHARE - 2, (h.sectionSize(0), width)
    assert h.sectionSize(3) >= MIN_WIDTH and h.sectionSize(2) == 160

    view.resize(1400, 300)
    qtbot.waitUntil(lambda: h.sectionSize(3) == 300)
    assert h.sectionSize(2) == 160 and h.sectionSize(0) > 600


def test_very_narrow_both_give_way_but_never_below_the_minimum(qtbot):
    view, h = _table(qtbot)
    view.resize(300, 300)
    view.show()
    qtbot.waitExposed(view)
    qtbot.waitUntil(lambda: h.sectionSize(3) == MIN_WIDTH)
    assert h.sectionSize(2) == MIN_WIDTH
