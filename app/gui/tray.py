"""The tray icon: the overall state at a glance, a notification on a conflict or an error.

Only where the desktop has a system tray (`QSystemTrayIcon.isSystemTrayAvailable()`):
offscreen, under a bare Xvfb or on a desktop without one the app simply has none.
"""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QIcon
from PySide6.QtWidgets import QMenu, QSystemTrayIcon


class Tray(QObject):
    def __init__(self, window, icon: QIcon) -> None:
        super().__init__(window)
        self.window = window
        self.icon: QSystemTrayIcon | None = None
        if not QSystemTrayIcon.isSystemTrayAvailable():
            return
        self.icon = QSystemTrayIcon(icon, self)
        menu = QMenu()
        show = QAction("Show p2psync", menu)
        show.triggered.connect(self._show_window)
        sync = QAction("Sync now", menu)
        sync.triggered.connect(window.sync_now)
        quit_ = QAction("Quit", menu)
        quit_.triggered.connect(window.quit)
        for a in (show, sync):
            menu.addAction(a)
        menu.addSeparator()
        menu.addAction(quit_)
        self._menu = menu
        self.icon.setContextMenu(menu)
        self.icon.activated.connect(self._activated)
        self.icon.setToolTip("p2psync")
        self.icon.show()

    @property
    def available(self) -> bool:
        return self.icon is not None

    def set_state(self, text: str) -> None:
        if self.icon is not None:
            self.icon.setToolTip(f"p2psync: {text}")

    def notify(self, title: str, message: str) -> None:
        if self.icon is not None and self.icon.supportsMessages():
            kind = (QSystemTrayIcon.MessageIcon.Critical if "error" in title.lower()
                    else QSystemTrayIcon.MessageIcon.Warning)
            self.icon.showMessage(f"p2psync: {title}", message, kind, 8000)

    def hide(self) -> None:
        if self.icon is not None:
            self.icon.hide()

    def _activated(self, reason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self._show_window()

    def _show_window(self) -> None:
        self.window.showNormal()
        self.window.raise_()
        self.window.activateWindow()
