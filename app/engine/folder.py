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
