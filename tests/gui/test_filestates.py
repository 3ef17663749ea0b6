"""The window's StateTracker gives exactly the rows of app.core.states.file_states,
first as a snapshot, then after each change through its incremental polls."""

from __future__ import annotations

import os
import sqlite3

import pytest

from app.core.index import MIGRATIONS, Index
from app.core.model import FileEntry, Kind
from app.core.states import file_states
from app.gui import filestates
from app.gui.filestates import StateTracker

ME = "MEMEMEM-AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD"
PEER = "PEERPEE-AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD"
OTHER = "OTHEROT-AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD"
COPY = "a.sync-conflict-20260101-120000-PEERPEE.txt"


def entry(path: str, version: dict, *, content: bytes | None = None, size: int = 10,
          **kw) -> FileEntry:
    h = (content or path.encode()).ljust(32, b"\0")[:32]
    return FileEntry(path, size=size, mtime_ns=1_700_000_000_000_000_000 + size,
                     hash=h, blocks=h, version=version, modified_by=next(iter(version)), **kw)


def expected(index: Index) -> dict[str, tuple]:
    return {r["path"]: (r["path"], r["size"], r["mtime"], r["state"], r["why"] or "")
            for r in file_states(index, None)}


class Mirror:
    """What the window holds: the snapshot, then every update applied."""

    def __init__(self, tracker: StateTracker) -> None:
        self.tracker = tracker
        self.rows = {r[0]: r for r in tracker.snapshot()}

    def poll(self) -> dict[str, tuple]:
        update = self.tracker.poll()
        if update.reset is not None:
            self.rows = {r[0]: r for r in update.reset}
        for r in update.rows:
            self.rows[r[0]] = r
        for p in update.removed:
            self.rows.pop(p)
        return self.rows


@pytest.fixture
def index(tmp_path):
    with Index(tmp_path / "index.db", ME) as ix:
        ix.put_local([
            entry("synced.txt", {ME: 1}),
            entry("local.txt", {ME: 2}),
            entry("incoming.txt", {ME: 1}),
            entry("err.txt", {ME: 1}, error="permission denied"),
            entry("a.txt", {PEER: 1, ME: 1}),
            entry(COPY, {ME: 1}),
            entry("gone.txt", {ME: 2}, deleted=True),
            entry("sub", {ME: 1}, kind=Kind.DIR, size=0),
            entry("we-win.txt", {ME: 1}, content=b"ours", size=99),
        ])
        ix.put_remote(PEER, b"p" * 16, [
            entry("synced.txt", {ME: 1}, seq=1),
            entry("local.txt", {ME: 1}, seq=2),
            entry("incoming.txt", {ME: 1, PEER: 1}, seq=3),
            entry("remote-only.txt", {PEER: 1}, seq=4),
            entry("remote-deleted.txt", {PEER: 1}, deleted=True, seq=5),
            entry("a.txt", {PEER: 1, ME: 1}, seq=6),
            entry("we-win.txt", {PEER: 1}, content=b"theirs", size=1, seq=7),
        ], 7)
        ix.set_ignored(["build.tmp"])
        yield ix


@pytest.fixture(params=["one chunk", "chunks of 2"])
def chunked(request, monkeypatch):
    """Rows worked out again all at once, and two at a time (StateTracker._recompute)."""
    if request.param == "chunks of 2":
        monkeypatch.setattr(filestates, "RECOMPUTE_CHUNK", 2)


def test_snapshot_and_polls_match_file_states(index, tmp_path, chunked):
    tracker = StateTracker(index, tmp_path / "index.db", None)
    assert tracker.fast
    mirror = Mirror(tracker)
    assert mirror.rows == expected(index)
    assert {p: r[3] for p, r in mirror.rows.items()} == {
        "synced.txt": "synced", "local.txt": "local_change", "incoming.txt": "remote_change",
        "remote-only.txt": "remote_change", "err.txt": "error", "a.txt": "conflict",
        COPY: "conflict", "build.tmp": "ignored", "we-win.txt": "local_change"}
    assert not tracker.poll()  # nothing changed: nothing to say

    # the peer takes our local change; we fetch the incoming file and the remote-only one
    index.put_remote(PEER, b"p" * 16, [entry("local.txt", {ME: 2}, seq=8)], 8)
    index.put_local([entry("incoming.txt", {ME: 1, PEER: 1}),
                     entry("remote-only.txt", {PEER: 1})])
    assert mirror.poll() == expected(index)
    assert mirror.rows["local.txt"][3] == "synced"
    assert mirror.rows["remote-only.txt"][3] == "synced"  # the same version as the peer's

    # the conflict copy is resolved away; a file is deleted; a new file; a new error
    index.put_local([entry(COPY, {ME: 2}, deleted=True), entry("synced.txt", {ME: 2},
                                                                deleted=True),
                     entry("new.txt", {ME: 1}), entry("err.txt", {ME: 1})])
    index.set_ignored([])
    rows = mirror.poll()
    assert rows == expected(index)
    assert "synced.txt" not in rows and COPY not in rows and "build.tmp" not in rows
    assert rows["a.txt"][3] == "synced"

    # another device appears, then the peer's index starts over: a new snapshot
    index.put_remote(OTHER, b"o" * 16, [entry("new.txt", {ME: 1}, seq=1)], 1)
    assert mirror.poll() == expected(index)
    assert mirror.rows["new.txt"][3] == "synced"
    index.put_remote(PEER, b"q" * 16, [entry("extra.txt", {PEER: 1}, seq=1)], 1)
    update = tracker.poll()
    assert update.reset is not None
    mirror.rows = {r[0]: r for r in update.reset}
    assert mirror.rows == expected(index)
    tracker.close()


def test_unknown_schema_falls_back_to_file_states(index, tmp_path):
    db = sqlite3.connect(os.fspath(tmp_path / "index.db"))
    db.execute("UPDATE meta SET value = 99 WHERE key = 'schema_version'")
    db.commit()
    db.close()
    tracker = StateTracker(index, tmp_path / "index.db", None)
    assert not tracker.fast
    mirror = Mirror(tracker)
    assert mirror.rows == expected(index)
    index.put_local([entry("new.txt", {ME: 1}), entry("synced.txt", {ME: 2}, deleted=True)])
    assert mirror.poll() == expected(index)


def test_a_shortened_conflict_copy_marks_its_long_original(tmp_path):
    """A copy of a 250-byte name is shortened (app.core.apply.conflict_name): the tracker
    finds the original among its siblings, as file_states does."""
    from app.core.apply import conflict_name

    long_name = "d/" + "n" * 246 + ".txt"
    copy = conflict_name(long_name, 1_767_268_800 * 10**9, PEER)
    assert ".sync-conflict-" in copy and "~" in copy.rpartition("/")[2]
    with Index(tmp_path / "index.db", ME) as ix:
        ix.put_local([entry(long_name, {PEER: 1, ME: 1}), entry(copy, {ME: 1}),
                      entry("d/other.txt", {ME: 1})])
        tracker = StateTracker(ix, tmp_path / "index.db", None)
        mirror = Mirror(tracker)
        assert mirror.rows == expected(ix)
        assert mirror.rows[long_name][3] == "conflict"
        ix.put_local([entry(copy, {ME: 2}, deleted=True)])  # resolved: no longer in conflict
        assert mirror.poll() == expected(ix)
        assert mirror.rows[long_name][3] == "local_change"
        tracker.close()


def test_files_the_node_could_not_sync_show_as_errors_with_the_reason(index, tmp_path):
    """The node records what it could not sync (a full disk...) in the index; the window
    shows those files as error with the reason, and drops it once they synced."""
    tracker = StateTracker(index, tmp_path / "index.db", None)
    mirror = Mirror(tracker)
    why = "no space left here: 12.0 MB needed, 3.1 MB free"
    index.set_failures({"incoming.txt": why, "remote-only.txt": why})
    assert mirror.poll() == expected(index)
    assert mirror.rows["incoming.txt"][3:] == ("error", why)
    assert mirror.rows["remote-only.txt"][3:] == ("error", why)
    index.set_failures({})
    assert mirror.poll() == expected(index)
    assert mirror.rows["incoming.txt"][3] == "remote_change"
    tracker.close()


def test_rows_that_name_a_device_follow_whether_it_is_connected(index, tmp_path, chunked):
    """The why of an incoming file says whether its device is connected: the rows that
    say so are worked out again when that changes (and only then)."""
    index.remember_name(PEER, "desktop")
    tracker = StateTracker(index, tmp_path / "index.db", None)
    mirror = Mirror(tracker)
    assert mirror.rows["incoming.txt"][4].startswith("newer version on desktop; no p2psync")
    tracker.online = frozenset([PEER])
    before = dict(mirror.rows)
    after = mirror.poll()
    assert {p for p in after if after[p] != before[p]} == {
        "incoming.txt", "remote-only.txt", "local.txt", "we-win.txt"}  # we-win: ours is newer
    assert mirror.rows["incoming.txt"][4] == ("newer version on desktop, which is connected: "
                                              "waiting its turn to be fetched")
    assert mirror.rows["local.txt"][4] == "changed here; desktop can fetch it now (connected)"
    assert not tracker.poll()  # nothing moved: nothing is worked out again
    tracker.close()


def test_local_changes_are_relabelled_not_read_again_when_who_is_connected_changes(
        index, tmp_path, chunked):
    """Every local change's why names who can fetch it: when that changes the rows say
    so at once, without each being read from the index and judged again (a million in
    a fresh folder: seconds of the worker each time a device came or went). A local
    change that moved in the same poll is worked out again as before."""
    index.remember_name(PEER, "desktop")
    tracker = StateTracker(index, tmp_path / "index.db", None)
    mirror = Mirror(tracker)
    read: list[str] = []
    local = tracker._local

    def counted(paths):  # type: ignore[no-untyped-def]
        read.extend(paths)
        return local(paths)

    tracker._local = counted  # type: ignore[method-assign]
    tracker.online = frozenset([PEER])
    index.put_local([entry("we-win.txt", {ME: 2}, content=b"ours again", size=77)])
    after = dict(mirror.poll())
    assert "local.txt" not in read  # relabelled
    assert "we-win.txt" in read  # it moved too: read again
    assert after["local.txt"][4] == "changed here; desktop can fetch it now (connected)"
    assert after["we-win.txt"][1] == 77
    fresh = StateTracker(index, tmp_path / "index.db", None)  # every row judged anew
    fresh.online = frozenset([PEER])
    assert after == {r[0]: r for r in fresh.snapshot()}
    tracker.online = frozenset()
    assert mirror.poll()["local.txt"][4] == fresh_row(index, tmp_path, frozenset(),
                                                      "local.txt")[4]
    tracker.close()
    fresh.close()


def fresh_row(index: Index, tmp_path, online: frozenset, path: str) -> tuple:
    tracker = StateTracker(index, tmp_path / "index.db", None)
    tracker.online = online
    try:
        return {r[0]: r for r in tracker.snapshot()}[path]
    finally:
        tracker.close()


def test_the_index_of_today_is_read_directly(tmp_path):
    """A schema the tracker does not know sends every refresh through file_states():
    each new migration must be one it knows (their columns are the same since 3)."""
    with Index(tmp_path / "i.db", "ME") as ix:
        tracker = StateTracker(ix, tmp_path / "i.db", None)
        assert tracker._db is not None
        tracker.close()


def test_the_schema_an_index_is_made_with_is_read_directly():
    """A migration added without a look at these queries sends the window the slow way
    (`file_states()` through the engine's index) without a word."""
    assert len(MIGRATIONS) in filestates.KNOWN_SCHEMAS
