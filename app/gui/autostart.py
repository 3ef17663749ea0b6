"""Start at login: an XDG autostart entry, $XDG_CONFIG_HOME/autostart/p2psync.desktop.

Desktops that follow the XDG autostart spec (GNOME, KDE, Xfce, ...) start what that
folder holds when the user logs in. The entry starts the app the way this one was
started (the bundle's executable, the venv's `p2psync`, or `python -m app`), with
this run's config dir when it is not the default one. Its presence is the setting:
no second copy of it elsewhere. Qt-free.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from app.engine.config import default_config_dir

NAME = "p2psync.desktop"


def entry_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "autostart" / NAME


def launch_command(config_dir: Path | None = None) -> list[str]:
    """The command that starts this app again, as it was started."""
    if getattr(sys, "frozen", False):  # the bundle (packaging/)
        cmd = [sys.executable]
    else:  # the venv's console script, else this interpreter with the package
        script = Path(sys.executable).with_name("p2psync")
        cmd = [str(script)] if script.exists() else [sys.executable, "-m", "app"]
    cmd.append("gui")
    if config_dir is not None and Path(config_dir) != default_config_dir():
        cmd += ["--config-dir", str(config_dir)]
    return cmd


def _exec_quote(arg: str) -> str:
    """One argument of an Exec line (Desktop Entry Specification, "The Exec key")."""
    if arg and not any(c in arg for c in ' \t\n"\'\\><~|&;$*?#()`='):
        return arg.replace("%", "%%")
    escaped = "".join("\\" + c if c in '"`$\\' else c for c in arg)
    return '"' + escaped.replace("%", "%%") + '"'


def entry_text(command: list[str]) -> str:
    return "\n".join([
        "[Desktop Entry]",
        "Type=Application",
        "Name=p2psync",
        "Comment=Keep a folder in sync with your other devices",
        f"Exec={' '.join(_exec_quote(a) for a in command)}",
        "Icon=p2psync",
        "Terminal=false",
        "X-GNOME-Autostart-enabled=true",
        "",
    ])


def is_enabled() -> bool:
    return entry_path().is_file()


def enable(config_dir: Path | None = None) -> Path:
    """Write the entry (atomically: a login never finds half of it); returns its path."""
    path = entry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".p2psync-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(entry_text(launch_command(config_dir)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def disable() -> None:
    entry_path().unlink(missing_ok=True)
