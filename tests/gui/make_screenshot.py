"""Takes the README's pictures of the window: docs/screenshot.png (two peers, files in
several states), docs/screenshot-conflicts-dark.png (the conflicts view in a dark
palette) and docs/screenshot-narrow.png (the same window at 800x500).

Not a test (pytest does not collect it). Run it under a real X server, e.g.:

    Xvfb :99 -screen 0 1280x800x24 -nolisten tcp &
    QT_QPA_PLATFORM=xcb DISPLAY=:99 python tests/gui/make_screenshot.py [DIR]

(DIR: where the three pictures go, docs/ by default.)

The window's node ("laptop") shares a folder; a `run` node "desktop" joins with a
conflicting version of docs/plan.txt; a second `run` node "nas" joins with a large
disk image, which comes in while the picture is taken; meanwhile a video is edited
on the laptop (a local change on its way out). The folder also holds a link leading
out of it (an error) and an ignored log file. Everything lives in a temp dir that is
removed afterwards; discovery stays off (loopback addresses only).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
os.environ.setdefault("P2PSYNC_DISCOVERY_TARGETS", "127.255.255.255")

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtGui import QColor, QPalette  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

import app.gui  # noqa: E402,F401
from app.engine.config import Config  # noqa: E402
from app.gui.window import LaunchOptions, MainWindow, app_icon  # noqa: E402
from tests.procs import start_run  # noqa: E402

KEY = "K7PQD-M2XWA-9HTRE-LC4NV"
MIB = 1024 * 1024


def write(path: Path, data: bytes | str, age_s: float = 0.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if age_s:
        t = time.time() - age_s
        os.utime(path, (t, t))


def big(path: Path, mib: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    chunk = os.urandom(4 * MIB)
    with open(path, "wb") as f:
        for _ in range(mib // 4):
            f.write(chunk[:2 * MIB] + os.urandom(2 * MIB))


def populate(a: Path, b: Path, c: Path) -> None:
    day = 86400
    write(a / "docs/plan.txt", "Q3 plan\n- ship the desktop app\n- laptop's ideas\n", 2 * day)
    write(b / "docs/plan.txt", "Q3 plan\n- ship the desktop app\n- desktop's ideas\n", 60)
    write(a / "docs/meeting notes.md", "# Monday\n\n- sync demo\n" * 40, 3 * day)
    write(a / "docs/budget 2026.ods", os.urandom(48_000), 5 * day)
    write(a / "docs/contract.pdf", os.urandom(310_000), 9 * day)
    for i, name in enumerate(("IMG_0412.jpg", "IMG_0431.jpg")):
        write(a / "photos/2026-06 beach" / name, os.urandom(2_400_000 + i * 97_000),
              20 * day)
    write(b / "photos/2026-07 hike/IMG_0502.jpg", os.urandom(3_100_000), 8 * day)
    write(a / "music/demo take 3.flac", os.urandom(5_800_000), 30 * day)
    write(a / "projects/website/index.html", "<h1>Hello</h1>\n" * 30, 4 * day)
    write(a / "projects/website/style.css", "body { margin: 0 }\n" * 20, 4 * day)
    write(b / "projects/website/logo.svg", "<svg/>\n" * 50, 2 * day)
    write(a / "notes.txt", "buy milk\n", 3600)
    write(a / ".p2psyncignore", "*.log\n", 6 * day)
    write(a / "debug.log", "noise\n" * 1000, 600)
    os.symlink("/etc/hostname", a / "hostname-link")  # leads out of the folder: an error
    big(a / "videos/holiday.mp4", 256)
    big(c / "backup/disk image.iso", 3072)


def dark_palette() -> QPalette:
    """A common dark theme (as Fusion-based desktops set it)."""
    p = QPalette()
    roles = QPalette.ColorRole
    for role, color in ((roles.Window, "#2b2b2b"), (roles.WindowText, "#e6e6e6"),
                        (roles.Base, "#1e1e1e"), (roles.AlternateBase, "#262626"),
                        (roles.Text, "#e6e6e6"), (roles.Button, "#353535"),
                        (roles.ButtonText, "#e6e6e6"), (roles.Highlight, "#2a82da"),
                        (roles.HighlightedText, "#ffffff"), (roles.ToolTipBase, "#353535"),
                        (roles.ToolTipText, "#e6e6e6"), (roles.PlaceholderText, "#9a9a9a"),
                        (roles.Mid, "#3c3c3c"), (roles.Dark, "#202020"),
                        (roles.Light, "#4a4a4a"), (roles.Link, "#5aa9ff")):
        p.setColor(role, QColor(color))
    for role in (roles.WindowText, roles.Text, roles.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor("#7a7a7a"))
    return p


def main() -> int:
    docs = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs"
    out = docs / "screenshot.png"
    conflicts_out = docs / "screenshot-conflicts-dark.png"
    narrow_out = docs / "screenshot-narrow.png"
    base = Path(tempfile.mkdtemp(prefix="p2psync-shot-"))
    os.environ["HOME"] = str(base / "alex")  # the window shows the folder as ~/Shared
    a, b, c = base / "alex" / "Shared", base / "desktop", base / "nas"
    for d in (a, b, c):
        d.mkdir(parents=True)
    print("writing the folders", file=sys.stderr)
    populate(a, b, c)
    qt = QApplication(sys.argv[:1])
    qt.setStyle("Fusion")
    light = qt.palette()
    qt.setApplicationName("p2psync")
    qt.setWindowIcon(app_icon())
    w = MainWindow(LaunchOptions(config=Config(base / "cfg-laptop"), folder=a, secret=KEY,
                                 name="laptop", listen=("127.0.0.1", 0), discovery=False))
    w.setGeometry(0, 0, 1280, 800)
    w.show()
    nodes = []
    step = {"n": 0, "t": time.monotonic()}
    result = {"ok": False}

    def tick() -> None:
        m = w.files_model
        iso = m.get("backup/disk image.iso")
        if step["n"] == 0 and w.info and w.status.get("role") == "server":
            nodes.append(start_run(b, base / "cfg-desktop", "--peer", w.info["listen"],
                                   "--name", "desktop", secret=KEY))
            step["n"] = 1
        elif step["n"] == 1 and m.conflict_copies() and m.count("synced") >= 12 \
                and not m.count("remote_change"):
            nodes.append(start_run(c, base / "cfg-nas", "--peer", w.info["listen"],
                                   "--name", "nas", secret=KEY))
            step["n"] = 2
        elif step["n"] == 2 and iso is not None and (m.progress_of(iso[0]) or 0) > 0.08:
            threading.Thread(target=big, args=(a / "videos/holiday.mp4", 256)).start()
            step["n"] = 3  # the video, re-encoded on the laptop: all new content
        elif step["n"] == 3 and iso is not None and 0.1 <= (m.progress_of(iso[0]) or 0) <= 0.95 \
                and m.state_of("videos/holiday.mp4") == "local_change":
            step["n"] = 3.5
            w.files_view.selectRow(m.row_of("backup/disk image.iso"))  # its details pane
        elif step["n"] == 3.5 and not w.details.why.isHidden() and w.details.why.text():
            step["n"] = 4
            shoot(out)
            w.tabs.setCurrentIndex(1)
            qt.setPalette(dark_palette())
        elif step["n"] == 4 and "ideas" in w.conflicts_panel.other_text.toPlainText():
            step["n"] = 5
            QTimer.singleShot(500, lambda: shoot(conflicts_out))
        elif step["n"] == 5 and conflicts_out.exists():
            step["n"] = 6
            qt.setPalette(light)
            w.tabs.setCurrentIndex(0)
            w.resize(800, 500)
        elif step["n"] == 6 and time.monotonic() - step["t"] > 1.0:
            step["n"] = 7
            shoot(narrow_out)
            result["ok"] = True
            timer.stop()
            w.close()
        elif time.monotonic() - step["t"] > 240:
            print(f"gave up at step {step['n']}: iso {iso}, video "
                  f"{m.get('videos/holiday.mp4')}", file=sys.stderr)
            w.close()
        if os.environ.get("SHOT_DEBUG") and int(time.monotonic() * 4) % 2 == 0:
            print(step["n"], iso and iso[3], iso and m.progress_of(iso[0]),
                  m.state_of("videos/holiday.mp4"), file=sys.stderr)
        if step["n"] != step.get("last"):
            step["last"], step["t"] = step["n"], time.monotonic()

    def shoot(path: Path) -> None:
        qt.processEvents()
        w.grab().save(str(path))
        print(f"wrote {path}", file=sys.stderr)

    for path in (out, conflicts_out, narrow_out):
        path.unlink(missing_ok=True)
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
