"""The main window: the share at a glance, its devices, every file, conflicts, activity.

Two pages: the first start (app.gui.first_run) until a folder and a share key are
known, then the share itself. Everything it shows comes from the EngineWorker's
signals; everything it asks of the engine goes through the worker. Settings that
outlive a run: the device name and each folder's key in the engine's Config (shared
with `p2psync run`), the last folder and the window's geometry in gui.ini beside them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
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
    QProgressBar,
    QPushButton,
    QSizePolicy,
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

from app.core.states import CONFLICT, ERROR, LOCAL_CHANGE, REMOTE_CHANGE
from app.core.units import human_size
from app.engine.config import Config
from app.engine.folder import checked_folder
from app.engine.node import NodeOptions
from app.errors import P2PError
from app.gui.activity import ActivityLog
from app.gui.conflicts import ConflictsPanel
from app.gui.first_run import KeyPanel, SetupPage
from app.gui.massdelete import MassDeleteDialog
from app.gui.models import FilesModel, PeersModel, app_icon, state_icon
from app.gui.pairing import InviteDialog, JoinOptions
from app.gui.tray import Tray
from app.gui.worker import EngineWorker

log = logging.getLogger("p2psync.gui")

DEFAULT_LISTEN = ("0.0.0.0", 22100)  # as `p2psync run` (app.cli.headless)
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
        self._episode_total = 0
        self._episode_bytes = 0
        self._rescanning = False
        self._closing = False
        self._after_stop = None
        self._key_dialog: KeyDialog | None = None
        self.held: dict | None = None  # what the mass-deletion guard holds back now
        self.mass_delete_dialog = MassDeleteDialog(self)
        self.mass_delete_dialog.delete_requested.connect(self._delete_held)
        self.mass_delete_dialog.keep_requested.connect(self._keep_held)

        self.setWindowTitle("p2psync")
        self.setWindowIcon(app_icon())
        self.files_model = FilesModel(self)
        self.peers_model = PeersModel(self)
        self.setup_page = SetupPage(self.config.device_name())
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
        self.folder_title = QLabel(objectName="folderTitle")
        font = self.folder_title.font()
        font.setPointSizeF(font.pointSizeF() * 1.45)
        font.setWeight(QFont.Weight.DemiBold)
        self.folder_title.setFont(font)
        self.subtitle = QLabel(objectName="subtitle")
        self.subtitle.setForegroundRole(self.subtitle.palette().ColorRole.PlaceholderText)
        self.subtitle.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        for label in (self.folder_title, self.subtitle):  # long paths must not widen the window
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
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
        for b in (self.key_button, self.invite_button, self.pause_button):
            b.setMinimumHeight(44)
        head.addWidget(self.invite_button)
        head.addWidget(self.key_button)
        head.addWidget(self.pause_button)
        head.addWidget(self.sync_button)
        v.addLayout(head)

        # overall progress
        prog = QHBoxLayout()
        self.progress = QProgressBar(objectName="overallProgress")
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(10)
        self.progress_label = QLabel("Starting…", objectName="progressLabel")
        self.progress_label.setMinimumWidth(120)
        prog.addWidget(self.progress_label, 0)
        prog.addWidget(self.progress, 1)
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
        banner_close = QToolButton()
        banner_close.setText("✕")
        banner_close.setAutoRaise(True)
        banner_close.clicked.connect(self.banner.hide)
        banner_row.addWidget(banner_icon)
        banner_row.addWidget(self.banner_text, 1)
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
        ph.setStretchLastSection(True)
        fm = self.fontMetrics()
        samples = ("a long device name (this device)", "ABCDEFG", "192.168.100.200:22100",
                   "electing", "unreachable: a reason")
        for col, sample in enumerate(samples):
            ph.resizeSection(col, fm.horizontalAdvance(sample) + 40)
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
        row_h = max(fm.height() + 6, 20)
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
        h = self.files_view.horizontalHeader()
        h.setStretchLastSection(False)
        h.setHighlightSections(False)
        h.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        fm = self.fontMetrics()
        for col, sample in ((1, "1023.9 MB  "), (2, "2026-12-31 23:59  "),
                            (3, "Error: link leads outside the folder ")):
            h.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
            h.resizeSection(col, fm.horizontalAdvance(sample) + 28)
        v.addWidget(self.files_view, 1)
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
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        for a in (self.open_folder_action, self.sync_action, self.invite_action,
                  self.change_folder_action):
            menu.addAction(a)
        menu.addSeparator()
        menu.addAction(quit_action)
        help_menu = self.menuBar().addMenu("&Help")
        self.log_action = QAction("Open the &log file", self)
        self.log_action.setEnabled(self.opts.log_file is not None)
        self.log_action.triggered.connect(self.open_log_file)
        help_menu.addAction(self.log_action)
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
        if self.open_share(folder, key, name) and self.setup_page.invite_next:
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
        """Devices nearby with another key: the sign of a mistyped key, said where it shows."""
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
            if self.config.share_key(folder) != secret:
                self.config.set_share_key(folder, secret)  # e.g. a damaged settings.json
            name = name.strip() or self.opts.name or self.config.device_name()
            if not self.opts.name and name != self.config.device_name():
                self.config.set_device_name(name)
        except P2PError as e:
            self.setup_page.set_folder(None)
            self.setup_page.show_message(str(e))
            self.pages.setCurrentIndex(0)
            return False
        self.settings.setValue("share/folder", str(folder))
        self.folder, self.secret = folder, secret
        opts = NodeOptions(
            folder=folder, config=self.config, secret=secret, name=name,
            listen=self.opts.listen or DEFAULT_LISTEN, peers=list(self.opts.peers),
            discovery=self.opts.discovery, discovery_port=self.opts.discovery_port,
            watch=True, elect=True, allow_mass_delete=self.opts.allow_mass_delete,
        )
        self.files_model.reset_rows([])
        self.peers_model.set_peers([])
        self.conflicts_panel.set_conflicts([])
        self.status, self.info = {}, {}
        self.held = None
        self.mass_delete_dialog.hide()
        self._episode_total = self._episode_bytes = 0
        self.worker = EngineWorker(opts, self, any_port_if_taken=self.opts.listen is None)
        w = self.worker
        w.started.connect(self._on_started)
        w.failed.connect(self._on_failed)
        w.stopped.connect(self._on_stopped)
        w.files_reset.connect(self.files_model.reset_rows)
        w.files_update.connect(self.files_model.apply_update)
        w.progress.connect(self._on_progress)
        w.peers.connect(self.peers_model.set_peers)
        w.peers.connect(self._on_peers)
        w.status.connect(self._on_status)
        w.activity.connect(self.activity.add)
        w.notify.connect(self.tray.notify)
        w.conflict_sides.connect(self.conflicts_panel.show_sides)
        w.resolved.connect(self.conflicts_panel.on_resolved)
        w.sync_done.connect(self._on_sync_done)
        w.mass_delete.connect(self._on_mass_delete)
        w.foreign_nearby.connect(self._on_foreign_nearby)
        self.folder_title.setText(folder.name or str(folder))
        self.subtitle.setText(f"{display_path(folder)}  ·  starting…")
        self.setWindowTitle(f"{folder.name or folder} - p2psync")
        self.banner.hide()
        self.progress_label.setText("Reading the folder…")
        self.progress.setRange(0, 0)
        self.pages.setCurrentIndex(1)
        for a in (self.open_folder_action, self.sync_action, self.change_folder_action):
            a.setEnabled(True)
        self._set_controls(False)
        w.start()
        return True

    # --- the engine's reports -----------------------------------------------------------
    def _on_started(self, info: dict) -> None:
        self.info = info
        self._set_controls(True)
        self.statusBar().showMessage(f"Listening on {info['listen']}  ·  this device: "
                                     f"{info['device_id']}")
        self._refresh_overall()

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

    def _on_peers(self, peers: list[dict]) -> None:
        self.conflicts_panel.set_device_names(
            {p["device_id"][:7]: "this device" if p.get("self") else p["name"] for p in peers})
        n = sum(1 for p in peers if not p.get("self") and p.get("state") == "connected")
        self.peers_title.setText(f"<b>Devices</b> ({n} connected)" if n else
                                 "<b>Devices</b> (waiting for other devices of this share…)")
        self._refresh_subtitle()

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
        self.tabs.setTabText(1, f"Conflicts ({len(copies)})" if copies else "Conflicts")
        self.tabs.setTabIcon(1, state_icon("conflict") if copies else QIcon())

    def _refresh_subtitle(self) -> None:
        if self.folder is None:
            return
        st = self.status
        role = st.get("role", "electing")
        if role == "server":
            role_text = "this device is the server"
        elif role == "client":
            role_text = f"client of {st.get('server_name') or 'the server'}"
        else:
            role_text = "looking for the share's server…"
        n = st.get("connected", 0)
        peers = f"{n} device{'s' if n != 1 else ''} connected" if n else "no other device yet"
        name = self.info.get("name") or self.config.device_name()
        self.subtitle.setText(f"{display_path(self.folder)}  ·  {name}: {role_text}  ·  {peers}")

    def _refresh_overall(self) -> None:
        m = self.files_model
        total = m.total_files()
        unsynced = sum(m.count(s) for s in (LOCAL_CHANGE, REMOTE_CHANGE, CONFLICT, ERROR))
        self.files_count.setText(f"{total:,} files  ·  {unsynced:,} not synced")
        if self.worker is None or not self.info:
            return
        st = self.status
        held = self.held["deletes"] if self.held and self.held.get("reason") != "unmounted" \
            else 0
        incoming = max(0, m.count(REMOTE_CHANGE) - held)  # held deletions are not on their way
        done = sum(d for d, _ in self._incoming_done.values())
        to_go = max(0, m.bytes_in(REMOTE_CHANGE) - done)
        outgoing = m.count(LOCAL_CHANGE)
        speed = st.get("rate_in", 0)
        busy = incoming > 0 or st.get("busy") or self._rescanning
        if self._rescanning:
            self.progress.setRange(0, 0)
            text = "Sync now: rescanning the folder…"
        elif busy:
            # how far this round of syncing got: by bytes (one big file moves the bar
            # too), by files when what is left is empty files
            self._episode_total = max(self._episode_total, incoming)
            self._episode_bytes = max(self._episode_bytes, to_go)
            self.progress.setRange(0, 1000)
            if self._episode_bytes:
                left = to_go / self._episode_bytes
            else:
                left = incoming / self._episode_total if self._episode_total else 0
            self.progress.setValue(int(1000 * (1 - left)))
            text = f"Syncing: {incoming:,} file{'s' if incoming != 1 else ''} " \
                   f"({human_size(to_go)}) to go"
            if speed:
                text += f"  ·  {human_size(speed)}/s"
            if st.get("paused"):
                text = f"Paused  ·  {incoming:,} files ({human_size(to_go)}) waiting"
        else:
            self._episode_total = self._episode_bytes = 0
            self.progress.setRange(0, 1000)
            self.progress.setValue(1000)
            if st.get("connected"):
                text = "Up to date"
                if outgoing:
                    text = f"Sending {outgoing:,} local change{'s' if outgoing != 1 else ''}"
            else:
                text = "Waiting for the other devices"
                if outgoing:
                    text += f"  ·  {outgoing:,} local change{'s' if outgoing != 1 else ''} " \
                            "to send"
        if self.held is not None:
            text += f"  ·  {self.held['deletes']:,} deletions held back, waiting for your answer"
        conflicts = m.count(CONFLICT)
        if conflicts:
            n = len(m.conflict_copies())
            text += f"  ·  {n} conflict{'s' if n != 1 else ''} to look at"
        self.progress_label.setText(text)
        self.tray.set_state(text)

    def show_error(self, message: str) -> None:
        self.banner_text.setText(message)
        self.banner_text.setProperty("foreign", False)
        self.banner.show()
        log.warning("%s", message)

    # --- user actions -------------------------------------------------------------------
    def _set_controls(self, on: bool) -> None:
        for w in (self.sync_button, self.pause_button):
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

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
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
