"""The conflicts view reads in a light and in a dark palette, and cuts long paths in the
middle: the real panel, its real text widgets, offscreen."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette

from app.core.conflicts import Side
from app.gui.conflicts import MIN_CONTRAST, TEXT_CONTRAST, ConflictsPanel, contrast
from app.gui.elide import ElidedLabel

COPY = "Notes/2026/projects/file_007_notes.sync-conflict-20261127-035649-ABCDEFG.txt"


def palette(base: str, text: str, highlight: str) -> QPalette:
    p = QPalette()
    for group in (QPalette.ColorGroup.Active, QPalette.ColorGroup.Inactive):
        p.setColor(group, QPalette.ColorRole.Base, QColor(base))
        p.setColor(group, QPalette.ColorRole.Text, QColor(text))
        p.setColor(group, QPalette.ColorRole.Window, QColor(base))
        p.setColor(group, QPalette.ColorRole.WindowText, QColor(text))
        p.setColor(group, QPalette.ColorRole.Highlight, QColor(highlight))
    return p


PALETTES = {
    "light": palette("#ffffff", "#000000", "#308cc6"),  # Fusion's own
    "dark": palette("#1e1e1e", "#e6e6e6", "#2a82da"),  # a common dark theme
    "dark, dim highlight": palette("#202020", "#dddddd", "#303438"),
}


@pytest.mark.parametrize("name", PALETTES)
def test_changed_lines_stand_out_and_stay_readable(qtbot, name):
    panel = ConflictsPanel()
    qtbot.addWidget(panel)
    panel.setPalette(PALETTES[name])
    panel.set_device_names({"ABCDEFG": "laptop"})
    panel.set_conflicts([COPY])
    panel.show_sides(COPY, Side("a", True, 10, 1e9, "same\nmine\n"),
                     Side("b", True, 10, 1e9, "same\ntheirs\n"), ("desktop", "laptop"))
    for edit in (panel.this_text, panel.other_text):
        marks = edit.extraSelections()
        assert [m.cursor.block().text() for m in marks] in (["mine"], ["theirs"])
        tint = marks[0].format.background().color()
        base = edit.palette().color(QPalette.ColorRole.Base)
        text = edit.palette().color(QPalette.ColorRole.Text)
        assert contrast(tint, base) >= MIN_CONTRAST, (name, tint.name(), base.name())
        assert contrast(text, tint) >= TEXT_CONTRAST, (name, tint.name(), text.name())
    assert panel.other_head.text().startswith("<b>Conflict copy</b>: laptop's version · ")
    assert panel.keep_this.text() == "Keep desktop's version"


def test_long_paths_are_cut_in_the_middle(qtbot):
    label = ElidedLabel(COPY)
    qtbot.addWidget(label)
    label.resize(260, 30)
    label.show()
    shown = label.shown()
    assert "…" in shown and shown.startswith("Notes/") and shown.endswith("ABCDEFG.txt")
    assert label.text() == COPY and label.toolTip() == COPY

    panel = ConflictsPanel()
    qtbot.addWidget(panel)
    panel.set_conflicts([COPY])
    assert panel.list.textElideMode() == Qt.TextElideMode.ElideMiddle
    assert panel.list.item(0).text() == "Notes/2026/projects/file_007_notes.txt"
