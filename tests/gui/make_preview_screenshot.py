"""Takes the README's picture of the Preview dialog: docs/screenshot-preview.png.

Not a test (pytest does not collect it). Run it under a real X server, e.g.:

    Xvfb :99 -screen 0 1280x800x24 -nolisten tcp &
    QT_QPA_PLATFORM=xcb DISPLAY=:99 python tests/gui/make_preview_screenshot.py [DIR]

The window's node ("laptop") shares a folder with a `run` node "desktop"; once both
agree, the laptop pauses and the desktop goes away, makes changes of every kind (new
photos, an edited document, a renamed and a deleted file, and an edit of a file the
laptop edited too) and comes back. The laptop's Preview then lists what Sync now would
do. Everything lives in a temp dir that is removed afterwards; discovery stays off.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
os.environ.setdefault("P2PSYNC_DISCOVERY_TARGETS", "127.255.255.255")

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

import app.gui  # noqa: E402,F401
from app.engine.config import Config  # noqa: E402
from app.gui.window import LaunchOptions, MainWindow, app_icon  # noqa: E402
from tests.procs import start_run  # noqa: E402

KEY = "K7PQD-M2XWA-9HTRE-LC4NV"
DAY = 86400


def write(path: Path, data: bytes | str, age_s: float = 0.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    t = time.time() - age_s
    os.utime(path, (t, t))


def populate(a: Path) -> None:
    write(a / "docs/plan.txt", "Q3 plan\n- ship the desktop app\n", 2 * DAY)
    write(a / "docs/report.odt", os.urandom(900_000), 3 * DAY)
    write(a / "docs/meeting notes.md", "# Monday\n\n- sync demo\n" * 40, 3 * DAY)
    write(a / "notes.txt", "buy milk\n", 5 * DAY)
    write(a / "old draft.txt", "an old draft\n" * 20, 9 * DAY)
    write(a / "photos/2026-06 beach/IMG_0412.jpg", os.urandom(2_400_000), 20 * DAY)


def change(a: Path, b: Path) -> None:
    """The desktop's changes while it was away, and the laptop's edit of the same plan."""
    write(b / "docs/plan.txt", "Q3 plan\n- ship the desktop app\n- desktop's ideas\n", 0)
    write(a / "docs/plan.txt", "Q3 plan\n- ship the desktop app\n- laptop's ideas\n", 600)
    report = bytearray((b / "docs/report.odt").read_bytes())
    report[200_000:210_000] = os.urandom(10_000)  # one block of seven changes
    write(b / "docs/report.odt", bytes(report), 60)
    (b / "archive").mkdir()
    os.rename(b / "notes.txt", b / "archive/notes.txt")
    (b / "old draft.txt").unlink()
    for i, name in enumerate(("IMG_0502.jpg", "IMG_0507.jpg", "IMG_0519.jpg")):
        write(b / "photos/2026-07 hike" / name, os.urandom(2_900_000 + i * 131_000), 3600)


def main() -> int:
    docs = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs"
    out = docs / "screenshot-preview.png"
    base = Path(tempfile.mkdtemp(prefix="p2psync-shot-"))
    a, b = base / "laptop", base / "desktop"
    a.mkdir()
    populate(a)
    qt = QApplication(sys.argv[:1])
    qt.setStyle("Fusion")
    qt.setApplicationName("p2psync")
    qt.setWindowIcon(app_icon())
    w = MainWindow(LaunchOptions(config=Config(base / "cfg-laptop"), folder=a, secret=KEY,
                                 name="laptop", listen=("127.0.0.1", 0), discovery=False))
    w.setGeometry(0, 0, 1280, 800)
    w.show()
    nodes: list = []
    step = {"n": 0}
    result = {"ok": False}
    dialog = w.preview_dialog

    def start_desktop() -> None:
        nodes.append(start_run(b, base / "cfg-desktop", "--peer", w.info["listen"],
                               "--name", "desktop", secret=KEY))

    def tick() -> None:
        m = w.files_model
        if step["n"] == 0 and w.info:
            start_desktop()
            step["n"] = 1
        elif step["n"] == 1 and (b / "photos/2026-06 beach/IMG_0412.jpg").exists() \
                and m.count("synced") >= 6 and not m.count("remote_change"):
            w.pause_button.setChecked(True)
            nodes.pop().stop()
            change(a, b)
            step["n"] = 2
            QTimer.singleShot(1500, start_desktop)  # the laptop's scan sees its own edit
        elif step["n"] == 2 and m.count("remote_change") >= 6:
            step["n"] = 3
            QTimer.singleShot(1500, w.preview)  # the desktop settled the conflict its way
        elif step["n"] == 3 and dialog.isVisible() and dialog.model.rowCount() >= 8:
            step["n"] = 4
            dialog.resize(1120, 420)
            QTimer.singleShot(600, shoot)

    def shoot() -> None:
        dialog.grab().save(str(out))
        result["ok"] = True
        print(f"wrote {out}", file=sys.stderr)
        w.close()

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(100)
    QTimer.singleShot(120_000, w.close)  # never hangs
    w.closed.connect(qt.quit)
    try:
        qt.exec()
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
