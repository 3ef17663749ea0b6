"""Render the app icon (resources/icon.svg) into a freedesktop hicolor icon tree.

    python packaging/make_icons.py [OUT]        (OUT default: packaging/build/icons)

writes OUT/hicolor/NxN/apps/p2psync.png for N in 16 22 24 32 48 64 128 256 512, and
OUT/hicolor/scalable/apps/p2psync.svg (a copy of the source). The bundle gets this tree
as share/icons/. Rendering uses Qt's QSvgRenderer offscreen: no display needed.
resources/ itself is not touched (the GUI keeps its own PNGs there).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "resources"))

from make_icons import render  # noqa: E402  (one renderer for resources/ and the bundle)
from PySide6.QtGui import QGuiApplication  # noqa: E402

SOURCE = ROOT / "resources" / "icon.svg"
SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
NAME = "p2psync"


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "packaging" / "build" / "icons"
    app = QGuiApplication.instance() or QGuiApplication(argv[:1])  # noqa: F841
    hicolor = out / "hicolor"
    for size in SIZES:
        render(SOURCE, size, hicolor / f"{size}x{size}" / "apps" / f"{NAME}.png")
    scalable = hicolor / "scalable" / "apps" / f"{NAME}.svg"
    scalable.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SOURCE, scalable)
    print(f"make_icons: {len(SIZES)} PNG sizes ({SIZES[0]}..{SIZES[-1]}) + SVG under {hicolor}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
