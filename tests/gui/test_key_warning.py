"""The first-start page warns under the key field when a typed key is easy to guess."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from app.engine.config import new_share_key
from app.gui.first_run import SetupPage


def page_with_folder(qtbot, tmp_path) -> SetupPage:
    page = SetupPage("laptop")
    qtbot.addWidget(page)
    page.show()
    page.set_folder(tmp_path)
    return page


def test_a_weak_typed_key_shows_a_warning_under_the_field_not_a_dialog(qtbot, tmp_path):
    page = page_with_folder(qtbot, tmp_path)
    assert not page.key_warning.isVisible()
    qtbot.keyClicks(page.key_edit, "123456")
    assert page.key_warning.isVisible()
    text = page.key_warning.text()
    assert "easy to guess" in text and "most common passwords" in text
    assert "p2psync invite" in text and "generates" in text
    assert QApplication.activeModalWidget() is None
    # the field above it, the warning below it
    assert page.key_warning.mapTo(page, page.key_warning.rect().topLeft()).y() > \
        page.key_edit.mapTo(page, page.key_edit.rect().bottomLeft()).y()
    # a warning, not a lock: joining with it still works
    assert page.join_button.isEnabled()
    with qtbot.waitSignal(page.ready) as got:
        qtbot.keyClick(page.key_edit, Qt.Key.Key_Return)
    assert got.args[1] == "123456"


def test_a_pasted_generated_key_or_a_cleared_field_shows_none(qtbot, tmp_path):
    page = page_with_folder(qtbot, tmp_path)
    page.key_edit.setText("letmein")
    assert page.key_warning.isVisible()
    page.key_edit.setText(new_share_key())
    assert not page.key_warning.isVisible()
    page.key_edit.setText("letmein")
    page.key_edit.setText("")
    assert not page.key_warning.isVisible()


def test_a_typo_in_a_generated_key_is_caught_as_it_is_typed_and_join_waits(qtbot, tmp_path):
    page = page_with_folder(qtbot, tmp_path)
    key = new_share_key()
    typo = key[:9] + ("A" if key[9] != "A" else "B") + key[10:]  # in the 2nd group
    qtbot.keyClicks(page.key_edit, typo[:13])  # the 2nd group, not yet finished
    assert not page.key_warning.isVisible() and page.join_button.isEnabled()
    qtbot.keyClicks(page.key_edit, typo[13])  # its dash: the 2nd group is done
    assert page.key_warning.isVisible()
    assert page.key_warning.text() == ("\u2717 This is not the key p2psync generated: the 2nd "
                                       "group has a typo. Copy it again from the device that "
                                       "shows it.")
    assert not page.join_button.isEnabled()
    qtbot.keyClicks(page.key_edit, typo[14:])
    assert not page.join_button.isEnabled()
    with qtbot.assertNotEmitted(page.ready):
        qtbot.keyClick(page.key_edit, Qt.Key.Key_Return)
    page.key_edit.setText(key.lower())  # the right key, typed in lower case
    assert not page.key_warning.isVisible() and page.join_button.isEnabled()
    with qtbot.waitSignal(page.ready) as got:
        qtbot.keyClick(page.key_edit, Qt.Key.Key_Return)
    assert got.args[1] == key


def test_a_key_one_character_short_at_the_end_is_caught_when_join_is_pressed(qtbot, tmp_path):
    page = page_with_folder(qtbot, tmp_path)
    key = new_share_key()
    page.key_edit.setText(key[:-1])  # the 4th group is 5 long: it may still be typed on
    assert not page.key_warning.isVisible()
    with qtbot.assertNotEmitted(page.ready):
        qtbot.keyClick(page.key_edit, Qt.Key.Key_Return)
    assert page.key_warning.text().startswith("\u2717 This is not the key p2psync generated: "
                                              "the 4th group has 5 characters, not 6")
