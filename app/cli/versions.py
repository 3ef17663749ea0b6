"""`p2psync versions` and `p2psync restore`: earlier versions, listed and put back."""

from __future__ import annotations

import argparse
import json
import sys
import time

from app.cli.status import relative_path
from app.core import restore
from app.core.index import OPEN_ERRORS, Index
from app.core.units import human_size
from app.engine.config import Config
from app.engine.folder import checked_folder
from app.errors import UsageError
from app.net import identity
from app.net.peertext import escaped, shown_name


def versions(args: argparse.Namespace) -> int:
    folder = checked_folder(args.folder)
    if args.path:  # as `status` takes it: relative, or absolute inside the folder
        args.path = relative_path(folder, args.path)
    found = restore.kept_versions(folder, args.path or None)
    names = _device_names(folder, args.config_dir)
    if args.json:
        json.dump({"folder": str(folder), "versions": [
            {"path": v.path, "at": v.stamp, "time": v.when, "size": v.size, "by": v.by or None,
             "stored": v.stored} for v in found]}, sys.stdout)
        sys.stdout.write("\n")
        return 0
    if not found:
        what = f" of {args.path}" if args.path else ""
        print(f"no earlier version{what} is kept in {folder}")
        return 0
    last = None
    for v in found:
        if v.path != last:
            print(escaped(v.path))
            last = v.path
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v.when))
        who = f"{shown_name(names[v.by])} ({v.by[:7]})" if v.by in names else v.by[:7]
        by = f"replaced by a change from {who}" if v.by else "replaced or deleted here"
        print(f"  {when}  {human_size(v.size):>9}  {by}  (--at {v.stamp})")
    return 0


def _device_names(folder, config_dir) -> dict[str, str]:
    """The names of devices this folder's node has met (from its index), if any."""
    config = Config(config_dir)
    db = config.folder_paths(folder).db_path
    me = identity.load(config.dir) if db.exists() else None
    if me is None:
        return {}
    try:
        with Index(db, me.device_id) as index:
            return {**index.device_names(), me.device_id: "this device"}
    except OPEN_ERRORS:  # names are a nicety: the versions are listed all the same
        return {}


def restore_one(args: argparse.Namespace) -> int:
    folder = checked_folder(args.folder)
    args.path = relative_path(folder, args.path)  # as `status` and `versions` take it
    try:
        chosen, replaced = restore.restore(folder, args.path, args.at)
    except (restore.RestoreError, ValueError) as e:
        raise UsageError(str(e)) from e
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(chosen.when))
    kept = f"; what was there is kept as {replaced}" if replaced else ""
    print(f"restored {args.path} as it was before {when} ({human_size(chosen.size)}){kept}. "
          "It reaches the other devices at the next sync (at once if p2psync runs for "
          "this folder).")
    return 0
