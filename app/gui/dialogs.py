"""The Settings and About dialogs.

Settings edits app.gui.prefs.Prefs and start at login (app.gui.autostart); it only
collects the choices: the window saves them (Config.update) and restarts the engine
when one of them needs it. About says what this is, under which licence, and where
its config and its log live, with buttons that open them.
"""

from __future__ import annotations

import platform
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, qVersion
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app import __version__
from app.gui.prefs import Prefs
from app.net.peertext import NAME_MAX

LICENCE = "MIT"  # pyproject.toml


class SettingsDialog(QDialog):
    def __init__(self, prefs: Prefs, *, start_at_login: bool, tray: bool,
                 discovery_port: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setObjectName("settingsDialog")
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        self.name = QLineEdit(prefs.device_name, objectName="settingsName")
        self.name.setMaxLength(NAME_MAX)  # as every peer shows it
        self.name.setPlaceholderText("How the other devices see this one")
        form.addRow("Device name", self.name)
        self.port = QSpinBox(objectName="settingsPort")
        self.port.setRange(1, 65535)
        self.port.setValue(prefs.listen_port)
        self.port.setToolTip("The TCP port the other devices connect to (let it in through "
                             "the firewall); another free port is used when it is taken")
        form.addRow("Listening port (TCP)", self.port)
        self.discovery = QCheckBox(f"Find the devices of this network (LAN discovery, UDP "
                                   f"port {discovery_port})", objectName="settingsDiscovery")
        self.discovery.setChecked(prefs.discovery)
        form.addRow("", self.discovery)
        self.days = QDoubleSpinBox(objectName="settingsDays")
        self.days.setDecimals(0)
        self.days.setRange(1, 3650)
        self.days.setSuffix(" days")
        self.days.setValue(prefs.versions_days)
        self.days.setToolTip("Replaced and deleted files are kept in .p2psync/versions in "
                             "the folder this long, then removed")
        form.addRow("Keep replaced versions", self.days)
        self.login = QCheckBox("Start p2psync when I log in", objectName="settingsLogin")
        self.login.setChecked(start_at_login)
        form.addRow("", self.login)
        self.tray = QCheckBox("Closing the window keeps p2psync running in the tray",
                              objectName="settingsTray")
        self.tray.setChecked(prefs.close_to_tray and tray)
        self.tray.setEnabled(tray)
        if not tray:
            self.tray.setToolTip("This desktop has no system tray: closing the window quits")
            self.tray.setText(self.tray.text() + " (no tray on this desktop)")
        form.addRow("", self.tray)
        note = QLabel("A new name, port or discovery setting reconnects to the other "
                      "devices at once.")
        note.setWordWrap(True)
        note.setForegroundRole(note.palette().ColorRole.PlaceholderText)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.name.textChanged.connect(
            lambda t: self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(
                bool(t.strip())))
        v = QVBoxLayout(self)
        v.addLayout(form)
        v.addWidget(note)
        v.addWidget(self.buttons)

    def prefs(self) -> Prefs:
        return Prefs(device_name=self.name.text().strip(), listen_port=self.port.value(),
                     discovery=self.discovery.isChecked(), versions_days=self.days.value(),
                     close_to_tray=self.tray.isChecked())

    def start_at_login(self) -> bool:
        return self.login.isChecked()


class AboutDialog(QDialog):
    def __init__(self, *, config_dir: Path, log_file: Path | None, device: str,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About p2psync")
        self.setObjectName("aboutDialog")
        self.title = QLabel(f"<h2>p2psync {__version__}</h2>")
        text = QLabel("Keeps one folder identical on the devices of a local network, "
                      "without a cloud. Every connection is TLS, and only devices that "
                      "prove they know the share key are let in.")
        text.setWordWrap(True)
        facts = QGridLayout()
        self.rows: dict[str, str] = {
            "Licence": f"{LICENCE} licence",
            "This device": device,
            "Settings and keys": str(config_dir),
            "Log file": str(log_file) if log_file else "none (it could not be created)",
            "Built with": f"Python {platform.python_version()}, Qt {qVersion()}",
        }
        openers = {"Settings and keys": config_dir, "Log file": log_file}
        for row, (label, value) in enumerate(self.rows.items()):
            facts.addWidget(QLabel(f"<b>{label}</b>"), row, 0)
            shown = QLabel(value)
            shown.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            shown.setWordWrap(True)
            facts.addWidget(shown, row, 1)
            target = openers.get(label)
            if target is not None:
                button = QPushButton("Open")
                button.clicked.connect(lambda _=False, t=target: QDesktopServices.openUrl(
                    QUrl.fromLocalFile(str(t))))
                facts.addWidget(button, row, 2)
        facts.setColumnStretch(1, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        v = QVBoxLayout(self)
        v.addWidget(self.title)
        v.addWidget(text)
        v.addLayout(facts)
        v.addWidget(buttons)
        self.setMinimumWidth(520)
