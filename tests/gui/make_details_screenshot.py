"""Takes the README's picture of the details pane: docs/screenshot-details.png.

Not a test (pytest does not collect it). Run it under a real X server, e.g.:

    Xvfb :99 -screen 0 1280x800x24 -nolisten tcp &
    QT_QPA_PLATFORM=xcb DISPLAY=:99 python tests/gui/make_details_screenshot.py [DIR]

The window's node ("laptop") shares a folder with a `run` node "desktop"; they meet
with a conflict on docs/plan.txt. Then the laptop pauses, the desktop saves a new
version of docs/report.pdf (the laptop hears of it but fetches nothing) and goes
away: the picture shows report.pdf selected, its details saying that the newer
version is on desktop, offline since it left. Everything lives in a temp dir that is
removed afterwards; discovery stays off (loopback addresses only).
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
from tests.gui.make_screenshot import write  # noqa: E402
from tests.procs import start_run  # noqa: E402

KEY = "K7PQD-M2XWA-9HTRE-LC4NV"
REPORT = "docs/report.pdf"


def populate(a: Path, b: Path) -> None:
    day = 86400
    write(a / "docs/plan.txt", "Q3 plan\n- ship the desktop app\n- laptop's ideas\n", 2 * day)
    write(b / "docs/plan.txt", "Q3 plan\n- ship the desktop app\n- desktop's ideas\n", 60)
    write(a / "docs/meeting notes.md", "# Monday\n\n- sync demo\n" * 40, 3 * day)
    write(a / "docs/budget 2026.ods", os.urandom(48_000), 5 * day)
    write(a / REPORT, os.urandom(310_000), 9 * day)
    for i, name in enumerate(("IMG_0412.jpg", "IMG_0431.jpg")):
        write(a / "photos/2026-06 beach" / name, os.urandom(2_400_000 + i * 97_000),
              20 * day)
    write(a / "projects/website/index.html", "<h1>Hello</h1>\n" * 30, 4 * day)
    write(b / "projects/website/logo.svg", "<svg/>\n" * 50, 2 * day)
    write(a / "notes.txt", "buy milk\n", 3600)
    write(a / ".p2psyncignore", "*.log\n", 6 * day)
    write(a / "debug.log", "noise\n" * 1000, 600)


def main() -> int:
    docs = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs"
    out = docs / "screenshot-details.png"
    base = Path(tempfile.mkdtemp(prefix="p2psync-shot-"))
    os.environ["HOME"] = str(base / "alex")  # the window shows the folder as ~/Shared
    a, b = base / "alex" / "Shared", base / "desktop"
    for d in (a, b):
        d.mkdir(parents=True)
    populate(a, b)
    qt = QApplication(sys.argv[:1])
    qt.setStyle("Fusion")
    qt.setApplicationName("p2psync")
    qt.setWindowIcon(app_icon())
    w = MainWindow(LaunchOptions(config=Config(base / "cfg-laptop"), folder=a, secret=KEY,
                                 name="laptop", listen=("127.0.0.1", 0), discovery=False))
    w.setGeometry(0, 0, 1280, 800)
    w.show()
    nodes = []
    step = {"n": 0, "t": time.monotonic()}
    result = {"ok": False}

    def connected() -> bool:
        return any(p["state"] == "connected" for p in w.peers_model.peers()
                   if not p.get("self"))

    def tick() -> None:
        m = w.files_model
        if step["n"] == 0 and w.info and w.status.get("role") == "server":
            nodes.append(start_run(b, base / "cfg-desktop", "--peer", w.info["listen"],
                                   "--name", "desktop", secret=KEY))
            step["n"] = 1
        elif step["n"] == 1 and m.conflict_copies() and m.count("synced") >= 9 \
                and not m.count("remote_change"):
            w.worker.set_paused(True)  # hears of the desktop's new version, fetches nothing
            write(b / REPORT, os.urandom(420_000))
            step["n"] = 2
        elif step["n"] == 2 and m.state_of(REPORT) == "remote_change":
            nodes.pop().stop()
            step["n"] = 3
        elif step["n"] == 3 and not connected():
            w.files_view.setCurrentIndex(m.index(m.row_of(REPORT), 0))
            step["n"] = 4
        elif step["n"] == 4 and "offline since" in w.details.why.text() \
                and time.monotonic() - step["t"] > 1.0:
            step["n"] = 5
            qt.processEvents()
            w.grab().save(str(out))
            print(f"wrote {out}", file=sys.stderr)
            result["ok"] = True
            timer.stop()
            w.close()
        elif time.monotonic() - step["t"] > 120:
            print(f"gave up at step {step['n']}", file=sys.stderr)
            w.close()
        if step["n"] != step.get("last"):
            step["last"], step["t"] = step["n"], time.monotonic()

    out.unlink(missing_ok=True)
    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(50)
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
