"""A join that meets nobody says so, with a way back to the key.

A device that joins with a mistyped key finds no device of its share: LAN discovery is
keyed by the share key, so it hears nobody, and a device it is told of (`--peer`)
refuses the key. Without a word it would wait for ever as the server of a share of
one. So after a join the window watches: a refusal of our key is told at once, and
meeting nobody within JOIN_PATIENCE seconds is told then, each with a button that
asks for the key again (`RekeyDialog`), without choosing the folder anew. Once a
device of the share has been met (this run, or an earlier one: the index knows
peers), there is nothing to watch.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from app.gui.first_run import key_font
from app.net.keystrength import app_warning

JOIN_PATIENCE = 20.0  # seconds without any device of the share before saying so


def _listed(addresses: list[str]) -> str:
    if len(addresses) == 1:
        return f"The device at {addresses[0]}"
    return f"The devices at {', '.join(addresses[:-1])} and {addresses[-1]}"


def join_problem(status: dict, waited: float, patience: float = JOIN_PATIENCE) -> str | None:
    """What to tell a person whose join has not met its share yet; None while all is well."""
    if status.get("ever_connected"):
        return None
    refused = list(status.get("refused_us") or [])
    if refused:
        verb = "refuses" if len(refused) == 1 else "refuse"
        return (f"{_listed(refused)} {verb} this share key: it is not the key of that share. "
                "Compare it with the key shown there (Share key… on that device), then "
                "type it again here.")
    if waited >= patience:
        return (f"No device of this share found in {patience:.0f} s. Is p2psync running on "
                "the other device, on this network? A key with a typo finds nobody: compare "
                "it with the key shown there (Share key… on that device).")
    return None


class RekeyDialog(QDialog):
    """Type the share key again (the folder stays the same)."""

    def __init__(self, key: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Type the share key again")
        v = QVBoxLayout(self)
        text = QLabel("Type the share key exactly as the device you join shows it (its "
                      "Share key… button).")
        text.setWordWrap(True)
        v.addWidget(text)
        self.edit = QLineEdit(key, objectName="rekeyEdit")
        self.edit.setFont(key_font(1.2))
        self.edit.setMinimumWidth(self.edit.fontMetrics().horizontalAdvance("M" * 26))
        self.setMinimumWidth(self.edit.minimumWidth() + 40)
        self.edit.selectAll()
        v.addWidget(self.edit)
        self.warning = QLabel(objectName="rekeyWarning")
        self.warning.setWordWrap(True)
        self.warning.hide()
        v.addWidget(self.warning)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Join with this key")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        v.addWidget(self.buttons)
        self.edit.textChanged.connect(self._judge)
        self._judge()

    def key(self) -> str:
        return self.edit.text().strip()

    def _judge(self) -> None:
        key = self.key()
        warning = app_warning(key) if key else None
        self.warning.setText(f"\u26a0 {warning}" if warning else "")
        self.warning.setVisible(bool(warning))
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(bool(key))
