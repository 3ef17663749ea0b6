"""The main window: the share at a glance, its devices, every file, conflicts, activity.

Two pages: the first start (app.gui.first_run) until a folder and a share key are
known, then the share itself. Everything it shows comes from the EngineWorker's
signals; everything it asks of the engine goes through the worker. Settings that
outlive a run: the device name and each folder's key in the engine's Config (shared
with `p2psync run`), the last folder and the window's geometry in gui.ini beside them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QDesktopServices, QFont, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QStyle,
    QTableView,
    QTabWidget,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from app.core.states import ERROR, IGNORED, LOCAL_CHANGE, REMOTE_CHANGE
from app.engine.config import Config
from app.engine.folder import checked_folder
from app.engine.node import NodeOptions
from app.errors import P2PError
from app.gui import autostart
from app.gui.activity import ActivityLog
from app.gui.columns import PathKeepsRoom
from app.gui.conflicts import ConflictsPanel
from app.gui.details import DetailsPane
from app.gui.dialogs import AboutDialog, SettingsDialog
from app.gui.elide import ElidedLabel, EndCut
from app.gui.first_run import KeyPanel, SetupPage
from app.gui.joincheck import JOIN_PATIENCE, RekeyDialog, join_problem
from app.gui.massdelete import MassDeleteDialog
from app.gui.models import FilesModel, PeersModel, app_icon, state_icon
from app.gui.pairing import InviteDialog, JoinOptions
from app.gui.prefs import Prefs
from app.gui.preview import PreviewDialog
from app.gui.summary import IDLE, UNKNOWN, Counts, Summary, summarize
from app.gui.tray import Tray
from app.gui.versionsview import VersionsDialog
from app.gui.worker import EngineWorker

log = logging.getLogger("p2psync.gui")

LISTEN_HOST = "0.0.0.0"  # as `p2psync run` (app.cli.headless); the port is a setting
FILTER_DELAY_MS = 250  # typing in the filter box: refilter once the user pauses


@dataclass
class LaunchOptions:
    """What the command line (or a test) asks of the window."""

    config: Config
    folder: Path | None = None
    secret: str | None = None
    name: str | None = None
    listen: tuple[str, int] | None = None
    peers: list[tuple[str, int]] = field(default_factory=list)
    discovery: bool = True
    discovery_port: int = 22101
    log_file: Path | None = None
    allow_mass_delete: bool = False


def display_path(folder: Path) -> str:
    """The folder as people write it: ~/Shared rather than /home/alex/Shared."""
    try:
        return "~/" + folder.relative_to(Path.home()).as_posix()
    except (ValueError, RuntimeError):
        return str(folder)


class KeyDialog(QDialog):
    def __init__(self, key: str, parent: QWidget) -> None:
        super().__init__(parent)
        self.setWindowTitle("Share key")
        v = QVBoxLayout(self)
        text = QLabel("To add a device, open p2psync there, choose the folder to keep in "
                      "sync and join with this key:")
        text.setWordWrap(True)
        v.addWidget(text)
        self.panel = KeyPanel()
        self.panel.set_key(key)
        v.addWidget(self.panel)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        v.addWidget(buttons)


class MainWindow(QMainWindow):
    closed = Signal()  # the window closed for good (after the engine stopped)
    summary_changed = Signal(object)  # app.gui.summary.Summary: what every count says now

    def __init__(self, opts: LaunchOptions) -> None:
        super().__init__()
        self.opts = opts
        self.config = opts.config
        self.config.ensure_dir()
        self.settings = QSettings(str(self.config.dir / "gui.ini"), QSettings.Format.IniFormat)
        self.worker: EngineWorker | None = None
        self.folder: Path | None = None
        self.secret = ""
        self.info: dict = {}
        self.status: dict = {}
        self._incoming_done: dict[str, tuple[int, int]] = {}
        self.summary: Summary | None = None  # every count the window shows, worked out once
        self._rescanning = False
        self._closing = False
        self._quitting = False  # Quit, not a close that may leave it in the tray
        self._told_tray = False
        self._after_stop = None
        self._key_dialog: KeyDialog | None = None
        self._joining = False  # a join that has not met its share yet (app.gui.joincheck)
        self._join_since = 0.0
        self._join_timer = QTimer(self, singleShot=True)
        self._join_timer.timeout.connect(self._check_join)
        self._banner_action = None
        self._foreign_text = ""  # "2 devices nearby use a different key." while they do
        self.held: dict | None = None  # what the mass-deletion guard holds back now
        self.mass_delete_dialog = MassDeleteDialog(self)
        self.mass_delete_dialog.delete_requested.connect(self._delete_held)
        self.mass_delete_dialog.keep_requested.connect(self._keep_held)
        self.preview_dialog = PreviewDialog(self)
        self.preview_dialog.sync_requested.connect(self.sync_now)

        self.setWindowTitle("p2psync")
        self.setWindowIcon(app_icon())
        self.files_model = FilesModel(self)
        self.peers_model = PeersModel(self)
        self.setup_page = SetupPage(opts.name or self.config.device_name())
        self.setup_page.join_options = JoinOptions(self.config, list(opts.peers), opts.discovery,
                                                   opts.discovery_port)
        self.setup_page.ready.connect(self._setup_ready)
        self.invite_dialog: InviteDialog | None = None
        self.pages = QStackedWidget()
        self.pages.addWidget(self.setup_page)
        self.pages.addWidget(self._build_main_page())
        self.setCentralWidget(self.pages)
        self._build_menus()
        self.tray = Tray(self, app_icon())
        self._restore_geometry()
        self._begin()

    # --- building --------------------------------------------------------------------
    def _build_main_page(self) -> QWidget:
        page = QWidget()
        v = QVBoxLayout(page)
        v.setContentsMargins(12, 10, 12, 8)
        v.setSpacing(8)

        # header: the folder, this device's role, the big button
        head = QHBoxLayout()
        icon = QLabel()
        icon.setPixmap(app_icon().pixmap(QSize(40, 40)))
        head.addWidget(icon)
        titles = QVBoxLayout()
        titles.setSpacing(0)
        self.folder_title = ElidedLabel(objectName="folderTitle")
        font = self.folder_title.font()
        font.setPointSizeF(font.pointSizeF() * 1.45)
        font.setWeight(QFont.Weight.DemiBold)
        self.folder_title.setFont(font)
        self.subtitle = ElidedLabel(objectName="subtitle")
        self.subtitle.setForegroundRole(self.subtitle.palette().ColorRole.PlaceholderText)
        self.subtitle.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        titles.addWidget(self.folder_title)
        titles.addWidget(self.subtitle)
        head.addLayout(titles, 1)
        self.key_button = QPushButton("Share key…", objectName="showKey")
        self.key_button.clicked.connect(self.show_key)
        self.invite_button = QPushButton("Invite a device…", objectName="inviteDevice")
        self.invite_button.setToolTip("Show a short one-time code another device can join "
                                      "this share with")
        self.invite_button.clicked.connect(self.invite_device)
        self.pause_button = QPushButton("Pause", objectName="pause")
        self.pause_button.setCheckable(True)
        self.pause_button.toggled.connect(self._pause_toggled)
        self.sync_button = QPushButton("  Sync now", objectName="syncNow")
        self.sync_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_BrowserReload))
        self.sync_button.setIconSize(QSize(20, 20))
        big = self.sync_button.font()
        big.setPointSizeF(big.pointSizeF() * 1.25)
        big.setWeight(QFont.Weight.DemiBold)
        self.sync_button.setFont(big)
        self.sync_button.setMinimumSize(QSize(150, 44))
        self.sync_button.setDefault(True)
        self.sync_button.setToolTip("Rescan the folder and exchange every change now")
        self.sync_button.clicked.connect(self.sync_now)
        self.preview_button = QPushButton("Preview", objectName="preview")
        self.preview_button.setToolTip("Show what Sync now would do, changing nothing")
        self.preview_button.clicked.connect(self.preview)
        for b in (self.key_button, self.invite_button, self.pause_button, self.preview_button):
            b.setMinimumHeight(44)
        head.addWidget(self.invite_button)
        head.addWidget(self.key_button)
        head.addWidget(self.pause_button)
        head.addWidget(self.preview_button)
        head.addWidget(self.sync_button)
        v.addLayout(head)

        # overall progress
        # overall progress: the headline (it wraps: a narrow window loses no word of it)
        # above a bar as wide as the window
        self.progress_label = QLabel("Starting…", objectName="progressLabel")
        self.progress_label.setWordWrap(True)
        self.progress = QProgressBar(objectName="overallProgress")
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(8)
        prog = QVBoxLayout()
        prog.setSpacing(3)
        prog.addWidget(self.progress_label)
        prog.addWidget(self.progress)
        v.addLayout(prog)

        # a banner for what went wrong (never a modal box: the window keeps working)
        self.banner = QWidget(objectName="banner")
        banner_row = QHBoxLayout(self.banner)
        banner_row.setContentsMargins(8, 6, 8, 6)
        banner_icon = QLabel()
        banner_icon.setPixmap(self.style().standardIcon(
            QStyle.StandardPixmap.SP_MessageBoxWarning).pixmap(QSize(20, 20)))
        self.banner_text = QLabel(objectName="bannerText")
        self.banner_text.setWordWrap(True)
        self.banner_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.banner_button = QPushButton(objectName="bannerAction")
        self.banner_button.hide()
        self.banner_button.clicked.connect(lambda: self._banner_action and self._banner_action())
        banner_close = QToolButton()
        banner_close.setText("✕")
        banner_close.setAutoRaise(True)
        banner_close.clicked.connect(self.banner.hide)
        banner_row.addWidget(banner_icon)
        banner_row.addWidget(self.banner_text, 1)
        banner_row.addWidget(self.banner_button)
        banner_row.addWidget(banner_close)
        self.banner.setAutoFillBackground(True)
        pal = self.banner.palette()
        pal.setColor(pal.ColorRole.Window, pal.color(pal.ColorRole.AlternateBase))
        self.banner.setPalette(pal)
        self.banner.hide()
        v.addWidget(self.banner)

        # peers above, files / conflicts / activity below
        self.peers_view = QTreeView(objectName="peersView")
        self.peers_view.setModel(self.peers_model)
        self.peers_view.setRootIsDecorated(False)
        self.peers_view.setUniformRowHeights(True)
        self.peers_view.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.peers_view.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        ph = self.peers_view.header()
        ph.setStretchLastSection(True)  # the state, with its reason: what room is left
        fm = self.fontMetrics()
        pm = self.peers_model
        for col in (pm.COL_DEVICE, pm.COL_ADDRESS, pm.COL_ROLE):  # a few short rows
            ph.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        for col, sample in ((pm.COL_COMPLETION, "99% · 999.9 MB to go"),
                            (pm.COL_TRANSFER, "↓ 99.9 MB/s  ↑ 99.9 MB/s")):  # steady widths
            ph.resizeSection(col, fm.horizontalAdvance(sample) + 16)
        ph.setMinimumSectionSize(fm.horizontalAdvance("server") + 16)
        row_h = max(fm.height() + 6, 20)
        self.peers_view.setMinimumHeight(row_h * 4 + 8)  # its header and three devices
        peers_box = QWidget()
        pv = QVBoxLayout(peers_box)
        pv.setContentsMargins(0, 0, 0, 0)
        pv.setSpacing(4)
        self.peers_title = QLabel("<b>Devices</b>", objectName="peersTitle")
        pv.addWidget(self.peers_title)
        pv.addWidget(self.peers_view)

        self.tabs = QTabWidget(objectName="tabs")
        self.tabs.addTab(self._build_files_tab(), "Files")
        self.conflicts_panel = ConflictsPanel()
        self.conflicts_panel.load_requested.connect(self._load_conflict)
        self.conflicts_panel.resolve_requested.connect(self._resolve_conflict)
        self.tabs.addTab(self.conflicts_panel, "Conflicts")
        self.activity = ActivityLog()
        self.tabs.addTab(self.activity, "Activity")
        self.files_model.conflicts_changed.connect(self._conflicts_changed)
        self.files_model.totals_changed.connect(self._refresh_overall)

        self.splitter = QSplitter(Qt.Orientation.Vertical, objectName="mainSplitter")
        self.splitter.addWidget(peers_box)
        self.splitter.addWidget(self.tabs)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 4)
        self.splitter.setSizes([row_h * 5 + 24, 520])  # the devices: a few rows
        v.addWidget(self.splitter, 1)
        # in the status bar: its text changes on every update, and relaying out a label
        # beside the files table costs milliseconds each time
        self.files_count = QLabel(objectName="filesCount")
        self.statusBar().addPermanentWidget(self.files_count)
        self.statusBar().setSizeGripEnabled(True)
        return page

    def _build_files_tab(self) -> QWidget:
        tab = QWidget()
        v = QVBoxLayout(tab)
        v.setContentsMargins(6, 6, 6, 6)
        bar = QHBoxLayout()
        self.filter_edit = QLineEdit(objectName="filterEdit")
        self.filter_edit.setPlaceholderText("Filter by path")
        self.filter_edit.setClearButtonEnabled(True)
        self._filter_timer = QTimer(self, singleShot=True, interval=FILTER_DELAY_MS)
        self._filter_timer.timeout.connect(
            lambda: self.files_model.set_filter(text=self.filter_edit.text()))
        self.filter_edit.textChanged.connect(self._filter_timer.start)
        self.only_unsynced = QCheckBox("Only what is not synced", objectName="onlyUnsynced")
        self.only_unsynced.setToolTip("Local changes, incoming files, conflicts and errors")
        self.only_unsynced.toggled.connect(
            lambda on: self.files_model.set_filter(only_unsynced=on))
        bar.addWidget(self.filter_edit, 2)
        bar.addWidget(self.only_unsynced)
        bar.addStretch(1)
        v.addLayout(bar)
        # a QTableView, not a QTreeView: a tree view asks every row whether it has
        # children after each reset (100,000 calls into Python); a table view asks
        # only about the rows on screen
        self.files_view = QTableView(objectName="filesView")
        self.files_view.setModel(self.files_model)
        self.files_view.setShowGrid(False)
        self.files_view.setWordWrap(False)
        self.files_view.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # folder and name in sight
        self.files_view.setItemDelegateForColumn(3, EndCut(self.files_view))  # a state and why
        self.files_view.setAlternatingRowColors(True)
        self.files_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.files_view.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        rows = self.files_view.verticalHeader()
        rows.hide()
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # no per-row measuring
        rows.setDefaultSectionSize(max(self.fontMetrics().height() + 8, 22))
        self.files_view.setSortingEnabled(True)
        self.files_view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.files_view.doubleClicked.connect(self._open_file)
        self.files_view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.files_view.customContextMenuRequested.connect(self._files_menu)
        h = self.files_view.horizontalHeader()
        h.setStretchLastSection(False)
        h.setHighlightSections(False)
        h.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        fm = self.fontMetrics()
        widths = {}
        for col, sample in ((1, "1023.9 MB  "), (2, "2026-12-31 23:59  "),
                            (3, "Error: link leads outside the folder ")):
            h.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
            widths[col] = fm.horizontalAdvance(sample) + 28
            h.resizeSection(col, widths[col])
        self._columns = PathKeepsRoom(self.files_view, {3: widths[3], 2: widths[2]})
        self.details = DetailsPane()
        self.details.wanted.connect(lambda p: self.worker and self.worker.load_details(p))
        v.addWidget(self.details.beside(self.files_view), 1)
        return tab

    def _build_menus(self) -> None:
        menu = self.menuBar().addMenu("&File")
        self.open_folder_action = QAction("&Open the folder", self)
        self.open_folder_action.triggered.connect(self._open_folder)
        self.change_folder_action = QAction("&Share another folder…", self)
        self.change_folder_action.triggered.connect(self.change_folder)
        self.sync_action = QAction("Sync &now", self)
        self.sync_action.setShortcut(QKeySequence.StandardKey.Refresh)
        self.sync_action.triggered.connect(self.sync_now)
        self.invite_action = QAction("&Invite a device…", self)
        self.invite_action.triggered.connect(self.invite_device)
        self.versions_action = QAction("&Versions…", self)
        self.versions_action.triggered.connect(lambda: self.show_versions())
        self.settings_action = QAction("Se&ttings…", self)
        self.settings_action.setShortcut(QKeySequence.StandardKey.Preferences)
        self.settings_action.triggered.connect(self.show_settings)
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.quit)
        for a in (self.open_folder_action, self.sync_action, self.invite_action,
                  self.versions_action, self.change_folder_action):
            menu.addAction(a)
        menu.addSeparator()
        menu.addAction(self.settings_action)
        menu.addSeparator()
        menu.addAction(quit_action)
        help_menu = self.menuBar().addMenu("&Help")
        self.log_action = QAction("Open the &log file", self)
        self.log_action.setEnabled(self.opts.log_file is not None)
        self.log_action.triggered.connect(self.open_log_file)
        help_menu.addAction(self.log_action)
        self.about_action = QAction("&About p2psync", self)
        self.about_action.triggered.connect(self.show_about)
        help_menu.addAction(self.about_action)
        for a in (self.open_folder_action, self.sync_action, self.change_folder_action):
            a.setEnabled(False)

    # --- starting --------------------------------------------------------------------
    def _begin(self) -> None:
        folder = self.opts.folder
        if folder is None:
            last = self.settings.value("share/folder", "", str)
            if last and Path(last).is_dir():
                folder = Path(last)
        if folder is None:
            self.pages.setCurrentIndex(0)
            return
        secret = self.opts.secret or self.config.share_key(folder)
        if secret:
            self.open_share(folder, secret, self.opts.name or "")
        else:  # a folder without a key yet: start or join
            self.setup_page.set_folder(folder)
            self.pages.setCurrentIndex(0)

    def _setup_ready(self, folder: Path, key: str, name: str) -> None:
        joining = key != getattr(self.setup_page, "_new_key", None)  # not "Start a new share"
        if self.open_share(folder, key, name):
            if joining:
                self.settings.setValue("share/joining", str(self.folder))
            if self.setup_page.invite_next:
                self.invite_device()

    def invite_device(self) -> None:
        """ "Invite a device": a one-time code for this share (app/gui/pairing.py)."""
        if self.worker is None:
            return
        if self.invite_dialog is not None:
            self.invite_dialog.close()
            self.invite_dialog.deleteLater()
        self.invite_dialog = InviteDialog(self.worker, bool(self.info), self)
        self.invite_dialog.open()

    def _on_foreign_nearby(self, count: int, text: str) -> None:
        """Devices nearby with another key: the sign of a mistyped key, said where it shows.

        While a join's own question is up (its key finds nobody: "Type the key again…"),
        that question says it too (see _check_join) rather than being replaced.
        """
        self._foreign_text = text[:1].upper() + text[1:] + "." if count else ""
        if self._banner_action == self.retype_key and self.banner.isVisible():
            return
        shown = self.banner.isVisible() and self.banner_text.property("foreign")
        if count and not self.status.get("connected"):
            self.banner_text.setText(text[:1].upper() + text[1:] + ".")
            self.banner_text.setProperty("foreign", True)
            self.banner.show()
        elif shown:
            self.banner.hide()
            self.banner_text.setProperty("foreign", False)

    def open_share(self, folder: Path, secret: str, name: str = "") -> bool:
        try:
            folder = checked_folder(folder)
        except P2PError as e:
            return self._back_to_setup(None, "", str(e))
        try:
            if self.config.share_key(folder) != secret:
                self.config.set_share_key(folder, secret)  # e.g. a damaged settings.json
            name = name.strip() or self.opts.name or self.config.device_name()
            if not self.opts.name and name != self.config.device_name():
                self.config.set_device_name(name)
            prefs = Prefs.load(self.config)
        except P2PError as e:  # the config dir's trouble (a full disk): the folder stays
            return self._back_to_setup(folder, secret, str(e))
        self.settings.setValue("share/folder", str(folder))
        if self.settings.value("share/joining", "", str) not in ("", str(folder)):
            self.settings.remove("share/joining")  # another folder: that join is over
        self.folder, self.secret = folder, secret
        opts = NodeOptions(
            folder=folder, config=self.config, secret=secret, name=name,
            listen=self.opts.listen or (LISTEN_HOST, prefs.listen_port),
            peers=list(self.opts.peers), discovery=self.opts.discovery and prefs.discovery,
            discovery_port=self.opts.discovery_port,
            watch=True, elect=True, allow_mass_delete=self.opts.allow_mass_delete,
        )
        self.files_model.reset_rows([])
        self.peers_model.set_peers([])
        self.conflicts_panel.set_conflicts([])
        self.status, self.info = {}, {}
        self._joining = False  # until this engine has started (_on_started)
        self.held = None
        self.mass_delete_dialog.hide()
        self.worker = EngineWorker(opts, self, any_port_if_taken=self.opts.listen is None)
        w = self.worker
        w.started.connect(self._on_started)
        w.failed.connect(self._on_failed)
        w.stopped.connect(self._on_stopped)
        w.files_reset.connect(self.files_model.reset_rows)
        w.files_update.connect(self.files_model.apply_update)
        w.progress.connect(self._on_progress)
        w.peers.connect(self._on_peers)
        w.status.connect(self._on_status)
        w.activity.connect(self.activity.add)
        w.notify.connect(self.tray.notify)
        w.conflict_sides.connect(self.conflicts_panel.show_sides)
        w.resolved.connect(self.conflicts_panel.on_resolved)
        w.sync_done.connect(self._on_sync_done)
        w.mass_delete.connect(self._on_mass_delete)
        w.preview_ready.connect(self.preview_dialog.show_result)
        w.foreign_nearby.connect(self._on_foreign_nearby)
        w.file_details.connect(self.details.show_details)
        w.files_update.connect(self.details.on_rows)
        w.progress.connect(self.details.on_progress)
        self.folder_title.setText(folder.name or str(folder))
        self.subtitle.setText(f"{display_path(folder)}  ·  starting…")
        self.setWindowTitle(f"{folder.name or folder} - p2psync")
        self.banner.hide()
        self.pages.setCurrentIndex(1)
        self._refresh_overall()
        for a in (self.open_folder_action, self.sync_action, self.change_folder_action):
            a.setEnabled(True)
        self._set_controls(False)
        w.start()
        return True

    def _back_to_setup(self, folder: Path | None, secret: str, why: str) -> bool:
        """The setup page, saying why the share did not open. A folder that is fine stays
        chosen, and a key to join with stays typed, so that once the cause is gone (a
        config dir on a full disk) one click opens it: a first start on a full disk
        dropped the folder given with --folder."""
        page = self.setup_page
        page.set_folder(folder)
        if folder is not None and secret and secret != getattr(page, "_new_key", None) \
                and not page.key_edit.text().strip():
            page.key_edit.setText(secret)
        page.show_message(why)
        self.pages.setCurrentIndex(0)
        return False

    # --- the engine's reports -----------------------------------------------------------
    def _on_started(self, info: dict) -> None:
        self.info = info
        self._set_controls(True)
        self._refresh_overall()
        self._joining = self.settings.value("share/joining", "", str) == str(self.folder)
        if self._joining:
            self._join_since = time.monotonic()
            self._join_timer.start(int(JOIN_PATIENCE * 1000) + 100)

    def _on_failed(self, message: str) -> None:
        self.show_error(message)
        self._set_controls(False)
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress_label.setText("Not syncing")

    def _on_stopped(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.deleteLater()
        if self._closing:
            self.close()
        elif self._after_stop is not None:
            then, self._after_stop = self._after_stop, None
            then()

    def _on_status(self, st: dict) -> None:
        self.status = st
        self.pause_button.blockSignals(True)
        self.pause_button.setChecked(bool(st.get("paused")))
        self.pause_button.setText("Resume" if st.get("paused") else "Pause")
        self.pause_button.blockSignals(False)
        self._refresh_subtitle()
        self._refresh_overall()
        if self._joining:
            self._check_join()

    def _on_peers(self, peers: list[dict]) -> None:
        """The devices view and every count beside it in one slot: as two queued slots, the
        view said "offline" while the header still counted the device connected."""
        self.peers_model.set_peers(peers)
        self.conflicts_panel.set_device_names(
            {p["device_id"][:7]: p["name"] for p in peers if p.get("device_id")})
        self._refresh_overall()

    def _on_progress(self, progress: dict) -> None:
        self._incoming_done = progress
        self.files_model.set_progress(progress)
        self._refresh_overall()

    def _on_sync_done(self) -> None:
        self._rescanning = False
        self._refresh_overall()

    def _on_mass_delete(self, held: dict | None) -> None:
        self.held = held
        if held is None:
            self.mass_delete_dialog.hide()
        else:
            self.mass_delete_dialog.ask(held)
        self._refresh_overall()

    def _delete_held(self) -> None:
        if self.worker is not None:
            self.worker.delete_held()

    def _keep_held(self) -> None:
        if self.worker is not None:
            self.worker.keep_held()

    def _conflicts_changed(self, copies: list[str]) -> None:
        self.conflicts_panel.set_conflicts(copies)
        self.tabs.setTabIcon(1, state_icon("conflict") if copies else QIcon())
        self._refresh_overall()

    def _refresh_subtitle(self) -> None:
        if self.folder is None:
            return
        st = self.status
        role = st.get("role", "electing")
        if role == "server":
            role_text = "the server"
        elif role == "client":
            role_text = f"client of {st.get('server_name') or 'the server'}"
        else:
            role_text = "looking for the share's server…"
        connection = self.summary.connection if self.summary else ""
        name = self.info.get("name") or self.opts.name or self.config.device_name()
        self.subtitle.setText(f"{display_path(self.folder)}  ·  {name}: {role_text}"
                              + (f"  ·  {connection}" if connection else ""))

    def counts(self) -> Counts:
        """The files table's numbers, as every part of the window uses them."""
        m = self.files_model
        held = self.held["deletes"] if self.held and self.held.get("reason") != "unmounted" \
            else 0
        done = sum(d for d, _ in self._incoming_done.values())
        ignored = m.count(IGNORED)
        return Counts(
            files=m.total_files() - ignored,
            incoming=max(0, m.count(REMOTE_CHANGE) - held),  # held back: not on its way
            local=m.count(LOCAL_CHANGE), conflicts=len(m.conflict_copies()),
            errors=m.count(ERROR), ignored=ignored,
            bytes_total=sum(m.bytes_in(s) for s in m.states()) - m.bytes_in(IGNORED),
            bytes_to_go=max(0, m.bytes_in(REMOTE_CHANGE) - done))

    def _refresh_overall(self) -> None:
        """Header, progress bar, tabs, status bar, tray and own row: from one Summary."""
        running = self.worker is not None
        before = self.summary
        s = self.summary = summarize(
            self.counts(), self.status, self.peers_model.peers(),
            started=bool(self.info) or not running, rescanning=self._rescanning,
            held=self.held)
        self.files_count.setText(s.status)
        self.tabs.setTabText(1, s.conflicts_tab)
        self.peers_model.set_own_completion(*s.here)
        self._refresh_subtitle()
        if not running:
            return
        if s.bar_mode == UNKNOWN:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(s.bar)
        self.progress.setEnabled(s.bar_mode != IDLE)  # grey when there is nothing to do
        self.progress.setToolTip(f"{100 * s.bar // 1000}% of the files here")
        self.progress_label.setText(s.headline)
        self.tray.set_state(s.headline)
        if s != before:
            self.summary_changed.emit(s)

    def show_error(self, message: str, action: tuple[str, object] | None = None) -> None:
        """The banner: one message, and at most one button that deals with it."""
        self.banner_text.setText(message)
        self._banner_action = action[1] if action else None
        self.banner_button.setText(action[0] if action else "")
        self.banner_button.setVisible(action is not None)
        self.banner_text.setProperty("foreign", False)
        self.banner.show()
        log.warning("%s", message)

    # --- a join that meets nobody -----------------------------------------------------
    def _check_join(self) -> None:
        if not self._joining or self.worker is None:
            return
        if self.status.get("ever_connected"):
            self._joining = False
            self._join_timer.stop()
            self.settings.remove("share/joining")
            if self._banner_action == self.retype_key:
                self.banner.hide()
            return
        problem = join_problem(self.status, time.monotonic() - self._join_since, JOIN_PATIENCE)
        if problem and self._foreign_text:
            problem += " " + self._foreign_text
        if problem and (not self.banner.isVisible() or self.banner_text.text() != problem):
            self.show_error(problem, ("Type the key again…", self.retype_key))

    def retype_key(self) -> None:
        """Ask for the share key again, and join with it (same folder, engine restarted)."""
        dialog = RekeyDialog(self.secret, self)
        self._rekey_dialog = dialog  # tests reach it here
        if dialog.exec() != QDialog.DialogCode.Accepted or not dialog.key():
            return
        self.rejoin(dialog.key())

    def rejoin(self, key: str) -> None:
        folder = self.folder
        if folder is None:
            return
        self.opts.secret = None  # the key typed now wins over one given at the start

        def again() -> None:
            self.banner.hide()
            if self.open_share(folder, key, self.info.get("name", "")):
                self.settings.setValue("share/joining", str(self.folder))

        if self.worker is not None and self.worker.is_running():
            self._after_stop = again
            self.progress_label.setText("Stopping…")
            self.worker.stop()
        else:
            again()

    # --- user actions -------------------------------------------------------------------
    def _set_controls(self, on: bool) -> None:
        for w in (self.sync_button, self.pause_button, self.preview_button):
            w.setEnabled(on)
        self.sync_action.setEnabled(on)

    def sync_now(self) -> None:
        if self.worker is None or not self.info:
            return
        self._rescanning = True
        self._refresh_overall()
        self.worker.sync_now()
        if self.held is not None:  # "Decide later" was chosen: this is later
            self.mass_delete_dialog.ask(self.held)

    def preview(self) -> None:
        """What Sync now would do, in a dialog (app/gui/preview.py)."""
        if self.worker is None or not self.info:
            return
        self.preview_dialog.waiting()
        self.worker.preview()

    def _pause_toggled(self, paused: bool) -> None:
        self.pause_button.setText("Resume" if paused else "Pause")
        if self.worker is not None:
            self.worker.set_paused(paused)

    def show_key(self) -> None:
        if not self.secret:
            return
        if self._key_dialog is None:
            self._key_dialog = KeyDialog(self.secret, self)
        self._key_dialog.panel.set_key(self.secret)
        self._key_dialog.show()
        self._key_dialog.raise_()

    def _load_conflict(self, copy: str) -> None:
        if self.worker is not None:
            self.worker.load_conflict(copy)

    def _resolve_conflict(self, copy: str, how: str) -> None:
        if self.worker is not None:
            self.worker.resolve(copy, how)

    def _open_file(self, index) -> None:
        if self.folder is None:
            return
        path = self.files_model.index(index.row(), 0).data()
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.folder / path)))

    def show_versions(self, path: str | None = None) -> None:
        """The kept versions of one file, or of every file (app/gui/versionsview.py)."""
        if self.worker is None:
            return
        self.versions_dialog = VersionsDialog(self.worker, path, self)
        self.versions_dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.versions_dialog.show()

    def _files_menu(self, pos) -> None:
        row = self.files_view.indexAt(pos)
        if not row.isValid():
            return
        path = self.files_model.index(row.row(), 0).data()
        menu = QMenu(self)
        menu.addAction("Versions…", lambda: self.show_versions(path))
        menu.popup(self.files_view.viewport().mapToGlobal(pos))

    def _open_folder(self) -> None:
        if self.folder is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.folder)))

    def open_log_file(self) -> None:
        if self.opts.log_file is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.opts.log_file)))

    def change_folder(self) -> None:
        """Stop sharing this folder (the engine stops) and choose another one."""
        def to_setup() -> None:
            self.folder = None
            self.info = {}
            self.setup_page.set_folder(None)
            self.setup_page.steps.setCurrentIndex(0)
            self.pages.setCurrentIndex(0)
            self.setWindowTitle("p2psync")
            for a in (self.open_folder_action, self.sync_action, self.change_folder_action):
                a.setEnabled(False)

        if self.worker is not None and self.worker.is_running():
            self._after_stop = to_setup
            self.progress_label.setText("Stopping…")
            self.worker.stop()
        else:
            to_setup()

    # --- settings and closing -----------------------------------------------------------
    def _restore_geometry(self) -> None:
        geometry = self.settings.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1100, 720)
        splitter = self.settings.value("window/splitter")
        if isinstance(splitter, QByteArray) and not splitter.isEmpty():
            self.splitter.restoreState(splitter)

    def _save_settings(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/splitter", self.splitter.saveState())
        self.settings.sync()

    # --- Settings and About -----------------------------------------------------------
    def show_settings(self) -> None:
        prefs = Prefs.load(self.config)
        if self.opts.name:
            prefs.device_name = self.opts.name  # the name this run goes by
        dialog = SettingsDialog(prefs, start_at_login=autostart.is_enabled(),
                                tray=self.tray.available,
                                discovery_port=self.opts.discovery_port, parent=self)
        self._settings_dialog = dialog  # tests reach it here
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.apply_settings(dialog.prefs(), dialog.start_at_login())

    def apply_settings(self, new: Prefs, start_at_login: bool) -> None:
        """Store the settings; reconnect when the name, port or discovery changed."""
        stored = Prefs.load(self.config)
        old = replace(stored, device_name=self.opts.name or stored.device_name)
        # a --name this run was given, left as it was: not stored for the next runs
        keep_name = bool(self.opts.name) and new.device_name == self.opts.name
        try:
            replace(new, device_name=stored.device_name if keep_name
                    else new.device_name).save(self.config)
            if start_at_login != autostart.is_enabled():
                if start_at_login:
                    autostart.enable(self.config.dir)
                else:
                    autostart.disable()
        except (P2PError, OSError) as e:
            self.show_error(f"The settings could not be saved: {e}")
            return
        # what this run was told on its command line gives way to what was chosen now
        if new.device_name != old.device_name:
            self.opts.name = None
        if new.listen_port != old.listen_port and self.opts.listen is not None:
            self.opts.listen = (self.opts.listen[0], new.listen_port)  # same host, new port
        if new.discovery and not self.opts.discovery:
            self.opts.discovery = True
        restart = (new.device_name, new.listen_port, new.discovery) != \
            (old.device_name, old.listen_port, old.discovery)
        if restart and self.folder is not None and self.worker is not None:
            folder, secret = self.folder, self.secret
            self._after_stop = lambda: self.open_share(folder, secret, new.device_name)
            self.progress_label.setText("Reconnecting with the new settings…")
            self.worker.stop()

    def show_about(self) -> None:
        device = self.info.get("name") or self.opts.name or self.config.device_name()
        if self.info.get("device_id"):
            device += f" (device ID {self.info['device_id']})"
        self._about_dialog = AboutDialog(config_dir=self.config.dir,
                                         log_file=self.opts.log_file, device=device,
                                         parent=self)
        self._about_dialog.show()

    def quit(self) -> None:
        """Quit for good (File → Quit, the tray's Quit, Ctrl+C): never just to the tray."""
        self._quitting = True
        self.close()

    def _to_tray(self) -> bool:
        """Closing the window hides it when the user asked for that and a tray is there."""
        return (not self._quitting and self.tray.available
                and Prefs.load(self.config).close_to_tray)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if self._to_tray():
            event.ignore()
            self._save_settings()
            self.hide()
            if not self._told_tray:
                self._told_tray = True
                self.tray.notify("Still syncing", "p2psync keeps the folder in sync; quit "
                                 "it from this icon's menu")
            return
        if self.worker is not None and self.worker.is_running():
            if not self._closing:
                self._closing = True
                self._save_settings()
                self.setEnabled(False)
                self.progress_label.setText("Stopping…")
                self.statusBar().showMessage("Stopping: finishing what is in flight…")
                self.worker.stop()
            event.ignore()
            return
        if not self._closing:
            self._save_settings()
        self.tray.hide()
        event.accept()
        self.closed.emit()

    def shutdown(self, timeout_s: float = 20.0) -> None:
        """Stop the engine and wait for its thread (at exit, e.g. after SIGINT)."""
        if self.worker is not None:
            self.worker.stop()
            self.worker.wait(timeout_s)
