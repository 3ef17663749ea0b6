"""Render the app icon (resources/icon.svg) into a freedesktop hicolor icon tree.

    python packaging/make_icons.py [OUT]        (OUT default: packaging/build/icons)

writes OUT/hicolor/NxN/apps/p2psync.png for N in 16 22 24 32 48 64 128 256 512, and
OUT/hicolor/scalable/apps/p2psync.svg (a copy of the source). The bundle gets this tree
as share/icons/. Rendering uses Qt's QSvgRenderer offscreen: no display needed.
resources/ itself is not touched (the GUI keeps its own PNGs there).

It also writes OUT/p2psync.ico (Windows: 16..256 px) and OUT/p2psync.icns (macOS:
16..1024 px), which the spec gives the Windows program and the macOS app. Both formats
hold PNG images as they are (ICO since Windows Vista, ICNS since Mac OS X 10.7), so
they are assembled here from the rendered PNGs: no Pillow, no iconutil.
"""

from __future__ import annotations

import shutil
import struct
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
    pngs = {size: (hicolor / f"{size}x{size}" / "apps" / f"{NAME}.png").read_bytes()
            for size in SIZES}
    for size in ICNS_ONLY:
        render(SOURCE, size, out / "extra" / f"{size}.png")
        pngs[size] = (out / "extra" / f"{size}.png").read_bytes()
    (out / f"{NAME}.ico").write_bytes(ico({n: pngs[n] for n in ICO_SIZES}))
    (out / f"{NAME}.icns").write_bytes(icns(pngs))
    print(f"make_icons: {len(SIZES)} PNG sizes ({SIZES[0]}..{SIZES[-1]}) + SVG under {hicolor},"
          f" {NAME}.ico and {NAME}.icns in {out}")
    return 0


ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
ICNS_ONLY = (1024,)
# ICNS element types holding a PNG of each size (the @2x ones share a size's pixels).
ICNS_TYPES = ((b"icp4", 16), (b"icp5", 32), (b"icp6", 64), (b"ic07", 128), (b"ic08", 256),
              (b"ic09", 512), (b"ic10", 1024), (b"ic11", 32), (b"ic12", 64), (b"ic13", 256),
              (b"ic14", 512))


def ico(pngs: dict[int, bytes]) -> bytes:
    """An ICO file of PNG images: ICONDIR, one ICONDIRENTRY per image, then the images."""
    head = struct.pack("<HHH", 0, 1, len(pngs))
    offset = len(head) + 16 * len(pngs)
    entries, data = b"", b""
    for size, png in sorted(pngs.items()):
        side = 0 if size >= 256 else size  # 0 means 256
        entries += struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(png), offset)
        offset += len(png)
        data += png
    return head + entries + data


def icns(pngs: dict[int, bytes]) -> bytes:
    """An ICNS file: 'icns', its length, then (type, length, PNG) elements."""
    body = b"".join(kind + struct.pack(">I", 8 + len(pngs[size])) + pngs[size]
                    for kind, size in ICNS_TYPES if size in pngs)
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
