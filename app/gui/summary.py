"""Every count the window shows, worked out once. Qt-free.

The header, the progress bar and its text, the Conflicts tab, the status bar, the
tray's tooltip and this device's own row in the devices view all say how far the
share is; they must never contradict each other ("Up to date" beside a device with
12 MB to go, "0 conflicts" beside "Conflicts (1)"). So none of them counts on its own:
`summarize` takes the file counts (the files table), the engine's status and the
device rows, and returns every text and number at once; the window only paints them.

The words:

* *here*: files this device holds in the version the share agreed on; the bar is
  files and bytes here out of everything this device should hold;
* *to come*: files on their way here (a held-back mass deletion is not on its way);
* a peer *needs* the files of ours it lacks (app.gui.completion);
* *up to date*: at least one device connected, nothing to come here, and every
  connected device lacks nothing of ours.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.units import human_size

BAR_MAX = 1000
WORKING, IDLE, UNKNOWN = "working", "idle", "unknown"  # bar: blue, grey, indeterminate


@dataclass(frozen=True)
class Counts:
    """What the files table holds, by state (ignored files are not part of the share)."""

    files: int = 0  # files of the share, as they should be here
    incoming: int = 0  # of those, still to come
    local: int = 0  # changed here, on no other device yet
    conflicts: int = 0  # conflict copies: what the Conflicts tab lists
    errors: int = 0  # cannot be synced (the reason is on their row)
    ignored: int = 0
    bytes_total: int = 0
    bytes_to_go: int = 0  # of the incoming files, minus what already arrived of them


@dataclass(frozen=True)
class Summary:
    headline: str  # beside the progress bar
    bar: int  # 0..BAR_MAX: bytes here out of the total (files when the bytes are 0)
    bar_mode: str  # WORKING while this device receives, IDLE otherwise, UNKNOWN at start
    conflicts_tab: str
    status: str  # the status bar's permanent text
    connection: str  # the header's "2 of 3 devices connected"
    here: tuple[int, int, float]  # this device: files to come, bytes to go, fraction here


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


def _names(names: list[str]) -> str:
    if len(names) <= 2:
        return " and ".join(names)
    return f"{', '.join(names[:2])} and {plural(len(names) - 2, 'other')}"


def summarize(c: Counts, status: dict, peers: list[dict], *, started: bool = True,
              rescanning: bool = False, held: dict | None = None) -> Summary:
    fraction = _fraction(c)
    others = [p for p in peers if not p.get("self") and p.get("device_id")]
    connected = [p for p in others if p.get("state") == "connected"]
    lacking = [p for p in connected if p.get("need_files")]
    paused = bool(status.get("paused"))
    mode = IDLE
    if not started and status.get("trouble"):  # the index cannot open, or take the scan
        headline, mode = f"Waiting for space: {status['trouble']}", IDLE
    elif not started:
        headline, mode = "Reading the folder…", UNKNOWN
    elif rescanning:
        headline, mode = "Sync now: rescanning the folder…", UNKNOWN
    elif c.incoming and paused:
        headline = f"Paused · {_to_come(c)} waiting"
    elif c.incoming and connected:
        headline, mode = f"Receiving {c.incoming:,} of {plural(c.files, 'file')}", WORKING
        headline += f" · {human_size(c.bytes_to_go)} to go"
        if status.get("rate_in"):
            headline += f" · ↓ {human_size(status['rate_in'])}/s"
    elif lacking:
        files = sum(p["need_files"] for p in lacking)
        nbytes = sum(p.get("need_bytes", 0) for p in lacking)
        who = _names([p["name"] for p in lacking])
        headline = (f"{who} still need{'s' if len(lacking) == 1 else ''} "
                    f"{plural(files, 'file')} ({human_size(nbytes)}) from here")
        if status.get("rate_out"):
            headline += f" · ↑ {human_size(status['rate_out'])}/s"
    elif connected and not _unknown_need(connected, c):
        headline = "Up to date"
    elif connected:
        headline = f"{plural(c.local, 'local change')} on no other device yet"
    else:
        headline = "Waiting for the other devices"
        if c.incoming:
            headline += f" · {_to_come(c)} to come"
        elif c.local:
            headline += f" · {plural(c.local, 'local change')} to send"
    if held is not None:
        headline += (f" · {plural(held['deletes'], 'deletion')} held back, "
                     "waiting for your answer")
    if c.conflicts:
        headline += f" · {plural(c.conflicts, 'conflict')} to look at"
    if c.errors:
        headline += f" · {plural(c.errors, 'file')} cannot be synced"
    return Summary(
        headline=headline, bar=int(BAR_MAX * fraction), bar_mode=mode,
        conflicts_tab=f"Conflicts ({c.conflicts:,})" if c.conflicts else "Conflicts",
        status=_status_text(c), connection=_connection_text(others, connected),
        here=(c.incoming, c.bytes_to_go, fraction))


def _fraction(c: Counts) -> float:
    """Of what this device should hold, how much it holds: by bytes, else by files."""
    if c.bytes_total and c.bytes_to_go:
        return max(0.0, min(1.0, 1 - c.bytes_to_go / c.bytes_total))
    if c.files and c.incoming:
        return max(0.0, 1 - c.incoming / c.files)
    return 1.0


def _to_come(c: Counts) -> str:
    return f"{plural(c.incoming, 'file')} ({human_size(c.bytes_to_go)})"


def _unknown_need(connected: list[dict], c: Counts) -> bool:
    """No completion for a device (an index this build cannot read): local changes say."""
    return any("need_files" not in p for p in connected) and c.local > 0


def _status_text(c: Counts) -> str:
    parts = [f"{plural(c.files, 'file')} ({human_size(c.bytes_total)})"]
    if c.incoming:
        parts.append(f"{c.incoming:,} to come")
    if c.conflicts:
        parts.append(plural(c.conflicts, "conflict"))
    if c.errors:
        parts.append(plural(c.errors, "error"))
    if c.ignored:
        parts.append(f"{c.ignored:,} ignored")
    return "  ·  ".join(parts)


def _connection_text(others: list[dict], connected: list[dict]) -> str:
    if not others:
        return "no other device yet"
    if len(connected) == len(others):
        return f"{plural(len(connected), 'device')} connected"
    if not connected:
        return f"no device connected ({plural(len(others), 'known device')})"
    return f"{len(connected):,} of {plural(len(others), 'device')} connected"
