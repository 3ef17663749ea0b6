"""The question the mass-deletion guard asks: delete these files here too, or keep them?

Shown when the engine held back a deletion (more than half of the files deleted on
another device, or this folder looks unmounted or emptied). Not modal: the window
keeps working while the question waits, and "Decide later" leaves everything as it
is (nothing is deleted; "Sync now" asks again).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

UNMOUNTED = "unmounted"  # app.core.massdelete.UNMOUNTED, as the engine's event says it
PATHS_SHOWN = 10_000  # paths listed under "Show Details…" (the plan holds a window of them)


def held_paths(node) -> dict:
    """The paths the node holds back now, sorted, for the dialog's details (engine thread):
    {"paths": [...], "more": N}."""
    held = node.held_back()
    paths = sorted(held.paths) if held is not None else []
    return {"paths": paths[:PATHS_SHOWN], "more": max(0, len(paths) - PATHS_SHOWN)}


def details(held: dict) -> str:
    """The list of files that would be deleted, one a line ("" when none is known)."""
    paths = held.get("paths") or []
    more = held.get("more", 0)
    return "\n".join(paths) + (f"\n… and {more:,} more" if more else "")


def _devices(held: dict) -> str:
    devices = held.get("devices") or []
    if len(devices) == 1:
        return devices[0]["name"]
    return ", ".join(f"{d['name']} ({d['deletes']:,})" for d in devices)


def texts(held: dict) -> tuple[str, str]:
    """(the question, what each answer does) for one `mass_delete_held` event."""
    n, of = held["deletes"], held["of"]
    if held.get("reason") == UNMOUNTED:
        return (f"The folder looks unmounted or emptied: its .p2psync marker is gone and "
                f"<b>{n:,} of {of:,} files</b> are missing on this device.",
                "Nothing was deleted on the other devices. If its disk is not mounted, keep "
                "them and mount it: p2psync waits for the folder to come back. Delete them "
                "to delete these files on the other devices too.")
    return (f"<b>{n:,} of {of:,} files</b> were deleted on {_devices(held)}.",
            "Nothing was deleted on this device yet. Delete them here too (they are kept "
            "in .p2psync/versions), or keep them: this device's copies then count as the "
            "newer version and come back to the other devices.")


class MassDeleteDialog(QMessageBox):
    delete_requested = Signal()
    keep_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("massDeleteDialog")
        self.setIcon(QMessageBox.Icon.Warning)
        self.setWindowTitle("Many files deleted")
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setWindowModality(Qt.WindowModality.NonModal)
        self.delete_button = self.addButton("Delete them", QMessageBox.ButtonRole.DestructiveRole)
        self.keep_button = self.addButton("Keep them", QMessageBox.ButtonRole.AcceptRole)
        self.later_button = self.addButton("Decide later", QMessageBox.ButtonRole.RejectRole)
        self.setDefaultButton(self.keep_button)
        self.setEscapeButton(self.later_button)
        self.buttonClicked.connect(self._clicked)

    def ask(self, held: dict) -> None:
        text, info = texts(held)
        self.setText(text)
        self.setInformativeText(info)
        self.setDetailedText(details(held))  # "Show Details…": the files, one a line
        self.show()
        self.raise_()

    def _clicked(self, button) -> None:
        if button is self.delete_button:
            self.delete_requested.emit()
        elif button is self.keep_button:
            self.keep_requested.emit()
