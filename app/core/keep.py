"""Keep this device's copies against deletions announced elsewhere ("Keep them").

When the user keeps files whose deletion the mass-deletion guard held back, each copy
gets a new local version that has seen every announced one (the deletion included)
and adds a change of this device: it then beats the deletion everywhere, and the
other devices fetch it back, as they would any newer edit. Same idea as the puller's
non-empty directory that outlives a deletion.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from app.core import apply
from app.core.index import Index
from app.core.model import FileEntry
from app.core.versions import bump, merge


def keep_local(root: Path, index: Index, paths: Iterable[str]) -> list[FileEntry]:
    """New versions for those of `paths` still on disk as indexed; returns the entries.

    A path changed or gone on disk meanwhile is left to the next scan (its real
    state is what must win, not the one the index remembers). Call under the
    node's disk lock.
    """
    device = index.device_id
    with index.lock:
        mine = index.get_many(sorted(paths))
        out = []
        for rel, e in sorted(mine.items()):
            if e.deleted or not apply.matches_disk(root, e, rel):
                continue
            seen = e.version
            for remote in index.remote_for_path(rel).values():
                seen = merge(seen, remote.version)
            out.append(replace(e, version=bump(seen, device), modified_by=device))
        index.put_local(out)
    return out
