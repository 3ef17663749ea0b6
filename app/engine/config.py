"""Where a device keeps its identity, settings and per-folder index.

One config dir per device (platformdirs by default, `--config-dir` in tests and for
several devices on one machine). settings.json holds the device name and, per shared
folder, its share key; the index databases sit beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

SETTINGS = "settings.json"
VERSIONS_DAYS = 30  # how long replaced versions are kept, unless settings say otherwise


def default_config_dir() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("p2psync", appauthor=False))


def new_share_key() -> str:
    """A key people can read aloud and paste: 4 groups of 5 base32 characters (100 bits)."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    raw = "".join(secrets.choice(alphabet) for _ in range(20))
    return "-".join(raw[i : i + 5] for i in range(0, 20, 5))


@dataclass(frozen=True)
class FolderPaths:
    folder: Path
    folder_id: str
    db_path: Path
    control_socket: Path


class Config:
    def __init__(self, config_dir: Path | str | None = None) -> None:
        self.dir = Path(config_dir) if config_dir else default_config_dir()
        self._settings: dict | None = None

    def ensure_dir(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    # --- settings.json -------------------------------------------------------------
    @property
    def settings(self) -> dict:
        if self._settings is None:
            try:
                self._settings = json.loads((self.dir / SETTINGS).read_text("utf-8"))
            except (OSError, ValueError):
                self._settings = {}
        return self._settings

    def save(self) -> None:
        self.ensure_dir()
        tmp = self.dir / (SETTINGS + ".tmp")
        tmp.write_text(json.dumps(self.settings, indent=2, sort_keys=True), "utf-8")
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.dir / SETTINGS)

    def device_name(self) -> str:
        return self.settings.get("device_name") or socket.gethostname()

    def set_device_name(self, name: str) -> None:
        self.settings["device_name"] = name
        self.save()

    def versions_days(self) -> float:
        """Days a replaced version stays in `.p2psync/versions/` (setting `versions_days`).

        Anything but a positive number falls back to the default: a typo in the
        settings must never make the node prune every kept version at once.
        """
        days = self.settings.get("versions_days", VERSIONS_DAYS)
        if isinstance(days, bool) or not isinstance(days, int | float) or not days > 0:
            return VERSIONS_DAYS
        return days

    # --- folders -------------------------------------------------------------------
    def folder_paths(self, folder: Path) -> FolderPaths:
        folder = folder.resolve()
        folder_id = hashlib.sha256(os.fsencode(folder)).hexdigest()[:16]
        sock = self.dir / "ctl" / f"{folder_id}.sock"
        if len(os.fsencode(sock)) > 100:  # AF_UNIX paths are limited to ~108 bytes
            key = hashlib.sha256(os.fsencode(sock)).hexdigest()[:16]
            sock = Path(tempfile.gettempdir()) / f"p2psync-{os.getuid()}-{key}.sock"
        return FolderPaths(folder, folder_id, self.dir / "index" / f"{folder_id}.db", sock)

    def share_key(self, folder: Path) -> str | None:
        entry = self.settings.get("folders", {}).get(self.folder_paths(folder).folder_id)
        return entry.get("secret") if entry else None

    def set_share_key(self, folder: Path, secret: str) -> None:
        fp = self.folder_paths(folder)
        folders = self.settings.setdefault("folders", {})
        folders[fp.folder_id] = {"path": str(fp.folder), "secret": secret}
        self.save()
