"""The `why` of each state, from the index (and what a node says of the devices), and
one path's row for the details pane, equal to what the full listing gives."""

from __future__ import annotations

import time

import pytest

from app.core import why
from app.core.index import Index
from app.core.model import FileEntry, Kind
from app.core.states import iter_file_states, state_of
from app.core.why import Devices

ME = "MEMEMEM-AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD"
PEER = "PEERPEE-AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD"
COPY = "a.sync-conflict-20260101-120000-PEERPEE.txt"
SEEN = time.mktime((2026, 11, 29, 14, 2, 0, 0, 0, -1))


def entry(path: str, version: dict, *, content: bytes | None = None, size: int = 10,
          **kw) -> FileEntry:
    h = (content or path.encode()).ljust(32, b"\0")[:32]
    return FileEntry(path, size=size, mtime_ns=int(SEEN * 1e9) - 3600 * 10**9,
                     hash=h, blocks=h, version=version, modified_by=next(iter(version)), **kw)


@pytest.fixture
def index(tmp_path):
    with Index(tmp_path / "index.db", ME) as ix:
        ix.put_local([
            entry("synced.txt", {ME: 1}),
            entry("local.txt", {ME: 2}),
            entry("incoming.txt", {ME: 1}),
            entry("unreadable.txt", {ME: 1}, error="cannot read: Permission denied"),
            entry("disk.img", {ME: 1}, error="too large to sync (files of more than 120 GB "
                                              "are not synced)"),
            entry("a.txt", {ME: 2, PEER: 1}),
            entry(COPY, {ME: 1}),
        ])
        ix.put_remote(PEER, b"p" * 16, [
            entry("synced.txt", {ME: 1}, seq=1),
            entry("local.txt", {ME: 1}, seq=2),
            entry("incoming.txt", {PEER: 3, ME: 1}, seq=3),
            entry("remote-only.txt", {PEER: 1}, seq=4),
            entry("a.txt", {ME: 2, PEER: 1}, seq=5),
        ], 5)
        ix.remember_name(PEER, "laptop")
        ix.saw_device(PEER, SEEN)
        ix.set_failures({"remote-only.txt": "cannot be written here: name too long for this "
                                            "file system"})
        ix.set_skipped({"bad\ufffd.txt": "not synced: the name is not valid UTF-8; rename it"})
        yield ix


def whys(index: Index, devices: Devices | None = None) -> dict[str, tuple[str, str | None]]:
    return {r["path"]: (r["state"], r["why"]) for r in iter_file_states(index, None, devices)}


def test_each_state_says_why_from_the_index_alone(index):
    got = whys(index, Devices(names=index.device_names(), last_seen=index.last_seen(),
                              now=SEEN + 60))
    assert got == {
        "synced.txt": ("synced", None),
        "local.txt": ("local_change", "changed here; not sent yet: " + why.NO_NODE),
        "incoming.txt": ("remote_change", "newer version on laptop (last seen 14:02); "
                                          + why.NO_NODE + " to fetch it"),
        "remote-only.txt": ("error", "cannot be written here: name too long for this file "
                                     "system"),
        "unreadable.txt": ("error", "cannot be read here (permission denied): give this user "
                                    "read access, or add it to .p2psyncignore"),
        "a.txt": ("conflict", f"in conflict: laptop's version of {why.when(1767268800, SEEN)}, "
                              f"made without seeing this one, was kept beside it as `{COPY}`; "
                              "compare them, keep what you need, delete the copy"),
        COPY: ("conflict", "conflict copy of `a.txt`: laptop's version of "
                           f"{why.when(1767268800, SEEN)}, kept beside the newer edit made "
                           "without seeing it; compare the two, keep what you need, delete "
                           "this copy"),
        "bad\ufffd.txt": ("error", "not synced: the name is not valid UTF-8; rename it"),
        "disk.img": ("error", "too large to sync (files of more than 120 GB are not synced): "
                              "move it out of the folder, or add it to .p2psyncignore"),
    }


def test_with_a_node_running_the_why_says_who_is_online_and_how_far_a_download_is(index):
    names, seen = index.device_names(), index.last_seen()
    offline = whys(index, Devices(names, seen, online=frozenset(), now=SEEN + 60))
    assert offline["incoming.txt"][1] == ("newer version on laptop, which is offline since "
                                          "14:02: waiting for it to come online")
    assert offline["local.txt"][1] == ("changed here; no device of the share is connected to "
                                       "fetch it (laptop, which is offline since 14:02)")
    online = whys(index, Devices(names, seen, online=frozenset([PEER])))
    assert online["incoming.txt"][1] == ("newer version on laptop, which is connected: "
                                         "waiting its turn to be fetched")
    assert online["local.txt"][1] == "changed here; laptop can fetch it now (connected)"
    moving = whys(index, Devices(names, seen, online=frozenset([PEER]),
                                 transfers={"incoming.txt": (5 * 2**20, 20 * 2**20)}))
    assert moving["incoming.txt"][1] == "downloading from laptop: 5.0 MB of 20.0 MB (25%)"
    stalled = whys(index, Devices(names, seen, online=frozenset(), now=SEEN + 60,
                                  transfers={"incoming.txt": (5 * 2**20, 20 * 2**20)}))
    assert stalled["incoming.txt"][1] == ("newer version on laptop, which is offline since "
                                          "14:02: 5.0 MB of 20.0 MB (25%) came in; the rest "
                                          "comes when it is back")


def test_one_path_is_the_row_the_listing_gives(index):
    devices = Devices(index.device_names(), index.last_seen(), online=frozenset([PEER]))
    for row in iter_file_states(index, None, devices):
        assert state_of(index, row["path"], None, devices) == row
    assert state_of(index, "nothing-there.txt") is None


def test_only_the_paths_asked_for(index):
    rows = iter_file_states(index, None, only=["local.txt", "a.txt"])  # looked up
    assert [r["path"] for r in rows] == ["a.txt", "local.txt"]
    rows = iter_file_states(index, None, only=["remote-only.txt", "bad\ufffd.txt", "a.txt"])
    assert [r["path"] for r in rows] == ["a.txt", "bad\ufffd.txt", "remote-only.txt"]
    index.put_local([entry("sub", {ME: 1}, kind=Kind.DIR, size=0), entry("sub/x", {ME: 1})])
    assert [r["path"] for r in iter_file_states(index, None, only=["sub/"])] == ["sub/x"]


def test_history_from_the_version_vector(index):
    devices = Devices(index.device_names(), index.last_seen(), now=SEEN, own=ME)
    e = index.get("incoming.txt")
    remotes = index.remote_for_path("incoming.txt")
    assert why.history(devices, e, remotes) == [
        "last changed by this device, 13:02",
        "laptop has another version: 10 B, changed by laptop, 13:02",
    ]
    a = index.get("a.txt")
    assert why.history(devices, a, index.remote_for_path("a.txt")) == [
        "last changed by this device, 13:02",
        "changed before by laptop",
        "laptop has this same version",
    ]
