"""A new device's first sync: a peer's index pages bring the contents of its small files,
and what nothing here speaks of is put in place as the page comes in (Node._take_arrivals);
everything else is stored and planned as before."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from app.core import batchwrite, hashing, scanner
from app.core.model import BLOCK_SIZE, FileEntry, Kind
from app.engine import serving
from app.engine.node import EARLIER_PAGE_ROWS
from app.net.connection import ProtocolError
from tests.engine.peerstate import PEER, peer_state

MTIME = 1_600_000_000_123_456_789


def small(path: str, data: bytes, seq: int) -> FileEntry:
    blocks = hashing.block_hash(data) if data else b""
    return FileEntry(path, size=len(data), mtime_ns=MTIME, blocks=blocks,
                     hash=hashing.file_hash_from_blocks(blocks), version={PEER: seq},
                     modified_by=PEER, seq=seq)


def page(entries: list[FileEntry], contents: dict[int, bytes], more: bool = False) -> dict:
    return {"t": "index", "index_id": b"id", "entries": [e.to_wire() for e in entries],
            "max_seq": max(e.seq for e in entries), "more": more,
            "contents": [[i, data] for i, data in contents.items()]}


def take(node, msg: dict, **peer) -> None:
    asyncio.run(node._on_index(peer_state(**{"asked_contents": True, **peer}), msg))


def pending(node) -> list[str]:
    return node.index.differing_paths()


def test_new_directories_and_small_files_are_in_place_once_their_page_is_stored(node):
    root = node.root
    big = FileEntry("big", size=BLOCK_SIZE + 1, mtime_ns=MTIME, blocks=b"\1" * 64,
                    hash=hashing.file_hash_from_blocks(b"\1" * 64), version={PEER: 4},
                    modified_by=PEER, seq=4)
    entries = [FileEntry("d", Kind.DIR, version={PEER: 1}, modified_by=PEER, seq=1),
               small("d/a", b"alpha", 2), small("empty", b"", 3), big]
    take(node, page(entries, {1: b"alpha"}))
    assert (root / "d/a").read_bytes() == b"alpha"
    assert os.stat(root / "d/a").st_mtime_ns == MTIME
    assert (root / "empty").read_bytes() == b""
    assert not (root / "big").exists()
    for e in entries[:3]:
        assert node.index.get(e.path).version == {PEER: e.seq}
    # only the file of two blocks is left to plan and fetch
    assert pending(node) == ["big"]
    # and what we announce back tells the peer it holds the rest, in three numbers each
    items, _, _ = node.index.announce_since(0, 100, PEER)
    assert sorted(i[0] for i in items if len(i) == 3) == ["d", "d/a", "empty"]
    assert {i[0]: i[1] for i in items if len(i) == 3}["d/a"] == 2


def test_a_file_made_here_meanwhile_is_never_overwritten(node):
    (node.root / "x").write_bytes(b"mine")  # not indexed yet: the user was quicker
    take(node, page([small("x", b"theirs", 1)], {0: b"theirs"}))
    assert (node.root / "x").read_bytes() == b"mine"
    assert node.index.get("x") is None
    assert pending(node) == ["x"]  # the planner, with a scan's view of it, decides


def test_paths_known_here_go_the_planned_way(node):
    node.index.put_local([FileEntry("k", deleted=True, version={"ME": 1}, modified_by="ME")])
    node.index.put_remote("OTHER-DEVICE", b"o", [small("o", b"other", 1)], 1)
    take(node, page([small("k", b"k", 1), small("o", b"o", 2)], {0: b"k", 1: b"o"}))
    assert not (node.root / "k").exists() and not (node.root / "o").exists()
    assert pending(node) == ["k", "o"]


def test_bytes_that_do_not_match_their_hash_are_not_taken(node):
    take(node, page([small("f", b"right", 1)], {0: b"wrong"}))
    assert not (node.root / "f").exists()
    assert pending(node) == ["f"]


@pytest.mark.parametrize("why", ["not asked", "paused", "ignored", "ignore file"])
def test_nothing_is_taken_where_the_plan_must_decide(node, why):
    entries = [small("a.log", b"log", 1), small(".p2psyncignore", b"*.tmp\n", 2)]
    contents = {0: b"log", 1: b"*.tmp\n"}
    if why == "paused":
        node.paused = True
    if why == "ignored":
        (node.root / ".p2psyncignore").write_text("*.log\n")
        node.ignore.reload_if_changed()
        entries, contents = entries[:1], {0: b"log"}
    if why == "ignore file":
        entries, contents = entries[1:], {0: b"*.tmp\n"}
    take(node, page(entries, contents), asked_contents=why != "not asked")
    assert node.index.get(entries[0].path) is None
    assert entries[0].path in pending(node)


@pytest.mark.parametrize("contents", [
    [[1, b"x"]],  # no entry 1
    [[0, "x"]],  # no bytes
    [[0, b"x" * (BLOCK_SIZE + 1)]],  # more than a block
    [[0]],
    {"0": b"x"},
])
def test_malformed_contents_break_the_protocol(node, contents):
    msg = {**page([small("f", b"x", 1)], {}), "contents": contents}
    with pytest.raises(ProtocolError):
        take(node, msg)


def test_a_page_brings_the_contents_of_its_small_files_as_indexed(node, monkeypatch):
    root = node.root
    (root / "sub").mkdir()
    for i in range(5):
        (root / f"sub/f{i}").write_bytes(b"%d" % i * 1000)
    (root / "big").write_bytes(os.urandom(BLOCK_SIZE + 1))
    (root / "empty").write_bytes(b"")
    asyncio.run(node.scan_now())
    with open(root / "sub/f4", "r+b") as f:  # changed behind the index's back (size, mtime kept)
        f.write(b"X")
    os.utime(root / "sub/f4", ns=(MTIME, os.stat(root / "sub/f4").st_mtime_ns))
    rescanned = []
    items, _, _ = node.index.announce_since(0, EARLIER_PAGE_ROWS)
    kept, contents, cut = serving.with_contents(root, node.index, rescanned.append, items)
    assert kept == items and not cut
    sent = {items[i][0]: data for i, data in contents}
    assert sent == {f"sub/f{i}": b"%d" % i * 1000 for i in range(4)}  # not big, empty, f4
    assert rescanned == ["sub/f4"]
    # a page whose contents fill INLINE_PAGE_BYTES ends there (and says more follows)
    monkeypatch.setattr(serving, "INLINE_PAGE_BYTES", 2500)
    items, last, more, contents = node._page(0, None, rescanned.append)
    assert len(contents) == 2 and more
    assert [i[0] for i in items][-1] == "sub/f1"
    assert last == items[-1][11]
    assert node._page(0, None, None)[1] > last  # not asked: the whole page, no contents


@pytest.mark.parametrize("b_empty", [True, False])
def test_a_new_device_asks_for_no_small_file(tmp_path, monkeypatch, b_empty):
    """Two engines over loopback: into an empty folder the small files come with the
    index (only the file of several blocks is asked for); into one that holds a file
    already, every file is asked for as before (and alpha asks for that one)."""
    from app.net.connection import PeerConnection
    from tests.twonodes import sync_beta_with_alpha

    files = {"d/one": b"1" * 100, "two": os.urandom(5000), "empty": b"",
             "big": os.urandom(3 * BLOCK_SIZE + 5)}
    # more than INLINE_PAGE_BYTES of them: pages cut short, the next ones read fewer rows
    files.update({f"many/{i:02d}": os.urandom(BLOCK_SIZE - i) for i in range(40)})
    for rel, data in files.items():
        (tmp_path / "A" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "A" / rel).write_bytes(data)
    (tmp_path / "B").mkdir()
    if not b_empty:
        (tmp_path / "B" / "mine").write_bytes(b"here first")
    asked = []
    request = PeerConnection.request_block

    def noted(self, path, offset, size, h):
        asked.append(path)
        return request(self, path, offset, size, h)

    monkeypatch.setattr(PeerConnection, "request_block", noted)
    sync_beta_with_alpha(tmp_path)
    for rel, data in files.items():
        assert (tmp_path / "B" / rel).read_bytes() == data
    assert set(asked) == ({"big"} if b_empty else set(files) - {"empty"} | {"mine"})


@pytest.mark.parametrize("with_dir_entry", [True, False])
def test_a_symlinked_directory_made_meanwhile_is_never_written_through(node, tmp_path,
                                                                       with_dir_entry):
    """The user (or anything) put a symlink to outside the folder where the page's
    directory goes, after the node found the folder empty: nothing lands outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (node.root / "d").symlink_to(outside)
    entries = [FileEntry("d", Kind.DIR, version={PEER: 1}, modified_by=PEER, seq=1)] \
        if with_dir_entry else []
    entries += [small("d/x", b"through", 2), small("y", b"fine", 3)]
    take(node, page(entries, {len(entries) - 2: b"through", len(entries) - 1: b"fine"}))
    assert list(outside.iterdir()) == []
    assert (node.root / "d").is_symlink()  # left as it was, for the plan to decide on
    assert node.index.get("d/x") is None
    assert "d/x" in pending(node)
    assert (node.root / "y").read_bytes() == b"fine"  # the rest of the page is taken


def test_a_page_cut_short_while_its_files_are_written_gives_every_descriptor_back(
        node, monkeypatch):
    """A connection that ends (or a node that stops) while a page's files are being
    written and flushed: the staging finishes, and its temp files (a descriptor each,
    unnamed: they hold disk space until closed) are closed, none put in place."""
    entered, release = threading.Event(), threading.Event()
    flush = batchwrite.diskio.flush_fs

    def slow_flush(fds):
        entered.set()
        release.wait(10)
        flush(fds)

    monkeypatch.setattr(batchwrite.diskio, "flush_fs", slow_flush)
    entries = [small(f"f{i}", b"x%d" % i, i + 1) for i in range(50)]

    def temps() -> list[str]:
        where = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                 if os.path.islink(f"/proc/self/fd/{fd}")]
        return [w for w in where if w.startswith(str(node.root))]

    async def main() -> None:
        task = asyncio.create_task(node._on_index(
            peer_state(asked_contents=True), page(entries, {i: b"x%d" % i for i in range(50)})))
        assert await asyncio.to_thread(entered.wait, 10)
        assert len([t for t in temps() if t.endswith(" (deleted)")]) == 50  # being flushed
        task.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert temps() == []
    assert not any((node.root / f"f{i}").exists() for i in range(50))


def test_a_pages_directories_are_indexed_before_its_files_are_written(node, monkeypatch):
    """Staging a page's files makes their directories, and a scan that met one there
    before it was indexed (a watching node's watcher saw it made) took it for a
    directory made here: its version went back to the peer as a change nobody made (11
    of 100 directories of a first sync into a watching node). The page's directories
    are indexed first, so a scan while its files are written finds nothing of ours; a
    file whose directory is neither indexed here nor in the page (a page can bring a
    directory's files before it) goes the planned way."""
    scans = []
    flush = batchwrite.diskio.flush_fs

    def scan_meanwhile(fds):
        scans.append(scanner.scan(node.root, node.index, node.ignore))
        flush(fds)

    monkeypatch.setattr(batchwrite.diskio, "flush_fs", scan_meanwhile)
    entries = [FileEntry("d", Kind.DIR, version={PEER: 1}, modified_by=PEER, seq=1),
               small("d/a", b"alpha", 2), small("d/e/b", b"beta", 3)]
    take(node, page(entries, {1: b"alpha", 2: b"beta"}))
    assert len(scans) == 1 and scans[0].changed == []
    d = node.index.get("d")
    assert (d.kind, d.version, d.modified_by) == (Kind.DIR, {PEER: 1}, PEER)
    assert (node.root / "d/a").read_bytes() == b"alpha"
    assert not (node.root / "d/e").exists() and pending(node) == ["d/e/b"]
