"""Takes the pairing pictures of the README: two devices pairing by code, side by side.

Not a test (pytest does not collect it). Run it under a real X server wide enough for
two windows, e.g.:

    Xvfb :99 -screen 0 1920x1080x24 -nolisten tcp &
    QT_QPA_PLATFORM=xcb DISPLAY=:99 python tests/gui/make_pairing_screenshots.py [DIR]

It writes DIR/pairing-code.png (the laptop's "Invite a device" shows its code, the
desktop's "Join with a code" has it typed) and DIR/pairing-confirm.png (each asks to
compare the same words), DIR being docs/ by default: the two dialogs side by side, each
taken with Qt's grabWindow, put together with ImageMagick's montage. Both windows run in
this process with engines of their own, on loopback; discovery goes to 127.255.255.255
only. Everything lives in a temp dir that is removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
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
from app.net.sharekey import new_key  # noqa: E402

SIZE = (900, 620)
PORT = 22999  # discovery, loopback broadcast only


def grab(dialog, path: Path) -> None:
    """One dialog, as the screen shows it (no window manager here: no title bar)."""
    dialog.screen().grabWindow(dialog.winId()).save(str(path))


def side_by_side(left: Path, right: Path, out: Path) -> None:
    """The two devices' dialogs, framed and captioned, in one picture."""
    subprocess.run(["/usr/bin/montage", "-label", "laptop (inviting)", str(left),
                    "-label", "desktop (joining)", str(right), "-tile", "2x1",
                    "-geometry", "+18+10", "-bordercolor", "#9a9a9a", "-border", "1",
                    "-pointsize", "15", "-background", "white", str(out)], check=True)
    print(f"wrote {out}", file=sys.stderr)


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs"
    base = Path(tempfile.mkdtemp(prefix="p2psync-pairing-shot-"))
    os.environ["HOME"] = str(base / "home")
    laptop_dir, desktop_dir = base / "home" / "Shared", base / "desktop" / "Shared"
    for d in (laptop_dir, desktop_dir):
        d.mkdir(parents=True)
    (laptop_dir / "notes.txt").write_text("the plan\n")
    qt = QApplication(sys.argv[:1])
    qt.setApplicationName("p2psync")
    qt.setWindowIcon(app_icon())

    def window(name: str, folder: Path | None, secret: str | None, x: int) -> MainWindow:
        w = MainWindow(LaunchOptions(config=Config(base / f"cfg-{name}"), folder=folder,
                                     secret=secret, name=name, listen=("127.0.0.1", 0),
                                     discovery=True, discovery_port=PORT))
        w.setGeometry(x, 0, *SIZE)
        w.show()
        return w

    laptop = window("laptop", laptop_dir, new_key(), 0)
    desktop = window("desktop", None, None, SIZE[0] + 20)
    shots = base / "shots"
    shots.mkdir()
    step = {"n": 0, "t": time.monotonic()}
    result = {"ok": False}

    def tick() -> None:
        invite = laptop.invite_dialog
        join = desktop.setup_page.join_dialog
        if step["n"] == 0 and laptop.info:
            laptop.invite_device()
            page = desktop.setup_page
            page.set_folder(desktop_dir)
            page.name_edit.setText("desktop")
            page.join_with_code()
            step["n"] = 1
        elif step["n"] == 1 and invite.code and not join.code_edit.text():
            join.code_edit.setText(invite.code)
            step["n"] = 2
        elif step["n"] == 2 and time.monotonic() - step["t"] > 0.5:  # painted
            grab(invite, shots / "code-laptop.png")
            grab(join, shots / "code-desktop.png")
            side_by_side(shots / "code-laptop.png", shots / "code-desktop.png",
                         out / "pairing-code.png")
            join.join_button.click()
            step["n"] = 3
        elif step["n"] == 3 and invite.pages.currentIndex() == 1 \
                and join.pages.currentIndex() == 1:
            step["n"] = 4
        elif step["n"] == 4 and time.monotonic() - step["t"] > 0.5:
            grab(invite, shots / "words-laptop.png")
            grab(join, shots / "words-desktop.png")
            side_by_side(shots / "words-laptop.png", shots / "words-desktop.png",
                         out / "pairing-confirm.png")
            join.pair_button.click()
            invite.pair_button.click()
            step["n"] = 5
        elif step["n"] == 5 and desktop.pages.currentIndex() == 1 \
                and (desktop_dir / "notes.txt").exists():
            result["ok"] = True
            finish()
        elif time.monotonic() - step["t"] > 60:
            print(f"gave up at step {step['n']}", file=sys.stderr)
            finish()
        if step["n"] != step.get("last"):
            step["last"], step["t"] = step["n"], time.monotonic()

    def finish() -> None:
        timer.stop()
        for w in (laptop, desktop):
            w.close()

    closed: list[int] = []
    for w in (laptop, desktop):
        w.closed.connect(lambda: closed.append(1) or (len(closed) == 2 and qt.quit()))
    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(50)
    try:
        qt.exec()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
