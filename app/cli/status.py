"""`p2psync status`: the folder's files from the local index, plus the live node if any."""

from __future__ import annotations

from pathlib import Path

from app.core.index import Index
from app.core.states import file_states
from app.engine import control
from app.engine.config import Config
from app.net import identity


def collect(folder: Path, config_dir: Path | None) -> dict:
    config = Config(config_dir)
    device_id = identity.load_or_create(config.dir).device_id
    fpaths = config.folder_paths(folder)
    files: list[dict] = []
    if fpaths.db_path.exists():
        index = Index(fpaths.db_path, device_id)
        try:
            files = file_states(index, folder)
        finally:
            index.close()
    node = control.query(fpaths.control_socket) if fpaths.control_socket.exists() else None
    return {"folder": str(folder), "device_id": device_id, "node": node, "files": files}


def render(report: dict) -> str:
    lines = [f"folder: {report['folder']}", f"device: {report['device_id']}"]
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
