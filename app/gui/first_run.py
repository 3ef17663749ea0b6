"""The first start: choose a folder, name this device, start a new share or join one.

A page of the main window (no modal wizard): it says what to do, one step after the
other. The path it suggests is pairing by a short code (app/gui/pairing.py): the first
device starts a new share and invites the others ("Open and invite a device"), each
other device joins with the code it shows ("Join with a code"). The long share key stays,
for scripts: shown with a Copy button when a share starts, and accepted in a field below.
A generated key pasted there with a typo is caught as it is typed, with the group to
look at (app/net/sharekey.py), and Join waits until it is right; a key typed (not
pasted) that is easy to guess gets a warning under the field, not a dialog: the user may
still join with it.
The page decides nothing on disk: it emits `ready(folder, key, device_name)` (and sets
`invite_next` when the user asked to invite a device once the share is open) and the
window stores the choices and starts the engine.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QFont, QFontDatabase, QGuiApplication, QPalette
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.engine.config import Config, new_share_key
from app.gui.models import app_icon
from app.net import sharekey
from app.net.keystrength import app_warning
from app.net.peertext import NAME_MAX


def _title(text: str, scale: float = 1.6) -> QLabel:
    label = QLabel(text)
    font = label.font()
    font.setPointSizeF(font.pointSizeF() * scale)
    font.setWeight(QFont.Weight.DemiBold)
    label.setFont(font)
    return label


def _muted(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setForegroundRole(QPalette.ColorRole.PlaceholderText)  # secondary text, any theme
    return label


def key_font(scale: float = 1.5) -> QFont:
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    font.setPointSizeF(font.pointSizeF() * scale)
    font.setWeight(QFont.Weight.DemiBold)
    return font


class KeyPanel(QWidget):
    """A share key in large type, selectable, with a Copy button."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.key_label = QLabel()
        self.key_label.setObjectName("shareKey")
        self.key_label.setFont(key_font())
        self.key_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setObjectName("copyKey")
        self.copy_button.clicked.connect(self._copy)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.key_label)
        row.addWidget(self.copy_button)
        row.addStretch(1)

    def set_key(self, key: str) -> None:
        self.key_label.setText(key)
        self.copy_button.setText("Copy")

    def _copy(self) -> None:
        QGuiApplication.clipboard().setText(self.key_label.text())
        self.copy_button.setText("Copied")


class SetupPage(QWidget):
    """Choose a folder, then start a new share or join one."""

    ready = Signal(object, str, str)  # folder (Path), share key, device name

    def __init__(self, device_name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.folder: Path | None = None
        self._new_key = ""
        self.invite_next = False  # "Open and invite a device": the window invites once open
        self.join_options = None  # app.gui.pairing.JoinOptions, from the window
        self.join_dialog = None
        self.steps = QStackedWidget()
        self.steps.addWidget(self._choose_page(device_name))
        self.steps.addWidget(self._key_page())
        outer = QVBoxLayout(self)
        outer.addStretch(1)
        row = QHBoxLayout()
        row.addStretch(1)
        card = QFrame()
        card.setFrameShape(QFrame.Shape.StyledPanel)
        card.setMaximumWidth(640)
        card_layout = QVBoxLayout(card)
        card_layout.setContentsMargins(28, 24, 28, 24)
        card_layout.addWidget(self.steps)
        row.addWidget(card, 3)
        row.addStretch(1)
        outer.addLayout(row)
        outer.addStretch(2)
        self._update_enabled()

    # --- step 1: folder, name, new or join ----------------------------------------------
    def _choose_page(self, device_name: str) -> QWidget:
        page = QWidget()
        v = QVBoxLayout(page)
        v.setContentsMargins(0, 0, 0, 0)
        v.setSpacing(10)
        head = QHBoxLayout()
        icon = QLabel()
        icon.setPixmap(app_icon().pixmap(QSize(48, 48)))
        head.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        head.addWidget(_title("Share a folder with your other computers"), 1)
        v.addLayout(head)
        v.addWidget(_muted("p2psync keeps one folder identical on the devices of this "
                           "network, without a cloud. Pick the folder, then start a new "
                           "share here or join one that another device started."))
        v.addSpacing(10)
        grid = QGridLayout()
        grid.setHorizontalSpacing(14)
        grid.setVerticalSpacing(20)

        self.choose_button = QPushButton("Choose a folder…")
        self.choose_button.setObjectName("chooseFolder")
        self.choose_button.clicked.connect(self.choose_folder)
        self.folder_label = _muted("No folder chosen yet")
        self.folder_label.setObjectName("folderLabel")
        row = QHBoxLayout()
        row.addWidget(self.choose_button)
        row.addWidget(self.folder_label, 1)
        self._step(grid, 0, "The folder to share", row)

        self.name_edit = QLineEdit(device_name)
        self.name_edit.setMaxLength(NAME_MAX)  # as every peer shows it
        self.name_edit.setObjectName("deviceName")
        self.name_edit.setPlaceholderText("How the other devices see this one")
        self._step(grid, 1, "The name of this device", self.name_edit)

        self.new_button = QPushButton("Start a new share")
        self.new_button.setObjectName("newShare")
        self.new_button.setDefault(True)
        self.new_button.clicked.connect(self._start_new)
        self.code_button = QPushButton("Join with a code…")
        self.code_button.setObjectName("joinWithCode")
        self.code_button.setToolTip("Type the short code another device shows under "
                                    "“Invite a device”")
        self.code_button.clicked.connect(self.join_with_code)
        row = QHBoxLayout()
        row.addWidget(self.new_button)
        row.addWidget(self.code_button)
        row.addStretch(1)
        self.key_edit = QLineEdit()
        self.key_edit.setObjectName("joinKey")
        self.key_edit.setPlaceholderText("or paste the long share key of another device")
        self.key_edit.textChanged.connect(self._judge_key)
        self.key_edit.textChanged.connect(self._update_enabled)
        self.key_edit.returnPressed.connect(self._join)
        self.join_button = QPushButton("Join")
        self.join_button.setObjectName("joinShare")
        self.join_button.clicked.connect(self._join)
        key_row = QHBoxLayout()
        key_row.addWidget(self.key_edit, 1)
        key_row.addWidget(self.join_button)
        self.key_warning = QLabel()
        self.key_warning.setObjectName("keyWarning")
        self.key_warning.setWordWrap(True)
        self.key_warning.hide()
        join = QVBoxLayout()
        join.addLayout(row)
        join.addSpacing(4)
        join.addLayout(key_row)
        join.addWidget(self.key_warning)
        self._step(grid, 2, "Start a new share, or join one", join)
        grid.setColumnStretch(1, 1)
        v.addLayout(grid)
        self.message = QLabel()
        self.message.setObjectName("setupMessage")
        self.message.setWordWrap(True)
        self.message.hide()
        v.addWidget(self.message)
        v.addStretch(1)
        return page

    @staticmethod
    def _step(grid: QGridLayout, row: int, caption: str, content) -> None:
        number = _title(str(row + 1), 1.5)
        number.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignHCenter)
        grid.addWidget(number, row, 0, Qt.AlignmentFlag.AlignTop)
        col = QVBoxLayout()
        col.setSpacing(4)
        label = QLabel(f"<b>{caption}</b>")
        col.addWidget(label)
        if isinstance(content, QWidget):
            col.addWidget(content)
        else:
            col.addLayout(content)
        grid.addLayout(col, row, 1)

    # --- step 2 (new share only): the key to take to the other devices -----------------
    def _key_page(self) -> QWidget:
        page = QWidget()
        v = QVBoxLayout(page)
        v.setContentsMargins(0, 0, 0, 0)
        v.setSpacing(10)
        v.addWidget(_title("Your new share"))
        self.key_folder = _muted("")
        v.addWidget(self.key_folder)
        v.addWidget(_muted("Open it, then invite your other devices: p2psync shows a short "
                           "code, and each of them joins with \u201cJoin with a code\u201d. "
                           "Only devices that know the share key get in. Scripts can be given "
                           "the key itself (p2psync run --secret KEY):"))
        self.key_panel = KeyPanel()
        v.addWidget(self.key_panel)
        v.addSpacing(6)
        self.open_button = QPushButton("Open the share")
        self.open_button.setObjectName("openShare")
        self.open_button.clicked.connect(self._open_new)
        self.invite_button = QPushButton("Open and invite a device")
        self.invite_button.setObjectName("openAndInvite")
        self.invite_button.setDefault(True)
        self.invite_button.clicked.connect(lambda: self._open_new(invite=True))
        back = QPushButton("Back")
        back.clicked.connect(lambda: self.steps.setCurrentIndex(0))
        row = QHBoxLayout()
        row.addWidget(back)
        row.addStretch(1)
        row.addWidget(self.open_button)
        row.addWidget(self.invite_button)
        v.addLayout(row)
        v.addStretch(1)
        return page

    # --- actions -------------------------------------------------------------------
    def set_folder(self, folder: Path | None) -> None:
        self.folder = folder
        self.folder_label.setText(str(folder) if folder else "No folder chosen yet")
        self._update_enabled()

    def show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))

    def choose_folder(self) -> None:
        start = str(self.folder) if self.folder else str(Path.home())
        chosen = QFileDialog.getExistingDirectory(self, "Choose the folder to share", start)
        if chosen:
            self.set_folder(Path(chosen))
            self.show_message("")

    def _name(self) -> str:
        return self.name_edit.text().strip()

    def _update_enabled(self) -> None:
        have = self.folder is not None
        text = self.key_edit.text().strip()
        self.new_button.setEnabled(have)
        self.code_button.setEnabled(have)
        self.key_edit.setEnabled(have)
        self.join_button.setEnabled(have and bool(text)
                                    and sharekey.problem(text, typing=True) is None)

    def _judge_key(self) -> None:
        """Under the key field: a typo in a generated key (Join waits), else a weak key."""
        text = self.key_edit.text().strip()
        typo = sharekey.problem(text, typing=True) if text else None
        if typo:
            self._show_typo(typo)
            return
        warning = app_warning(text) if text else None
        self.key_warning.setText(f"\u26a0 {warning}" if warning else "")
        self.key_warning.setVisible(bool(warning))

    def _show_typo(self, typo: str) -> None:
        self.key_warning.setText(f"\u2717 This is not the key p2psync generated: "
                                 f"{typo}. Copy it again from the device that shows it.")
        self.key_warning.setVisible(True)

    def _start_new(self) -> None:
        if self.folder is None:
            return
        self._new_key = new_share_key()
        self.key_panel.set_key(self._new_key)
        self.key_folder.setText(f"for the folder {self.folder}")
        self.steps.setCurrentIndex(1)

    def _open_new(self, invite: bool = False) -> None:
        if self.folder is not None and self._new_key:
            self.invite_next = invite
            self.ready.emit(self.folder, self._new_key, self._name())

    def _join(self) -> None:
        text = self.key_edit.text().strip()
        if self.folder is None or not text or not self.join_button.isEnabled():
            return
        try:
            key = sharekey.normalized(text)
        except sharekey.KeyTypo as e:  # a group still short when Join was pressed
            self._show_typo(str(e))
            return
        self.invite_next = False
        self.ready.emit(self.folder, key, self._name())

    def join_with_code(self) -> None:
        """The suggested way in: type the short code another device's invitation shows."""
        from app.gui.pairing import JoinDialog, JoinOptions

        if self.folder is None:
            return
        options = self.join_options or JoinOptions(config=Config())
        name = self._name() or options.config.device_name()
        self.join_dialog = JoinDialog(options, name, self, folder=self.folder)
        self.join_dialog.joined.connect(self._joined)
        self.join_dialog.open()

    def _joined(self, key: str, inviter: str) -> None:
        if self.folder is not None:
            self.invite_next = False
            self.ready.emit(self.folder, key, self._name())
