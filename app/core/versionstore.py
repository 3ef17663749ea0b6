"""The versions index: which kept version in `.p2psync/versions/` came from which path.

A kept version's own name cannot always say where it came from: a name or path too
long for the file system is shortened or flattened (app.core.apply.version_name).
So every archived version gets one line in `.p2psync/versions.jsonl`, which travels
with the folder like the versions themselves:

    {"path": ORIGINAL, "version": ".p2psync/versions/...", "when": SECONDS, "size": N, "by": ID}

`by` is the device whose change replaced or deleted it ("" when local or unknown).

A line is added with one O_APPEND write, so a crash can at worst leave a torn last
line, which readers skip (and the next line is started on a fresh line). Pruning
rewrites the file through a temp file and os.replace. A lock file keeps a prune in
one process from dropping a line another process appends meanwhile (appends take it
shared, a prune exclusive; where flock is missing, both exclusive: app.core.platform).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from app.core import platform
from app.core.paths import META_DIR

log = logging.getLogger(__name__)

VERSIONS_DIR = f"{META_DIR}/versions"
INDEX = f"{META_DIR}/versions.jsonl"
LOCK = f"{META_DIR}/versions.lock"


@dataclass(frozen=True)
class Kept:
    """One kept version."""

    path: str  # the original's relative path
    version: str  # the kept copy's relative path (inside VERSIONS_DIR)
    when: float  # when it was archived (seconds since the epoch)
    size: int
    by: str = ""  # device whose change replaced it; "" when local or unknown


def record(root: Path, kept: Kept) -> None:
    """Append kept's line to the index (one write); OSError when it could not be written whole."""
    data = _line(kept)
    with _locked(root, shared=True):
        fd = os.open(root / INDEX, os.O_RDWR | os.O_APPEND | os.O_CREAT | platform.CLOEXEC
                     | platform.BINARY, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and platform.pread(fd, 1, size - 1) != b"\n":  # after a torn line: a fresh one
                data = b"\n" + data
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"short write to {INDEX} ({written} of {len(data)} bytes)")
        finally:
            os.close(fd)


def entries(root: Path) -> list[Kept]:
    """Every well-formed line of the index, in the order written (none when it is missing)."""
    return _load(root)[0]


def list_kept(root: Path, path: str | None = None) -> list[Kept]:
    """The kept versions still on disk (of one original path, or all), oldest first.

    A line whose file is gone (pruned by hand, or put back after a failed resolve)
    is left out rather than shown as something one could restore.
    """
    found = [k for k in entries(root) if path is None or k.path == path]
    found = [k for k in found if _is_version_path(k.version)
             and os.path.lexists(root / k.version)]
    found.sort(key=lambda k: k.when)
    return found


def prune(root: Path, max_age_s: float, now: float | None = None) -> list[Kept]:
    """Delete the versions archived more than max_age_s ago; returns those deleted.

    Their lines leave the index, and so do lines of versions no longer on disk;
    directories emptied under the versions folder are removed. A file that cannot
    be deleted keeps its line, so the next prune tries again.
    """
    now = time.time() if now is None else now
    if not (root / INDEX).exists():
        return []
    pruned: list[Kept] = []
    with _locked(root, shared=False):
        keep: list[Kept] = []
        old, damaged = _load(root)
        for k in old:
            if not _is_version_path(k.version):
                continue  # not ours to touch: a hand-edited or damaged line
            if k.when >= now - max_age_s:
                if os.path.lexists(root / k.version):
                    keep.append(k)
                continue
            try:
                os.unlink(root / k.version)
            except FileNotFoundError:
                continue  # gone already: only its line was left
            except OSError as e:
                log.warning("cannot prune %s: %s", k.version, e)
                keep.append(k)
                continue
            pruned.append(k)
            _remove_empty_parents(root, k.version)
        if len(keep) != len(old) or damaged:
            _rewrite(root, keep)
    return pruned


# --- internals -------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(root: Path, *, shared: bool) -> Iterator[None]:
    (root / META_DIR).mkdir(exist_ok=True)
    with platform.locked(root / LOCK, shared=shared):
        yield


def _line(kept: Kept) -> bytes:
    return (json.dumps(asdict(kept), ensure_ascii=False, separators=(",", ":")) + "\n"
            ).encode("utf-8")


def _load(root: Path) -> tuple[list[Kept], bool]:
    """The index's well-formed lines, and whether any line was not (torn or damaged)."""
    try:
        data = (root / INDEX).read_bytes()
    except FileNotFoundError:
        return [], False
    found: list[Kept] = []
    damaged = False
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        kept = _parse(raw)
        if kept is None:
            damaged = True
        else:
            found.append(kept)
    return found, damaged


def _parse(raw: bytes) -> Kept | None:
    try:
        d = json.loads(raw)
        kept = Kept(path=d["path"], version=d["version"], when=float(d["when"]),
                    size=int(d["size"]), by=d.get("by") or "")
    except (ValueError, TypeError, KeyError, AttributeError):
        return None  # a torn last line, or one damaged by hand
    if not all(isinstance(v, str) for v in (kept.path, kept.version, kept.by)):
        return None
    return kept


def _rewrite(root: Path, kept: list[Kept]) -> None:
    """Replace the index with kept's lines, atomically: a reader sees the old or the new."""
    tmp = root / (INDEX + ".tmp")
    with open(tmp, "wb") as f:
        f.write(b"".join(_line(k) for k in kept))
        f.flush()
        os.fsync(f.fileno())
    platform.replace(tmp, root / INDEX)


def _is_version_path(rel: str) -> bool:
    """True for a relative path inside the versions folder (never a way out of it)."""
    if not rel.startswith(VERSIONS_DIR + "/"):
        return False
    return all(seg not in ("", ".", "..") for seg in rel.split("/")) and "\x00" not in rel


def _remove_empty_parents(root: Path, version: str) -> None:
    parent = version.rpartition("/")[0]
    while parent != VERSIONS_DIR and parent.startswith(VERSIONS_DIR + "/"):
        try:
            os.rmdir(root / parent)
        except OSError:
            return  # not empty (or not ours to remove): so are its parents
        parent = parent.rpartition("/")[0]
