"""Takes the README's picture of the Versions view: docs/screenshot-versions.png.

Not a test (pytest does not collect it). Run it under a real X server, e.g.:

    Xvfb :99 -screen 0 1280x800x24 -nolisten tcp &
    QT_QPA_PLATFORM=xcb DISPLAY=:99 python tests/gui/make_versions_screenshot.py [DIR]

The window's node ("laptop") shares a folder; a `run` node "desktop" joins and edits
a few files there, twice, so the laptop keeps the versions they replaced; one of them
is restored on the laptop (its replaced content is kept too). Then File → Versions…
is opened over the window and the screen is taken. Everything lives in a temp dir
that is removed afterwards; discovery stays off (loopback addresses only).
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
EDITED = ("docs/plan.txt", "docs/budget 2026.ods", "photos/cover.jpg")


def write(path: Path, data: bytes | str, age_s: float = 0.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if age_s:
        t = time.time() - age_s
        os.utime(path, (t, t))


def populate(a: Path) -> None:
    day = 86400
    write(a / "docs/plan.txt", "Q3 plan\n- ship the desktop app\n", 2 * day)
    write(a / "docs/budget 2026.ods", os.urandom(48_000), 5 * day)
    write(a / "docs/meeting notes.md", "# Monday\n\n- sync demo\n" * 40, 3 * day)
    write(a / "photos/cover.jpg", os.urandom(1_400_000), 9 * day)
    write(a / "notes.txt", "buy milk\n", 3600)


def edit(b: Path, round_: int) -> None:
    write(b / "docs/plan.txt", f"Q3 plan\n- ship the desktop app\n- round {round_}\n")
    write(b / "docs/budget 2026.ods", os.urandom(52_000 + round_ * 1000))
    write(b / "photos/cover.jpg", os.urandom(1_500_000 + round_ * 10_000))


def main() -> int:
    docs = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs"
    out = docs / "screenshot-versions.png"
    base = Path(tempfile.mkdtemp(prefix="p2psync-shot-"))
    os.environ["HOME"] = str(base / "alex")
    a, b = base / "alex" / "Shared", base / "desktop"
    a.mkdir(parents=True)
    populate(a)
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

    def arrived(round_: int) -> bool:
        return all((a / p).exists() and (b / p).exists()
                   and (a / p).read_bytes() == (b / p).read_bytes() for p in EDITED) \
            and f"round {round_}" in (a / "docs/plan.txt").read_text()

    def tick() -> None:
        n = step["n"]
        if n == 0 and w.info:
            nodes.append(start_run(b, base / "cfg-desktop", "--peer", w.info["listen"],
                                   "--name", "desktop", secret=KEY))
            step["n"] = 1
        elif n == 1 and all((b / p).exists() for p in EDITED):
            edit(b, 1)
            step["n"] = 2
        elif n == 2 and arrived(1):
            edit(b, 2)
            step["n"] = 3
        elif n == 3 and arrived(2):
            w.show_versions("docs/plan.txt")  # restore round 1's plan here
            step["n"] = 4
        elif n == 4 and w.versions_dialog.model.rowCount() == 2:
            w.versions_dialog.view.selectRow(0)
            w.versions_dialog.restore_selected()
            step["n"] = 5
        elif n == 5 and "Restored" in w.versions_dialog.status.text():
            w.versions_dialog.close()
            w.show_versions()
            step["n"] = 6
        elif n == 6 and w.versions_dialog.model.rowCount() == 7:
            d = w.versions_dialog
            d.move(w.geometry().center() - d.rect().center())
            d.view.selectRow(1)
            step["n"] = 7
        elif n == 7 and time.monotonic() - step["t"] > 2.5 \
                and w.files_model.state_of("docs/plan.txt") == "synced":
            qt.processEvents()
            screen = qt.primaryScreen().grabWindow(0)
            screen.save(str(out))
            print(f"wrote {out}", file=sys.stderr)
            result["ok"] = True
            timer.stop()
            w.versions_dialog.close()
            w.close()
        elif time.monotonic() - step["t"] > 120:
            print(f"gave up at step {n}", file=sys.stderr)
            timer.stop()
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
