"""Pairing in the app: "Invite a device" in one window, "Join with a code" in another.

Two real windows, each with its own engine and config dir, in one process; they find
each other by LAN discovery on loopback broadcast (a UDP port of the test's own). Every
wait is on what the windows show, or on the disk.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from app.engine.config import Config
from app.gui.pairing import InviteDialog, JoinDialog
from app.gui.window import LaunchOptions, MainWindow
from app.net.sharekey import new_key
from tests.gui.test_app import WAIT, click, close_and_wait
from tests.procs import start_run

CODE_RX = re.compile(r"^\d{1,2}-[a-z]+-[a-z]+$")


@pytest.fixture
def windows(qtbot, tmp_path):
    """make(name, folder=None, secret=None): a window on discovery port `port`."""
    made: list[MainWindow] = []
    port = 26000 + (hash(str(tmp_path)) % 900)

    def make(name: str, folder: Path | None = None, secret: str | None = None) -> MainWindow:
        w = MainWindow(LaunchOptions(config=Config(tmp_path / f"cfg-{name}"), folder=folder,
                                     secret=secret, name=name, listen=("127.0.0.1", 0),
                                     discovery=True, discovery_port=port,
                                     log_file=tmp_path / f"{name}.log"))
        w.show()
        made.append(w)
        return w

    make.port = port
    yield make
    for w in made:
        close_and_wait(qtbot, w)
        w.deleteLater()


def open_invitation(qtbot, alpha: MainWindow) -> InviteDialog:
    qtbot.waitUntil(lambda: bool(alpha.info), timeout=WAIT)
    click(qtbot, alpha.invite_button)
    dialog = alpha.invite_dialog
    qtbot.waitUntil(lambda: CODE_RX.match(dialog.code_label.text()) is not None, timeout=WAIT)
    assert dialog.isVisible()
    return dialog


def start_joining(qtbot, beta: MainWindow, folder: Path, code: str) -> JoinDialog:
    page = beta.setup_page
    page.set_folder(folder)
    page.name_edit.setText("beta")  # step 2 of the first start: this device's name
    click(qtbot, page.code_button)
    dialog = page.join_dialog
    qtbot.keyClicks(dialog.code_edit, code)
    click(qtbot, dialog.join_button)
    return dialog


def wrong(code: str) -> str:
    number, first, second = code.split("-")
    return f"{number}-{first}-{'zebra' if second != 'zebra' else 'apple'}"


def test_invite_in_one_window_join_in_another_same_words_and_the_folder_syncs(
        qtbot, tmp_path, windows):
    (tmp_path / "A").mkdir()
    (tmp_path / "A" / "plan.txt").write_text("from alpha")
    (tmp_path / "B").mkdir()
    alpha = windows("alpha", tmp_path / "A", new_key())
    beta = windows("beta")
    assert beta.pages.currentIndex() == 0  # the first start: no folder, no key
    invite = open_invitation(qtbot, alpha)
    code = invite.code_label.text()
    assert "works once, for the next 9:5" in invite.countdown.text()
    join = start_joining(qtbot, beta, tmp_path / "B", code)

    # both show the other's name and the same confirmation words
    qtbot.waitUntil(lambda: invite.pages.currentIndex() == 1, timeout=WAIT)
    qtbot.waitUntil(lambda: join.pages.currentIndex() == 1, timeout=WAIT)
    assert invite.ask_title.text() == "beta wants to join this share"
    assert join.ask_title.text() == "Pair with alpha?"
    words = invite.words.text()
    assert len(words.split()) == 3 and join.words.text() == words

    click(qtbot, join.pair_button)
    qtbot.waitUntil(lambda: join.wait_title.text() == "Waiting for alpha…", timeout=WAIT)
    click(qtbot, invite.pair_button)
    qtbot.waitUntil(lambda: invite.result_title.text() == "beta joined the share",
                    timeout=WAIT)
    # the joining window opened the share with the key that came over, and it syncs
    qtbot.waitUntil(lambda: beta.pages.currentIndex() == 1, timeout=WAIT)
    assert not join.isVisible()
    assert beta.secret == alpha.secret
    assert Config(tmp_path / "cfg-beta").share_key(tmp_path / "B") == alpha.secret
    qtbot.waitUntil(lambda: (tmp_path / "B" / "plan.txt").exists(), timeout=WAIT)
    assert (tmp_path / "B" / "plan.txt").read_text() == "from alpha"
    assert any(line.startswith("beta joined the share with code") for line in
               alpha.activity.lines)


def test_a_wrong_code_ends_the_invitation_in_both_windows(qtbot, tmp_path, windows):
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    alpha = windows("alpha", tmp_path / "A", new_key())
    beta = windows("beta")
    invite = open_invitation(qtbot, alpha)
    code = invite.code_label.text()
    join = start_joining(qtbot, beta, tmp_path / "B", wrong(code))
    qtbot.waitUntil(lambda: join.result_title.text() == "Not joined", timeout=WAIT)
    assert join.result_text.text() == ("Wrong code: alpha's invitation is over now (one try "
                                       "per code); ask for a new code.")
    qtbot.waitUntil(lambda: invite.result_title.text() == "Wrong code", timeout=WAIT)
    assert "tried a wrong code: this invitation is over" in invite.result_text.text()
    assert invite.again_button.isVisible()  # "New code"
    # the burned code is no use now, not even typed right
    click(qtbot, join.again_button)
    join.code_edit.setText(code)
    click(qtbot, join.join_button)
    qtbot.waitUntil(lambda: join.pages.currentIndex() == 2 and "invitation" in
                    join.result_text.text(), timeout=WAIT)
    assert beta.pages.currentIndex() == 0  # still the first start: nothing was joined


def test_an_expired_code_says_so_and_a_new_one_can_be_made(qtbot, tmp_path, windows,
                                                           monkeypatch):
    monkeypatch.setenv("P2PSYNC_INVITE_TTL", "1.5")
    (tmp_path / "A").mkdir()
    alpha = windows("alpha", tmp_path / "A", new_key())
    invite = open_invitation(qtbot, alpha)
    first = invite.code_label.text()
    qtbot.waitUntil(lambda: invite.result_title.text() == "The code expired", timeout=WAIT)
    assert invite.result_text.text() == f"The code {first} expired after 1.5 s."
    monkeypatch.setenv("P2PSYNC_INVITE_TTL", "600")
    click(qtbot, invite.again_button)
    qtbot.waitUntil(lambda: invite.pages.currentIndex() == 0 and CODE_RX.match(
        invite.code_label.text()) is not None and invite.code_label.text() != first,
        timeout=WAIT)


def test_the_code_field_names_a_word_typed_wrong_and_waits(qtbot, tmp_path, windows):
    (tmp_path / "B").mkdir()
    beta = windows("beta")
    beta.setup_page.set_folder(tmp_path / "B")
    click(qtbot, beta.setup_page.code_button)
    join = beta.setup_page.join_dialog
    qtbot.keyClicks(join.code_edit, "7-aple-")
    assert join.code_problem.isVisible()
    assert join.code_problem.text() == ("\u2717 \u201caple\u201d is not a word of pairing "
                                        "codes (did you mean \u201capple\u201d?)")
    assert not join.join_button.isEnabled()
    join.code_edit.setText("7-apple-riv")
    assert not join.code_problem.isVisible() and not join.join_button.isEnabled()
    qtbot.keyClicks(join.code_edit, "er")
    assert join.join_button.isEnabled()
    qtbot.keyClick(join.code_edit, Qt.Key.Key_Return)  # Return joins (nobody invites here)
    assert join.isVisible() and join.pages.currentIndex() == 0
    assert join.wait_title.text() == "Looking for invitation 7…"
    qtbot.waitUntil(lambda: join.result_title.text() == "Not joined", timeout=WAIT)
    assert join.result_text.text().startswith("No device nearby shows invitation 7")
    qtbot.keyClick(join, Qt.Key.Key_Escape)
    assert not join.isVisible()


def test_a_window_hears_devices_of_another_key_nearby(qtbot, tmp_path, windows):
    (tmp_path / "A").mkdir()
    alpha = windows("alpha", tmp_path / "A", new_key())
    other = start_run(tmp_path / "X", tmp_path / "cfg-x", "--name", "x", "--discovery-port",
                      str(windows.port), secret=new_key(), discovery=True)
    try:
        text = ("1 device nearby uses a different key: if one of them should be in this "
                "share, its key is mistyped (or pair it with an invitation)")
        qtbot.waitUntil(lambda: text[:1].upper() + text[1:] in alpha.activity.lines,
                        timeout=WAIT)
        qtbot.waitUntil(lambda: alpha.banner.isVisible(), timeout=WAIT)
        assert alpha.banner_text.text() == text[:1].upper() + text[1:] + "."
    finally:
        assert other.stop() == 0, other.log()


def test_a_new_share_opens_and_invites_at_once_from_the_first_start(qtbot, tmp_path, windows):
    (tmp_path / "A").mkdir()
    alpha = windows("alpha")
    page = alpha.setup_page
    page.set_folder(tmp_path / "A")
    click(qtbot, page.new_button)
    assert page.invite_button.isDefault()  # the suggested way on: invite a device
    click(qtbot, page.invite_button)
    qtbot.waitUntil(lambda: alpha.invite_dialog is not None and CODE_RX.match(
        alpha.invite_dialog.code_label.text()) is not None, timeout=WAIT)
    assert alpha.pages.currentIndex() == 1 and alpha.invite_dialog.isVisible()
    click(qtbot, alpha.invite_dialog.findChild(type(page.invite_button), "cancelInvite"))
    qtbot.waitUntil(lambda: any(line.startswith(f"Invitation {alpha.invite_dialog.code}: "
                                                "the invitation was cancelled")
                                for line in alpha.activity.lines), timeout=WAIT)
