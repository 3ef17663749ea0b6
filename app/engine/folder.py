"""The shared folder a user names: checked once, the same way by every face of the app."""

from __future__ import annotations

import os
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
    return folder.resolve()


def check_apart(folder: Path, config_dir: Path) -> None:
    """UsageError (exit 2) when the config dir is the shared folder itself: it holds the
    device's private key, and would be made private (0700) and shared. Checked before
    anything is written there. One inside the folder is fine: it is never synced
    (app/core/ignore.py)."""
    if os.path.realpath(config_dir) == os.path.realpath(folder):
        raise UsageError(f"the config dir {config_dir} is the shared folder itself: it holds "
                         "this device's key; pick another with --config-dir")
