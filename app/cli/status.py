"""`p2psync status`: the folder's files from the local index, plus the live node if any.

The files are streamed: `write_json` prints the report's head at once and then one
row at a time, read a few thousand index rows at a time (app/core/states.py), so a
folder of a million files starts printing at once and is never held in memory. The
bytes are the ones `json.dump` of the whole report would print.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TextIO

from app.core.index import Index
from app.core.states import iter_file_states
from app.engine import control
from app.engine.config import Config
from app.errors import P2PError
from app.net import identity


def collect(folder: Path, config_dir: Path | None) -> dict:
    """The report `status --json` prints, files in a list (see `stream` for a large one)."""
    with stream(folder, config_dir) as report:
        report["files"] = list(report["files"]())
        return report


@contextlib.contextmanager
def stream(folder: Path, config_dir: Path | None) -> Iterator[dict]:
    """The report, with `files` a function that iterates the rows (again at each call).

    Read-only: creates no identity and no config dir. `device_id` is None while this
    device has no identity yet (no `id`, `run`, `sync` or app has run on the config dir).
    """
    config = Config(config_dir)
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
        index = Index(fpaths.db_path, device_id)
    try:
        # a socket not ours (a squatter's) is refused with one line, never believed
        node = control.query(fpaths.control_socket)

        def files() -> Iterable[dict]:
            return iter_file_states(index, folder) if index is not None else iter(())

        yield {"folder": str(folder), "device_id": device_id, "node": node, "files": files}
    finally:
        if index is not None:
            index.close()


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
        lines.append(f"node:   running as {node['role']}")
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
        extra = f"  ({f['reason']})" if f.get("reason") else ""
        yield f"  {f['state']:<13} {f['path']}{extra}\n"
