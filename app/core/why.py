"""The `why` of a file's sync state: one sentence a user understands and can act on.

`status` and the app say why a file is not synced: which device has the newer
version and whether it is online (or since when it is not), what a conflict is,
what an error means and what to do about it, how far a download is. The facts come
from the index (device names, when each device was last connected) and, when a node
runs, from the node itself (who is connected, what is being fetched): `Devices`
holds them; the functions here only put them into words. Qt-free, no I/O.
"""

from __future__ import annotations

import calendar
import contextlib
import time
from dataclasses import dataclass, field

from app.core.apply import CONFLICT_COPY
from app.core.ignore import IGNORE_FILE
from app.core.model import FileEntry
from app.core.planner import DELETE, Action
from app.core.units import human_size

NO_NODE = "no p2psync node is running here (`p2psync run`, `sync` or the app)"
LINK_OUTSIDE = "link leads outside the folder"  # as app.core.scanner records it
UNREADABLE = "cannot read:"  # the start of what app.core.scanner records
TOO_LARGE = "too large to sync"  # the start of what app.core.scanner records


@dataclass
class Devices:
    """What is known of the other devices of the share, for the sentences."""

    names: dict[str, str] = field(default_factory=dict)  # device ID -> name
    last_seen: dict[str, float] = field(default_factory=dict)  # device ID -> epoch seconds
    online: frozenset[str] | None = None  # connected now; None when no node runs here
    transfers: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> done, size
    now: float = field(default_factory=time.time)
    own: str = ""  # this device's ID: "this device"

    def name(self, device: str) -> str:
        if device and device == self.own:
            return "this device"
        return self.names.get(device) or device[:7]

    def state(self, device: str) -> str:
        """", which is connected", ", which is offline since 14:02", or the like."""
        seen = self.last_seen.get(device)
        if self.online is None:
            return f" (last seen {when(seen, self.now)})" if seen else ""
        if device in self.online:
            return ", which is connected"
        return f", which is offline since {when(seen, self.now)}" if seen else \
            ", which is offline"

    def best(self, devices: list[str]) -> str:
        """The device to name first: a connected one, else the one seen last."""
        online = self.online or frozenset()
        return max(devices, key=lambda d: (d in online, self.last_seen.get(d, 0.0), d))


def when(t: float, now: float | None = None) -> str:
    """"14:02" today, "Nov 27 14:02" this year, "2025-11-27 14:02" before (local time)."""
    now = time.time() if now is None else now
    local, today = time.localtime(t), time.localtime(now)
    if local[:3] == today[:3]:
        return time.strftime("%H:%M", local)
    if local.tm_year == today.tm_year:
        return time.strftime("%b %d %H:%M", local)
    return time.strftime("%Y-%m-%d %H:%M", local)


def remote_change(devices: Devices, path: str, action: Action) -> str:
    """Why a path waits for another device's version: who has it, and can we get it."""
    sources = action.sources or []
    first = devices.best(sources) if sources else ""
    if path in devices.transfers:
        done, size = devices.transfers[path]
        pct = int(done * 100 / size) if size else 100
        so_far = f"{human_size(done)} of {human_size(size)} ({pct}%)"
        if not sources or first in (devices.online or ()):
            source = f" from {devices.name(first)}" if sources else ""
            return f"downloading{source}: {so_far}"
        return (f"newer version on {devices.name(first)}{devices.state(first)}: {so_far} "
                "came in; the rest comes when it is back")
    if not sources:
        return "a newer version is announced, but no device can send it yet"
    verb = "deleted on" if action.op == DELETE and action.target.deleted else \
        "newer version on"
    others = f" and {len(sources) - 1} other device(s)" if len(sources) > 1 else ""
    if action.conflict_copy:
        head = f"changed here and on {devices.name(first)}{others} without either seeing " \
               "the other: both versions will be kept (the older as a conflict copy)"
    else:
        head = f"{verb} {devices.name(first)}{others}"
    if devices.online is None:
        return f"{head}{devices.state(first)}; {NO_NODE} to fetch it"
    if first in devices.online:
        return f"{head}, which is connected: waiting its turn to be fetched"
    return f"{head}{devices.state(first)}: waiting for it to come online"


def local_change(devices: Devices, known: list[str]) -> str:
    """Why our own change is not on the other devices yet."""
    if devices.online is None:
        return f"changed here; not sent yet: {NO_NODE}"
    online = sorted(devices.online, key=devices.name)
    if online:
        names = ", ".join(devices.name(d) for d in online[:3])
        more = f" and {len(online) - 3} more" if len(online) > 3 else ""
        return f"changed here; {names}{more} can fetch it now (connected)"
    if known:
        last = devices.best(known)
        return f"changed here; no device of the share is connected to fetch it " \
               f"({devices.name(last)}{devices.state(last)})"
    return "changed here; no other device of the share has been seen yet"


def conflict_copy(devices: Devices, copy: str, original: str) -> str:
    """A conflict copy: whose version it is, from when, beside which file."""
    return (f"conflict copy of `{original}`: {_whose(devices, copy)}, kept beside the newer "
            "edit made without seeing it; compare the two, keep what you need, delete this "
            "copy")


def conflict_original(devices: Devices, copies: list[str]) -> str:
    """A file with a conflict copy beside it: whose version the copy keeps, and when."""
    first = copies[0].rpartition("/")[2]
    more = f" (and {len(copies) - 1} more)" if len(copies) > 1 else ""
    return (f"in conflict: {_whose(devices, copies[0])}, made without seeing this one, was "
            f"kept beside it as `{first}`{more}; compare them, keep what you need, delete "
            "the copy")


def _whose(devices: Devices, copy: str) -> str:
    """"desktop's version of Nov 27 14:02", from a conflict copy's name (the device's
    first 7 characters and the time, UTC, of the version that lost the name)."""
    m = CONFLICT_COPY.match(copy.rpartition("/")[2])
    if m is None:
        return "another version"
    tag = m.group("device")
    owner = next((d for d in [devices.own, *devices.names] if d.startswith(tag)), None)
    whose = f"{devices.name(owner)}'s version" if owner else f"device {tag}'s version"
    with contextlib.suppress(ValueError, OverflowError):  # a copy named by hand
        t = calendar.timegm(time.strptime(m.group("date") + m.group("time"), "%Y%m%d%H%M%S"))
        whose += f" of {when(t, devices.now)}"
    return whose


def error(reason: str) -> str:
    """An error as recorded, with what to do about it where the record does not say."""
    if reason == LINK_OUTSIDE:
        return ("not synced: this link leads outside the folder (links are synced only "
                "when they stay inside it)")
    if reason.startswith(UNREADABLE):
        detail = reason[len(UNREADABLE):].strip().rstrip(".").lower() or "unreadable"
        return (f"cannot be read here ({detail}): give this user read access, or add it "
                f"to {IGNORE_FILE}")
    if reason.startswith(TOO_LARGE):
        return f"{reason}: move it out of the folder, or add it to {IGNORE_FILE}"
    return reason



def history(devices: Devices, entry: FileEntry | None, remotes: dict[str, FileEntry]
            ) -> list[str]:
    """A file's history as far as its version vector tells: who changed it last and
    when (its modification time), the devices that changed it before, latest first
    (each change is counted above every one seen before, see versions.bump); then
    what the other devices hold, where it differs."""
    name = devices.name
    lines: list[str] = []
    if entry is not None:
        verb = "deleted" if entry.deleted else "changed"
        lines.append(f"last {verb} by {name(entry.modified_by)}, "
                     f"{when(entry.mtime_ns / 1e9, devices.now)}" if entry.modified_by
                     else f"last {verb} {when(entry.mtime_ns / 1e9, devices.now)}")
        earlier = [d for d, _ in sorted(entry.version.items(), key=lambda kv: -kv[1])
                   if d != entry.modified_by]
        if earlier:
            lines.append("changed before by " + ", then ".join(name(d) for d in earlier[:5])
                         + (f" and {len(earlier) - 5} more" if len(earlier) > 5 else ""))
    for device, r in remotes.items():
        if entry is not None and r.version == entry.version:
            lines.append(f"{name(device)} has this same version")
        elif r.deleted:
            lines.append(f"{name(device)} deleted it ({name(r.modified_by)}, "
                         f"{when(r.mtime_ns / 1e9, devices.now)})")
        else:
            lines.append(f"{name(device)} has another version: {human_size(r.size)}, changed "
                         f"by {name(r.modified_by)}, {when(r.mtime_ns / 1e9, devices.now)}")
    return lines
