"""Render the PNG icons of resources/ from their SVG sources (run after editing an SVG).

    python resources/make_icons.py

The app icon (icon.svg) becomes icons/p2psync-N.png for the usual sizes; every state
icon (states/NAME.svg) becomes states/NAME-16.png, -32.png and -48.png, so Qt picks a
sharp one at 100 %, 200 % and 300 % scaling. Rendering uses QSvgRenderer offscreen:
no display needed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["QT_QPA_PLATFORM"] = os.environ.get("QT_QPA_PLATFORM") or "offscreen"

from PySide6.QtCore import QRectF, Qt  # noqa: E402
from PySide6.QtGui import QGuiApplication, QImage, QPainter  # noqa: E402
from PySide6.QtSvg import QSvgRenderer  # noqa: E402

HERE = Path(__file__).resolve().parent
APP_SIZES = (16, 24, 32, 48, 64, 128, 256)
STATE_SIZES = (16, 32, 48)


def render(svg: Path, size: int, out: Path) -> None:
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"make_icons: cannot read {svg}")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(out), "PNG"):
        raise SystemExit(f"make_icons: cannot write {out}")


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841
    written = 0
    for size in APP_SIZES:
        render(HERE / "icon.svg", size, HERE / "icons" / f"p2psync-{size}.png")
        written += 1
    for svg in sorted((HERE / "states").glob("*.svg")):
        for size in STATE_SIZES:
            render(svg, size, svg.with_name(f"{svg.stem}-{size}.png"))
            written += 1
    print(f"make_icons: wrote {written} PNG files under {HERE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
