"""`p2psync` / `p2psync gui [--folder DIR] [node options]`: the desktop app.

Sets up the QApplication (name, icon, high-DPI, the system's palette), a log file
in platformdirs' user_log_dir("p2psync") beside the stderr logging of the CLI, and
the main window; runs the event loop; and makes sure the engine thread has ended
before the process exits, also on Ctrl+C or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import signal
import sys
from pathlib import Path

from app import __version__
from app.errors import P2PError, UsageError

log = logging.getLogger("p2psync.gui")

LOG_NAME = "p2psync.log"


def setup_file_logging(directory: Path | None = None) -> Path | None:
    """Log INFO and above to DIR/p2psync.log (rotated at 1 MB, 3 kept); returns its path."""
    from app.core.configdir import default_log_dir

    directory = directory or default_log_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / LOG_NAME
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=1_000_000,
                                                       backupCount=3, encoding="utf-8")
    except OSError as e:
        log.warning("no log file (%s): %s", directory, e)
        return None
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return path


def launch_options(args: argparse.Namespace, log_file: Path | None = None):
    from app.engine.config import Config
    from app.engine.folder import check_apart, checked_folder
    from app.gui.window import LaunchOptions
    from app.net.sharekey import given_key

    folder = checked_folder(args.folder) if args.folder is not None else None
    config = Config(args.config_dir)
    if folder is not None:
        check_apart(folder, config.dir)  # before the window writes a setting there
    secret = given_key(args.secret)  # a typo in a generated key: UsageError, exit 2
    if secret:  # a key a person typed: say so if it is easy to guess
        from app.engine.config import new_share_key
        from app.net.keystrength import cli_warning

        line = cli_warning(secret, new_share_key())
        if line:
            print(line, file=sys.stderr)
    return LaunchOptions(
        config=config, folder=folder, secret=secret,
        name=args.name, listen=args.listen, peers=list(args.peer),
        discovery=not args.no_discovery, discovery_port=args.discovery_port,
        log_file=log_file, allow_mass_delete=args.allow_mass_delete,
    )


def main(args: argparse.Namespace) -> int:
    if not os.environ.get("QT_QPA_PLATFORM"):
        os.environ.pop("QT_QPA_PLATFORM", None)  # an empty value aborts Qt
    from app.gui.qtcheck import qt_problem

    problem = qt_problem()  # before Qt can abort the process, or a traceback says it
    if problem:
        raise P2PError(problem)
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    import app.gui  # noqa: F401 - applies app.gui.qtfix before any widget exists
    from app.gui.window import MainWindow, app_icon

    log_file = setup_file_logging()
    opts = launch_options(args, log_file)  # UsageError (exit 2) before any window
    qt_app = QApplication.instance() or QApplication(sys.argv[:1])
    qt_app.setApplicationName("p2psync")
    qt_app.setApplicationDisplayName("p2psync")
    qt_app.setApplicationVersion(__version__)
    qt_app.setDesktopFileName("p2psync")
    qt_app.setWindowIcon(app_icon())
    qt_app.setQuitOnLastWindowClosed(False)  # we quit once the engine has stopped
    try:
        window = MainWindow(opts)
    except UsageError:
        raise
    window.closed.connect(qt_app.quit)
    window.show()
    # Ctrl+C / SIGTERM quit like File → Quit (never just to the tray): the engine stops
    # cleanly.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: QTimer.singleShot(0, window.quit))
    tick = QTimer()  # lets Python run its signal handlers while Qt waits
    tick.start(250)
    tick.timeout.connect(lambda: None)
    log.info("p2psync %s desktop app started (log: %s)", __version__, log_file)
    code = qt_app.exec()
    window.shutdown()
    return code
