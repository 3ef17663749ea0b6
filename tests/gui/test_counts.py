"""Every count in the window agrees with every other, in every state it goes through.

Two windows (two devices on loopback, each a real engine), "laptop" and "desktop": a
conflict between them, then desktop paused while laptop adds files (a paused peer),
then a large file while desktop resumes (syncing), then the conflict resolved (idle).
Each time a window's summary changes, its header, progress bar and text, Conflicts
tab, status bar and devices view are read back as the user sees them and checked
against each other; the test also waits for each state to be shown.
"""

from __future__ import annotations

import os
import re
import time

from app.gui.models import completion_text
from tests.gui.test_app import WAIT, click, make_window, started, write  # noqa: F401


def problems(w) -> list[str]:
    """What the window shows that another part of it contradicts (empty: all agree)."""
    out = []
    c = w.counts()
    head, tab, status = w.progress_label.text(), w.tabs.tabText(1), w.files_count.text()
    listed = w.conflicts_panel.list.count()
    n = c.conflicts
    if listed != n:
        out.append(f"{listed} conflicts listed, {n} counted")
    if tab != (f"Conflicts ({n})" if n else "Conflicts"):
        out.append(f"tab {tab!r} with {n} conflicts")
    said = re.search(r"([\d,]+) conflicts? to look at", head)
    if (int(said.group(1)) if said else 0) != n:
        out.append(f"headline {head!r} with {n} conflicts")
    said = re.search(r"([\d,]+) conflicts?\b", status)
    if (int(said.group(1)) if said else 0) != n:
        out.append(f"status bar {status!r} with {n} conflicts")
    said = re.search(r"([\d,]+) to come", status)
    if (int(said.group(1).replace(",", "")) if said else 0) != c.incoming:
        out.append(f"status bar {status!r} with {c.incoming} to come")
    said = re.match(r"Receiving ([\d,]+) of ([\d,]+) files?", head)
    if said and (int(said.group(1).replace(",", "")), int(said.group(2).replace(",", ""))) \
            != (c.incoming, c.files):
        out.append(f"headline {head!r}, counts {c}")
    if not re.match(r"([\d,]+) files? ", status) or \
            int(re.match(r"([\d,]+)", status).group(1).replace(",", "")) != c.files:
        out.append(f"status bar {status!r} with {c.files} files")
    peers = w.peers_model.peers()
    connected = [p for p in peers if not p.get("self") and p.get("state") == "connected"]
    if "Up to date" in head and (c.incoming or not connected
                                 or any(p.get("need_files") for p in connected)):
        out.append(f"'Up to date' with {c.incoming} to come and peers {connected}")
    if head.startswith("Sending"):
        out.append(f"headline {head!r}")
    busy = head.startswith(("Receiving", "Reading the folder", "Sync now: rescanning"))
    if w.progress.isEnabled() != busy:  # blue or moving while working, grey otherwise
        out.append(f"bar enabled={w.progress.isEnabled()} beside {head!r}")
    own = next(p for p in peers if p.get("self")) if peers else None
    if own is not None and completion_text(own) != \
            w.peers_model.index(0, w.peers_model.COL_COMPLETION).data():
        out.append("own row")
    if own is not None and c.incoming and f"{c.incoming:,}" not in head \
            and not head.startswith(("Reading", "Sync now")):
        out.append(f"headline {head!r} without the {c.incoming} files to come")
    if "no other device yet" in w.subtitle.text() and len(peers) > 1:
        out.append(f"subtitle {w.subtitle.text()!r} beside {len(peers) - 1} other devices")
    return out


class Watch:
    """Checks a window each time its summary changes; keeps every headline shown."""

    def __init__(self, w, name: str) -> None:
        self.w, self.name = w, name
        self.headlines: list[str] = []
        self.bad: list[str] = []
        w.summary_changed.connect(self._check)

    def _check(self, _summary) -> None:
        self.headlines.append(self.w.progress_label.text())
        self.bad += [f"{self.name}: {p}" for p in problems(self.w)]

    def saw(self, pattern: str) -> bool:
        return any(re.search(pattern, h) for h in self.headlines)


def row(w, name: str) -> dict:
    return next((p for p in w.peers_model.peers() if p["name"] == name), {})


def test_counts_agree_idle_conflict_paused_peer_syncing(qtbot, tmp_path, make_window):  # noqa: F811
    a_dir, b_dir = tmp_path / "A", tmp_path / "B"
    write(a_dir / "notes.txt", "notes\n")
    write(a_dir / "plan.txt", "plan: laptop's\n", time.time() - 3600)
    write(b_dir / "plan.txt", "plan: desktop's\n")
    a = make_window(a_dir, secret="counts-key", name="laptop")
    la = Watch(a, "laptop")
    listen = started(qtbot, a)
    host, port = listen.rsplit(":", 1)
    b = make_window(b_dir, secret="counts-key", name="desktop", config=tmp_path / "cfg-b",
                    peers=[(host, int(port))])
    de = Watch(b, "desktop")
    started(qtbot, b)

    # a conflict, on both: idle otherwise
    for w in (a, b):
        qtbot.waitUntil(lambda w=w: w.progress_label.text() == "Up to date · 1 conflict to "
                        "look at", timeout=WAIT)
        assert w.tabs.tabText(1) == "Conflicts (1)"
        assert not w.progress.isEnabled() and w.progress.value() == 1000
    assert row(a, "desktop")["state"] == "connected" and row(a, "desktop")["complete"] == 1.0

    # desktop pauses; laptop adds 8 files: laptop says desktop needs them, not "Sending"
    click(qtbot, b.pause_button)
    qtbot.waitUntil(lambda: b.status.get("paused") is True, timeout=WAIT)
    for i in range(8):
        write(a_dir / "new" / f"file {i}.txt", f"file {i}\n" * 100)  # 700 bytes each
    qtbot.waitUntil(lambda: a.progress_label.text().startswith(
        "desktop still needs 8 files (5.5 KB) from here"), timeout=WAIT)
    qtbot.waitUntil(lambda: b.progress_label.text().startswith(
        "Paused · 8 files (5.5 KB) waiting"), timeout=WAIT)
    assert completion_text(row(a, "desktop")).endswith("5.5 KB to go")
    assert not la.saw("^Up to date$")

    # a large file while desktop resumes: desktop receives, both end up to date
    with open(a_dir / "video.bin", "wb") as f:
        for _ in range(40):
            f.write(os.urandom(4 << 20))
    qtbot.waitUntil(lambda: "9 files" in a.progress_label.text(), timeout=WAIT)
    click(qtbot, b.pause_button)
    for w in (a, b):
        qtbot.waitUntil(lambda w=w: w.progress_label.text().startswith("Up to date"),
                        timeout=WAIT)
    assert de.saw(r"^Receiving [\d,]+ of 12 files · ")
    # speeds drop to nothing once nothing moves (averaged over 3 s)
    qtbot.waitUntil(lambda: b.status.get("rate_in") == 0 and a.status.get("rate_out") == 0,
                    timeout=WAIT)
    qtbot.waitUntil(lambda: a.peers_model.index(1, a.peers_model.COL_TRANSFER).data() == "",
                    timeout=WAIT)

    # the conflict resolved: no conflict anywhere, on both
    b.tabs.setCurrentIndex(1)
    qtbot.waitUntil(lambda: b.conflicts_panel.keep_this.isEnabled(), timeout=WAIT)
    click(qtbot, b.conflicts_panel.keep_this)
    for w in (a, b):
        qtbot.waitUntil(lambda w=w: w.progress_label.text() == "Up to date"
                        and w.tabs.tabText(1) == "Conflicts", timeout=WAIT)
        assert "conflict" not in w.files_count.text()
    assert la.bad == [] and de.bad == [], la.bad + de.bad
