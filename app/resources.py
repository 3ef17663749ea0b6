"""Where the app's assets (icons) are: one lookup, from source, installed or frozen.

The assets live in the repository's top-level `resources/` directory. An installed
p2psync carries them as the package `app.assets` (pyproject maps it to resources/);
a run from the source tree and the frozen bundle (PyInstaller puts them at the
bundle's root, on sys.path) see them as the (namespace) package `resources`; both are
read with `importlib.resources`. When neither is importable (an editable install
started from another directory), the directory next to the `app` package is used.
Qt-free: the GUI turns these paths into icons.
"""

from __future__ import annotations

import importlib.resources
from functools import cache
from pathlib import Path

_HERE = Path(__file__).resolve().parent


@cache
def root() -> Path:
    """The resources directory (it holds icon.svg)."""
    for package in ("app.assets", "resources"):  # installed; source tree or bundle
        try:
            found = importlib.resources.files(package)
            if found.joinpath("icon.svg").is_file():
                return Path(str(found.joinpath("icon.svg"))).parent
        except (ModuleNotFoundError, TypeError, ValueError):
            pass
    return _HERE.parent / "resources"


def path(rel: str) -> Path:
    """The file `rel` ("icons/p2psync-32.png") inside the resources directory."""
    return root() / rel


def app_icon_files() -> list[Path]:
    """The app icon at every rendered size, smallest first."""
    files = sorted(root().glob("icons/p2psync-*.png"), key=lambda p: int(p.stem.split("-")[1]))
    return files or [path("icon.svg")]


def state_icon_files(name: str) -> list[Path]:
    """A state icon (synced, conflict, peer_online ...) at every rendered size."""
    files = sorted(root().glob(f"states/{name}-*.png"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    return files or [path(f"states/{name}.svg")]
