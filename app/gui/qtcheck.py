"""Can Qt start here? If not, one line that names what is missing and how to get it.

Without a check, a missing piece ends the desktop app with a traceback
(`ModuleNotFoundError: No module named 'PySide6'`, an ImportError naming a shared
library), or worse, with Qt aborting the process from inside QApplication (its xcb
platform plugin could not load a library; there is no display). `qt_problem` looks
before anything Qt-side runs: it imports the Qt modules the window needs, and on
Linux with an X display, loads the xcb platform plugin the way Qt will (dlopen), so
the library the loader names is the one really missing (Qt's own message may name
another). Importable without PySide6.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from pathlib import Path

QT_REQUIREMENT = "PySide6-Essentials>=6.6,<6.12"  # as pyproject.toml: 6.12 crashes here

# shared library -> the Debian/Ubuntu package that has it (what scripts/setup.sh installs)
DEBIAN_PACKAGES = {
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libOpenGL.so.0": "libopengl0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libdbus-1.so.3": "libdbus-1-3",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
}
_LIBRARY = re.compile(r"(lib[\w.+-]+\.so(?:\.\d+)*)")


def missing_library(message: str) -> str | None:
    """The shared library a loader error names ("libEGL.so.1: cannot open ...")."""
    m = _LIBRARY.search(message)
    return m.group(1) if m else None


def _install_hint(library: str) -> str:
    package = DEBIAN_PACKAGES.get(library)
    if package:
        return f"on Debian/Ubuntu: sudo apt-get install {package}"
    return f"install the package that provides {library} (Debian/Ubuntu: apt-file search {library})"


def describe_import_error(e: ImportError) -> str:
    """One line for an ImportError of PySide6."""
    if isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] in ("PySide6",
                                                                              "shiboken6"):
        return (f"the desktop app needs {QT_REQUIREMENT}, which is not installed here: "
                f"pip install '{QT_REQUIREMENT}' (or use `p2psync run` for a node without "
                "a window)")
    library = missing_library(str(e))
    if library:
        why = str(e).split(":", 1)[1].strip() if ":" in str(e) else "cannot be loaded"
        return (f"Qt cannot load: the system library {library} is missing or broken "
                f"({why}); {_install_hint(library)} (or run scripts/setup.sh)")
    return f"Qt cannot load ({e}); reinstall it: pip install --force-reinstall '{QT_REQUIREMENT}'"


def qt_problem() -> str | None:
    """Why the desktop app cannot start Qt here, in one line; None when it can."""
    try:
        import PySide6.QtGui  # noqa: F401 - the libraries of every widget
        import PySide6.QtWidgets  # noqa: F401
    except ImportError as e:
        return describe_import_error(e)
    if not sys.platform.startswith("linux"):
        return None
    platform = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0]
    if platform and platform != "xcb":
        return None  # offscreen, wayland, vnc...: Qt says for itself
    if not os.environ.get("DISPLAY"):
        if not platform and os.environ.get("WAYLAND_DISPLAY"):
            return None  # Qt picks its wayland plugin
        return ("no display to open the window on (DISPLAY is not set): start p2psync from "
                "a desktop session, or use `p2psync run --folder DIR` for a node without a "
                "window")
    return _xcb_problem() or _display_problem(os.environ["DISPLAY"])


def _xcb_problem() -> str | None:
    if sys.platform == "win32":  # no X display there: Qt brings its own platform plugin
        return None
    from PySide6.QtCore import QLibraryInfo

    plugin = (Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath))
              / "platforms" / "libqxcb.so")
    if not plugin.exists():
        return None  # another layout (a bundle): Qt finds its own
    try:
        ctypes.CDLL(str(plugin), mode=os.RTLD_LAZY | os.RTLD_LOCAL)
    except OSError as e:
        library = missing_library(str(e).replace(str(plugin), ""))
        what = f"the system library {library} is missing or broken" if library else str(e)
        hint = _install_hint(library) if library else "reinstall PySide6-Essentials"
        return (f"Qt cannot open a window on the X display: {what}; {hint} "
                "(or run scripts/setup.sh --gui)")
    return None


def _display_problem(display: str) -> str | None:
    """Whether an X server answers at `display`, asked the way Qt's xcb plugin will ask
    (libxcb: its socket, its authorization). A DISPLAY left from a session that is gone
    (an ssh -X that ended, a stopped Xvfb) made Qt abort the process, saying that
    libxcb-cursor0 was needed when it was installed."""
    try:
        xcb = ctypes.CDLL("libxcb.so.1")
    except OSError:
        return None  # (the plugin loaded, so it is there; if not, Qt says for itself)
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    conn = xcb.xcb_connect(os.fsencode(display), None)
    try:
        failed = xcb.xcb_connection_has_error(conn)
    finally:
        xcb.xcb_disconnect(conn)
    if not failed:
        return None
    return (f"cannot open a window on the X display {display} (DISPLAY): no X server "
            "answers there, or it refused us; start p2psync from a desktop session, or use "
            "`p2psync run --folder DIR` for a node without a window")
