"""The shared folder a user names: checked once, the same way by every face of the app."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from app.errors import UsageError


def checked_folder(folder: Path | None) -> Path:
    """The folder, resolved, or UsageError (exit 2): a missing folder is never created."""
    if folder is None:
        raise UsageError("--folder is required")
    folder = folder.expanduser()
    if not folder.exists():
        raise UsageError(f"folder does not exist: {folder}")
    if not folder.is_dir():
        raise UsageError(f"not a folder: {folder}")
    if not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
        raise UsageError(f"cannot read and write the folder: {folder}")
    folder = folder.resolve()
    if why := _no_folder_to_share(folder):
        raise UsageError(f"refusing to share {folder}: {why}")
    return folder


def _no_folder_to_share(folder: Path) -> str | None:
    """Why folder is no folder to share, if it is none: the whole system (`--folder /`
    walked into /proc and /sys, watched their every directory and hashed their files,
    and made /.p2psync), or the kernel's own files."""
    if folder == Path(folder.anchor) and (
            os.name != "nt" or folder.anchor.rstrip("\\/").lower()
            == os.environ.get("SYSTEMDRIVE", "C:").lower()):
        return ("it is the whole system (its own files, devices, every disk mounted in "
                "it); choose a folder in it")
    if sys.platform == "linux" and any(folder == p or p in folder.parents
                                       for p in (Path("/proc"), Path("/sys"))):
        return "it holds the kernel's own files, not files to sync"
    return None


def check_apart(folder: Path, config_dir: Path) -> None:
    """UsageError (exit 2) when the config dir is the shared folder itself: it holds the
    device's private key, and would be made private (0700) and shared. Checked before
    anything is written there. One inside the folder is fine: it is never synced
    (app/core/ignore.py)."""
    if os.path.realpath(config_dir) == os.path.realpath(folder):
        raise UsageError(f"the config dir {config_dir} is the shared folder itself: it holds "
                         "this device's key; pick another with --config-dir")
