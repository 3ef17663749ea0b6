"""`p2psync status`: the folder's files from the local index, plus the live node if any."""

from __future__ import annotations

from pathlib import Path

from app.core.index import Index
from app.core.states import file_states
from app.engine import control
from app.engine.config import Config
from app.errors import P2PError
from app.net import identity


def collect(folder: Path, config_dir: Path | None) -> dict:
    """The report `status --json` prints. Read-only: creates no identity and no config dir.

    `device_id` is None while this device has no identity yet (no `id`, `run`, `sync`
    or app has run on the config dir).
    """
    config = Config(config_dir)
    fpaths = config.folder_paths(folder)
    # The index is looked for before the identity: a node creates its identity before
    # its index, so an index seen here always comes with the identity it belongs to.
    has_index = fpaths.db_path.exists()
    ident = identity.load(config.dir)
    device_id = ident.device_id if ident else None
    files: list[dict] = []
    if has_index:
        if device_id is None:
            raise P2PError(f"{config.dir} holds an index of {folder} but no device identity "
                           f"({identity.KEY_FILE}, {identity.CERT_FILE}); `p2psync id "
                           f"--config-dir {config.dir}` makes a new one")
        index = Index(fpaths.db_path, device_id)
        try:
            files = file_states(index, folder)
        finally:
            index.close()
    # a socket not ours (a squatter's) is refused with one line, never believed
    node = control.query(fpaths.control_socket)
    return {"folder": str(folder), "device_id": device_id, "node": node, "files": files}


def render(report: dict) -> str:
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
    for f in report["files"]:
        counts[f["state"]] = counts.get(f["state"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no files"
    lines.append(f"files:  {summary}")
    for f in report["files"]:
        extra = f"  ({f['reason']})" if f.get("reason") else ""
        lines.append(f"  {f['state']:<13} {f['path']}{extra}")
    return "\n".join(lines) + "\n"
