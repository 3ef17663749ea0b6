"""`p2psync status`: the folder's files from the local index, plus the live node if any.

The files are streamed: `write_json` prints the report's head at once and then one
row at a time, read a few thousand index rows at a time (app/core/states.py), so a
folder of a million files starts printing at once and is never held in memory. The
bytes are the ones `json.dump` of the whole report would print.

Every row has its `why` (app/core/why.py): with a node running, it says which
devices are connected now and how far a download is (both asked of the node over
the control socket, once per report), else what the index remembers of them.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TextIO

from app.core.configdir import ConfigDirError
from app.core.index import OPEN_ERRORS, Index, why_not_opened
from app.core.states import SYNCED, iter_file_states
from app.core.why import Devices
from app.engine import control
from app.engine.config import Config
from app.errors import P2PError, UsageError
from app.net import identity
from app.net.peertext import escaped


def collect(folder: Path, config_dir: Path | None, only: list[str] | None = None) -> dict:
    """The report `status --json` prints, files in a list (see `stream` for a large one)."""
    with stream(folder, config_dir, only) as report:
        report["files"] = list(report["files"]())
        return report


@contextlib.contextmanager
def stream(folder: Path, config_dir: Path | None, only: list[str] | None = None
           ) -> Iterator[dict]:
    """The report, with `files` a function that iterates the rows (again at each call);
    `only`: the rows of these relative paths (and of what is below them).

    Read-only: creates no identity and no config dir. `device_id` is None while this
    device has no identity yet (no `id`, `run`, `sync` or app has run on the config dir).
    """
    config = Config(config_dir)
    if config.dir.exists() and not config.dir.is_dir():  # else read as "nothing there yet"
        raise ConfigDirError(f"the config dir {config.dir} is not a directory")
    fpaths = config.folder_paths(folder)
    # The index is looked for before the identity: a node creates its identity before
    # its index, so an index seen here always comes with the identity it belongs to.
    has_index = fpaths.db_path.exists()
    ident = identity.load(config.dir)
    device_id = ident.device_id if ident else None
    index = None
    if has_index:
        if device_id is None:
            raise P2PError(f"{config.dir} holds an index of {folder} but no device identity "
                           f"({identity.KEY_FILE}, {identity.CERT_FILE}); `p2psync id "
                           f"--config-dir {config.dir}` makes a new one")
        try:
            index = Index(fpaths.db_path, device_id)
        except OPEN_ERRORS as e:
            raise P2PError(why_not_opened(fpaths.db_path, e)[0]) from e
    try:
        # a socket not ours (a squatter's) is refused with one line, never believed
        node = control.query(fpaths.control_socket)
        devices = None
        if index is not None:
            devices = Devices(names=index.device_names(), last_seen=index.last_seen())
            if node is not None:
                devices.online = frozenset(p.get("device_id") for p in node.get("peers", ()))
                devices.transfers = control.transfers(fpaths.control_socket)

        def files() -> Iterable[dict]:
            if index is None:
                return iter(())
            return iter_file_states(index, folder, devices, only)

        yield {"folder": str(folder), "device_id": device_id, "node": node, "files": files}
    finally:
        if index is not None:
            index.close()


def relative_path(folder: Path, path: str) -> str:
    """A PATH of `status --folder DIR PATH...` as the rows name it: relative to the
    folder as given, or absolute inside it (UsageError, exit 2, when it is outside)."""
    p = Path(os.path.normpath(path))
    if not p.is_absolute():
        if p.parts[:1] == ("..",):
            raise UsageError(f"{path} is not inside the folder {folder}")
        return "" if p == Path(".") else p.as_posix()
    for root in (folder, folder.resolve()):
        if p == root or root in p.parents:
            return p.relative_to(root).as_posix() if p != root else ""
    raise UsageError(f"{path} is not inside the folder {folder}")


def write_json(report: dict, out: TextIO) -> None:
    """`json.dump(report, out)` and a newline, with `files` (a function, see `stream`)
    written one row at a time as they come."""
    head = json.dumps({k: v for k, v in report.items() if k != "files"})
    out.write(head[:-1] + ', "files": [')
    out.flush()  # the head at once: a reader sees the answer begin
    rows: Callable[[], Iterable[dict]] = report["files"]
    for i, row in enumerate(rows()):
        out.write((", " if i else "") + json.dumps(row))
    out.write("]}\n")


def render(report: dict) -> str:
    """The text form (`files` a list, or a function as `stream` gives it)."""
    return "".join(render_lines(report))


def render_lines(report: dict) -> Iterator[str]:
    """The text form a line at a time (two passes over the files: the counts first)."""
    files = report["files"]
    rows: Callable[[], Iterable[dict]] = files if callable(files) else (lambda: files)
    device = report["device_id"] or "none yet (`p2psync id`, `run`, `sync` or the app makes one)"
    lines = [f"folder: {report['folder']}", f"device: {device}"]
    node = report["node"]
    if node is None:
        lines.append("node:   not running")
    else:
        lines.append("node:   running, electing a server" if node["role"] == "electing"
                     else f"node:   running as {node['role']}")
        for p in node["peers"]:
            lines.append(f"  peer {p['name']} ({p['device_id'][:7]}) {p['address']} "
                         f"{p['role']} {p['state']}")
    counts: dict[str, int] = {}
    for f in rows():
        counts[f["state"]] = counts.get(f["state"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no files"
    lines.append(f"files:  {summary}")
    yield from (line + "\n" for line in lines)
    for f in rows():
        yield f"  {f['state']:<13} {escaped(f['path'])}\n"
        if f["state"] != SYNCED and f.get("why"):
            yield f"                why: {escaped(f['why'])}\n"
