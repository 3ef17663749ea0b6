"""Where a device keeps its identity, settings and per-folder index.

One config dir per device (platformdirs by default, `--config-dir` in tests and for
several devices on one machine). settings.json holds the device name and, per shared
folder, its share key; the index databases sit beside it. Processes that share a config
dir see each other's changes: see `Config.update` and app/core/configdir.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.core import configdir, private
from app.core.configdir import ConfigDirError
from app.net import sharekey

SETTINGS = "settings.json"
INDEX_DIR = "index"  # the folders' index databases
CTL_DIR = "ctl"  # the running nodes' control sockets
VERSIONS_DAYS = 30  # how long replaced versions are kept, unless settings say otherwise


def default_config_dir() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("p2psync", appauthor=False))


def new_share_key() -> str:
    """A key people can read aloud and paste: 4 groups of 5 random characters and a check
    character (100 bits; app/net/sharekey.py)."""
    return sharekey.new_key()


@dataclass(frozen=True)
class FolderPaths:
    folder: Path
    folder_id: str
    db_path: Path
    control_socket: Path


class Config:
    """One device's config dir: settings.json, and where the identity and indexes live.

    Several processes use one config dir at once (`run`, `sync`s of other folders,
    `status`, the app), so settings are never cached: every read looks at the file,
    and every change is a read-modify-write of it under the config dir's lock (see
    `update`). Two processes storing share keys for two folders thus both survive.
    """

    def __init__(self, config_dir: Path | str | None = None) -> None:
        self.dir = Path(config_dir) if config_dir else default_config_dir()

    def ensure_dir(self) -> None:
        """Create the config dir and its index/ dir, owner-only (see app/core/private.py).

        It holds the device's private key and every folder's index: an existing dir that
        others can reach is tightened, one that belongs to another user refused (exit 2).
        """
        configdir.private_dir(self.dir)
        configdir.private_dir(self.dir / INDEX_DIR, "index dir", holds=None)

    # --- settings.json -------------------------------------------------------------
    @property
    def settings(self) -> dict:
        """What settings.json holds now (a fresh copy: change it through `update`)."""
        return self._read(strict=False)

    def _read(self, *, strict: bool) -> dict:
        """settings.json as a dict; {} when missing. Unreadable: {} or, if `strict`, an error.

        Readers are lenient (a damaged file reads as no settings), but an update must not
        overwrite a file it cannot read: the share keys of other folders would be lost.
        """
        path = self.dir / SETTINGS
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            if strict:
                why = e.strerror if isinstance(e, OSError) else "not valid JSON"
                raise ConfigDirError(f"cannot read {path} ({why}): fix or remove it") from None
            return {}
        if not isinstance(data, dict):
            if strict:
                raise ConfigDirError(f"{path} is not a JSON object: fix or remove it")
            return {}
        return data

    def update(self, change: Callable[[dict], None]) -> dict:
        """Apply `change` to settings.json in place, atomically; returns the new settings.

        Under the config dir's lock the file is read again, changed, written to a unique
        temp file, fsynced and renamed over the old one (mode 0600): an update made
        meanwhile by another process is kept, and a reader never sees half a file.
        """
        with configdir.locked(self.dir):
            settings = self._read(strict=True)
            change(settings)
            data = json.dumps(settings, indent=2, sort_keys=True).encode("utf-8")
            try:
                configdir.write_atomic(self.dir / SETTINGS, data, 0o600)
            except OSError as e:
                raise ConfigDirError(f"cannot write {self.dir / SETTINGS}: "
                                     f"{e.strerror or e}") from None
        return settings

    def device_name(self) -> str:
        return self.settings.get("device_name") or socket.gethostname()

    def set_device_name(self, name: str) -> None:
        self.update(lambda s: s.__setitem__("device_name", name))

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
        """Where the folder's index and control socket are (computed: nothing is made).

        The socket is ctl/ID.sock in the config dir; when that path is too long for
        AF_UNIX (~108 bytes), it goes to this user's private runtime dir instead
        (`private.runtime_dir`), under a name derived from the long path.
        """
        folder = folder.resolve()
        folder_id = hashlib.sha256(os.fsencode(folder)).hexdigest()[:16]
        sock = self.dir / CTL_DIR / f"{folder_id}.sock"
        if len(os.fsencode(sock)) > 100:
            key = hashlib.sha256(os.fsencode(sock)).hexdigest()[:16]
            sock = private.runtime_dir() / f"{key}.sock"
        return FolderPaths(folder, folder_id, self.dir / INDEX_DIR / f"{folder_id}.db", sock)

    def share_key(self, folder: Path) -> str | None:
        return _stored_key(self.settings, self.folder_paths(folder).folder_id)

    def share_key_or_new(self, folder: Path) -> str:
        """The folder's stored share key, else a new one stored now, under the lock.

        Two processes that start on a folder without a key at once (`run` and the app)
        thus end up with the same key: the one the first of them stored.
        """
        fp = self.folder_paths(folder)
        fresh = new_share_key()

        def store(settings: dict) -> None:
            if not _stored_key(settings, fp.folder_id):
                _put_key(settings, fp, fresh)

        return _stored_key(self.update(store), fp.folder_id) or fresh

    def set_share_key(self, folder: Path, secret: str) -> None:
        fp = self.folder_paths(folder)
        self.update(lambda settings: _put_key(settings, fp, secret))


def _stored_key(settings: dict, folder_id: str) -> str | None:
    folders = settings.get("folders")
    entry = folders.get(folder_id) if isinstance(folders, dict) else None
    secret = entry.get("secret") if isinstance(entry, dict) else None
    return secret if isinstance(secret, str) and secret else None


def _put_key(settings: dict, fp: FolderPaths, secret: str) -> None:
    folders = settings.get("folders")
    if not isinstance(folders, dict):
        folders = settings["folders"] = {}
    folders[fp.folder_id] = {"path": str(fp.folder), "secret": secret}
