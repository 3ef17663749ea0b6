"""`p2psync sync --dry-run`: the preview, printed as JSON or as a list people read.

Both are written as the steps come (app/engine/preview.py streams them a window at a
time), so a preview of a million changes starts printing at once and is never held in
memory; the per-peer totals follow the list.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TextIO

from app.core.units import human_size
from app.engine.preview import Preview, Step, Totals

# how a step reads in the list, and in the totals
VERBS = {
    "fetch": "fetch", "send": "send", "delete": "delete here",
    "delete_on_peer": "delete on peer", "rename": "rename here",
    "rename_on_peer": "rename on peer", "conflict": "conflict",
    "mkdir": "make folder", "error": "cannot sync",
}


def write_json(preview: Preview, out: TextIO) -> None:
    """The contract's object; `totals` (per peer: paths per action, bytes) comes extra."""
    head = {"folder": str(preview.folder),
            "peers": [{"device_id": p.device, "name": p.name} for p in preview.peers]}
    out.write(json.dumps(head)[:-1] + ', "actions": [')
    for i, step in enumerate(preview.steps()):
        out.write(("," if i else "") + "\n" + json.dumps(step.as_json()))
    totals = {device: {"actions": dict(t.counts), "bytes": t.bytes}
              for device, t in preview.totals.items()}
    held = held_back(preview)
    out.write(f"\n], \"totals\": {json.dumps(totals)}, \"held_back\": {json.dumps(held)}}}\n")


def write_text(preview: Preview, name_of: Callable[[str], str], out: TextIO) -> None:
    """One line per step, then one line of totals per peer, then what is held back."""
    out.write(f"Preview of a sync of {preview.folder} (nothing was changed):\n")
    any_step = False
    for step in preview.steps():
        any_step = True
        out.write(step_line(step, name_of) + "\n")
    if not any_step:
        out.write("  nothing to do: in sync\n")
    for device, totals in preview.totals.items():
        out.write(f"{name_of(device)}: {totals_text(totals)}\n")
    if preview.held is not None:
        h = preview.held
        out.write(f"held back by the mass-deletion guard: {h.deletes} of {h.of} files "
                  f"deleted on {name_of(h.device)} (a sync exits 6; --allow-mass-delete "
                  "applies it)\n")
    for device, h in preview.held_on_peer.items():
        out.write(f"held back by the mass-deletion guard of {name_of(device)}: {h.deletes} "
                  f"of its {h.of} files deleted here (it asks before deleting them)\n")


def held_back(preview: Preview) -> dict | None:
    """The contract's `held_back`: ours, else what a peer's guard would hold back (with
    `on`: that peer)."""
    if preview.held is not None:
        return preview.held.as_json()
    for device, h in preview.held_on_peer.items():
        return {**h.as_json(), "on": device}
    return None


def step_line(step: Step, name_of: Callable[[str], str]) -> str:
    what = step.path
    if step.source is not None:
        what = f"{step.source} -> {step.path}"
    if step.copy is not None:
        what += f" (copy: {step.copy})"
    if step.why is not None:
        what += f": {step.why}"
    size = human_size(step.bytes) if step.bytes else ""
    return f"  {VERBS[step.kind]:<15} {size:>9}  {what}  [{name_of(step.peer)}]"


def totals_text(totals: Totals) -> str:
    """"3 fetch, 1 send; 12.0 KB over the network" (in the order of VERBS)."""
    parts = [f"{totals.counts[a]} {VERBS[a]}" for a in VERBS if totals.counts[a]]
    if not parts:
        return "nothing to do"
    return ", ".join(parts) + f"; {human_size(totals.bytes)} over the network"
