"""A peer's index counts as streaming while its pages say more follows, and until we
stored it up to the seq its state tells of: a state sent between two pages of its index
(its own assessment ended meanwhile) must not let its deletions be judged on the first
page alone."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from app.core.model import FileEntry
from app.engine import node as node_mod
from app.engine.node import EARLIER_PAGE_ROWS, PAGE_ROWS, Node, PeerState, page_rows_for
from app.net.connection import ProtocolError
from tests.core.test_index import pin_reader
from tests.engine.peerstate import PEER, peer_state


def state(seq: int) -> dict:
    return {"t": "state", "seq": seq, "seen": 0, "need": 0}


def test_a_state_between_two_pages_does_not_end_the_index(node):
    peer = peer_state(index_streaming=True)
    page = [FileEntry(f"f{i}", version={PEER: 1}, modified_by=PEER, seq=i + 1)
            for i in range(3)]
    node.index.put_remote(PEER, b"id", page, 3)  # the first page, up to seq 3
    node._on_state(peer, state(5))  # it has up to 5: a page is still to come
    assert peer.index_streaming
    node._on_state(peer, state(3))  # all of it stored
    assert not peer.index_streaming


def settled(peer: PeerState) -> None:
    """As if the peer's last deletions came long ago (`Node._note_deletions`)."""
    peer.deletions_since = peer.deletions_last = 0.0


def index_page(entries: list[FileEntry], max_seq: int, **more) -> dict:
    return {"t": "index", "index_id": b"id", "entries": [e.to_wire() for e in entries],
            "max_seq": max_seq, **more}


def shared_files(node: Node) -> list[FileEntry]:
    """20 files, ours and the peer's alike (indexed on both sides)."""
    files = [FileEntry(f"f{i:02d}", size=1, hash=b"h%02d" % i, version={PEER: 1},
                       modified_by=PEER, seq=i + 1) for i in range(20)]
    node.index.put_local(files)
    node.index.put_remote(PEER, b"id", files, 20)
    return files


def connected(node: Node) -> PeerState:
    """The peer, connected to node; the state messages each assessment sends go nowhere."""
    peer = peer_state()
    peer.conn.send_nowait = lambda msg: None
    node.peers[PEER] = peer
    return peer


def test_a_short_page_that_says_more_follows_keeps_the_index_streaming(node):
    """A page cut at its limit comes short when it held entries with an error (they are
    not sent): its `more` flag, not its length, says whether the index goes on."""
    peer = peer_state()
    page = [FileEntry(f"f{i}", version={PEER: 1}, modified_by=PEER, seq=i + 1)
            for i in range(3)]
    asyncio.run(node._on_index(peer, index_page(page[:2], 3, more=True)))
    assert peer.index_streaming
    asyncio.run(node._on_index(peer, index_page(page[2:], 4, more=False)))
    assert not peer.index_streaming
    # a device of an earlier release sends no flag: a full page says more follows
    full = [FileEntry(f"g{i}", version={PEER: 2}, modified_by=PEER, seq=10 + i)
            for i in range(EARLIER_PAGE_ROWS)]
    asyncio.run(node._on_index(peer, index_page(full, 10 + EARLIER_PAGE_ROWS)))
    assert peer.index_streaming
    asyncio.run(node._on_index(peer, index_page(page[:1], 20 + EARLIER_PAGE_ROWS)))
    assert not peer.index_streaming


def test_a_more_flag_that_is_no_bool_counts_as_absent(node):
    """A peer that sends junk in `more` gets the rule of a device without the flag."""
    peer = peer_state()
    short = [FileEntry("f", version={PEER: 1}, modified_by=PEER, seq=1)]
    asyncio.run(node._on_index(peer, index_page(short, 1, more="yes")))
    assert not peer.index_streaming
    full = [FileEntry(f"g{i}", version={PEER: 1}, modified_by=PEER, seq=2 + i)
            for i in range(EARLIER_PAGE_ROWS)]
    asyncio.run(node._on_index(peer, index_page(full, 1 + EARLIER_PAGE_ROWS, more=0)))
    assert peer.index_streaming


def test_pages_stored_while_an_assessment_runs_do_not_let_their_deletions_through(
        node, monkeypatch):
    """The race `sync` lost one run in ten (tests/integration/test_mass_delete.py): the
    assessment's inputs were read before a peer's first page came (not streaming), its
    snapshot was taken after that page was stored and before the next one, and the
    guard let the first page's deletions through (10 of 20 files: MIN_DELETES) without
    the second's (15 of 20: held)."""
    from app.core.planner import DELETE
    from app.engine import node as node_mod

    files = shared_files(node)
    peer = connected(node)  # not streaming: its index was all here
    gone = [FileEntry(f.path, deleted=True, version={PEER: 2}, modified_by=PEER, seq=21 + i)
            for i, f in enumerate(files[:15])]
    real = node_mod.assess
    on: dict = {}  # the node's event loop

    def store(msg: dict) -> None:  # a page, on the node's loop, as it comes from the peer
        asyncio.run_coroutine_threadsafe(node._on_index(peer, msg), on["loop"]).result()

    def pages_come_meanwhile(index, key, inputs):  # type: ignore[no-untyped-def]
        store(index_page(gone[:10], 30, more=True))  # before the snapshot
        try:
            return real(index, key, inputs)
        finally:
            store(index_page(gone[10:], 35, more=False))  # after it

    async def main():  # type: ignore[no-untyped-def]
        on["loop"] = asyncio.get_running_loop()
        monkeypatch.setattr(node_mod, "assess", pages_come_meanwhile)
        first = await node.assess()
        monkeypatch.setattr(node_mod, "assess", real)
        settled(peer)
        return first, await node.assess()

    first, then = asyncio.run(main())
    assert [a.path for a in first.actions if a.op == DELETE] == []
    assert then.held is not None and then.held.deletes == 15
    assert [a.path for a in then.actions if a.op == DELETE] == []


def test_a_round_that_deleted_nothing_for_a_page_is_not_kept_as_the_plan(node, monkeypatch):
    """The page was in the index when the assessment's key was read, but not yet counted
    as stored: the plan without deletions must not be kept for that key, or the
    deletions would wait until something else changed (a sync timed out on one)."""
    import threading

    from app.core.planner import DELETE
    from app.engine import node as node_mod

    files = shared_files(node)
    peer = connected(node)
    gone = [FileEntry(f.path, deleted=True, version={PEER: 2}, modified_by=PEER, seq=21 + i)
            for i, f in enumerate(files[:3])]
    committed, assessing = threading.Event(), threading.Event()
    real_put, real_assess = node.index.put_remote, node_mod.assess

    def put_then_wait(*args):  # type: ignore[no-untyped-def]
        out = real_put(*args)
        committed.set()
        assessing.wait(5)  # the loop hears it is stored only once the assessment runs
        return out

    def assess_once_started(index, key, inputs):  # type: ignore[no-untyped-def]
        assessing.set()
        time.sleep(0.2)  # the page's storing ends meanwhile
        return real_assess(index, key, inputs)

    async def main():  # type: ignore[no-untyped-def]
        monkeypatch.setattr(node.index, "put_remote", put_then_wait)
        monkeypatch.setattr(node_mod, "assess", assess_once_started)
        storing = asyncio.create_task(node._on_index(peer, index_page(gone, 30, more=False)))
        await asyncio.to_thread(committed.wait, 5)
        first = await node.assess()
        await storing
        monkeypatch.setattr(node_mod, "assess", real_assess)
        settled(peer)
        return first, await node.assess()

    first, then = asyncio.run(main())
    assert [a.path for a in first.actions if a.op == DELETE] == []
    assert sorted(a.path for a in then.actions if a.op == DELETE) == ["f00", "f01", "f02"]


def test_a_peer_whose_pages_keep_coming_delays_its_own_deletions_only(node, monkeypatch):
    """A member that sends index pages all the time (a hostile one, or a folder that
    never rests) must not hold back the deletions the others announced."""
    from app.core.planner import DELETE
    from app.engine import node as node_mod

    busy = "QQQQQQQ-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"
    files = shared_files(node)
    node.index.put_remote(busy, b"id2", files, 20)
    peers = {}
    for device in (PEER, busy):
        conn = SimpleNamespace(device_id=device, info=SimpleNamespace(name=device[:1]),
                               send_nowait=lambda msg: None)
        peers[device] = node.peers[device] = PeerState(conn=conn)  # type: ignore[arg-type]
    node.index.put_remote(PEER, b"id", [FileEntry("f00", deleted=True, version={PEER: 2},
                                                  modified_by=PEER, seq=21)], 21)
    its_deletion = FileEntry("f10", deleted=True, version={PEER: 1, busy: 1}, modified_by=busy,
                             seq=21)
    real = node_mod.assess
    on: dict = {}

    def a_page_comes_meanwhile(index, key, inputs):  # type: ignore[no-untyped-def]
        asyncio.run_coroutine_threadsafe(node._on_index(peers[busy], {
            "t": "index", "index_id": b"id2", "entries": [its_deletion.to_wire()],
            "max_seq": 21, "more": False}), on["loop"]).result()
        return real(index, key, inputs)

    async def main():  # type: ignore[no-untyped-def]
        on["loop"] = asyncio.get_running_loop()
        monkeypatch.setattr(node_mod, "assess", a_page_comes_meanwhile)
        return await node.assess()

    first = asyncio.run(main())
    assert [a.path for a in first.actions if a.op == DELETE] == ["f00"]


def test_a_plan_read_behind_the_stored_index_is_not_trusted(node, caplog, monkeypatch):
    """A worker thread's reader left behind (a statement of it still running) plans
    from an index without the peer's page: that plan needs nothing, and a `sync` that
    trusted it ended "in sync" without the file (CI, twice). The node sees the plan
    held less of the peer than was stored before it began, opens every reader again
    and plans again at once: the plan it keeps needs the file."""
    node.peers[PEER] = peer_state()
    sent: list[dict] = []
    node.peers[PEER].conn.send_nowait = sent.append  # each plan's word to the peer
    node.index.put_local([FileEntry("mine.txt", version={"X": 1})])
    worker = ThreadPoolExecutor(1)  # the one thread every `to_thread` of the node uses
    plans = []
    real = node_mod.assess

    def counted(index, key, inputs):
        plans.append(real(index, key, inputs))
        return plans[-1]

    async def scenario():
        asyncio.get_running_loop().set_default_executor(worker)
        pinned = await asyncio.to_thread(pin_reader, node.index)
        node.index.put_remote(PEER, b"id", [FileEntry("theirs.txt", version={PEER: 1},
                                                      modified_by=PEER, seq=1)], 1)
        kept = await node.assess()
        del pinned
        return kept

    monkeypatch.setattr(node_mod, "assess", counted)
    kept = asyncio.run(scenario())
    worker.shutdown()
    assert len(plans) == 2 and plans[0].counts.get(PEER, 0) == 0 and plans[0].seen[PEER] == 0
    assert "behind its latest write" in caplog.text
    assert kept.key == node._assess_key() and kept.counts[PEER] == 1
    assert kept.seen[PEER] == 1 and sent[-1]["seen"] == 1 and sent[-1]["need"] == 1


def test_a_plan_read_behind_twice_is_kept_for_its_round_only(node, caplog, monkeypatch):
    """A plan still behind after the readers were renewed is used by the round that
    asked (every step is checked when carried out) but never as current, and a
    confirmed deletion it may not show keeps its approval."""
    node.peers[PEER] = peer_state()
    node.peers[PEER].conn.send_nowait = lambda msg: None
    node.index.put_remote(PEER, b"id", [FileEntry("theirs.txt", version={PEER: 1},
                                                  modified_by=PEER, seq=1)], 1)
    node._approved = {"gone.txt"}
    real = node_mod.assess
    behind = dataclasses.replace(real(node.index, node._assess_key(), node_mod.Inputs(
        frozenset(), (), node.ignore, frozenset(), frozenset(), False)),
                                 seen={PEER: 0}, ids={PEER: b""})
    monkeypatch.setattr(node_mod, "assess", lambda index, key, inputs: dataclasses.replace(
        behind, key=key))
    result = asyncio.run(node.assess())
    assert result.key == () and caplog.text.count("behind its latest write") == 2
    assert node._approved == {"gone.txt"}


def test_a_peer_that_started_its_index_over_meanwhile_is_no_stale_read(node, caplog,
                                                                       monkeypatch):
    """Its new index's seqs begin again, lower than what was stored of the old one."""
    node.peers[PEER] = peer_state()
    node.peers[PEER].conn.send_nowait = lambda msg: None
    old = [FileEntry(f"f{i}", version={PEER: 1}, modified_by=PEER, seq=i + 1) for i in range(5)]
    node.index.put_remote(PEER, b"old", old, 5)
    real = node_mod.assess

    def new_index_first(index, key, inputs):  # stored after the node read where it was
        index.put_remote(PEER, b"new", old[:1], 1)
        return real(index, key, inputs)

    monkeypatch.setattr(node_mod, "assess", new_index_first)
    result = asyncio.run(node.assess())
    assert result.seen[PEER] == 1 and result.ids[PEER] == b"new"
    assert "behind its latest write" not in caplog.text


def test_deletions_that_come_page_by_page_are_judged_once_they_stop(node):
    """A watching device records an `rm -rf` scan by scan and sends it page by page,
    none of which says more follows: 10 of 20 files (MIN_DELETES: through), then 5 more.
    The first page's deletions wait until the peer's deletions stop coming
    (DELETIONS_SETTLE), then all 15 are held together."""
    from app.engine.node import DELETIONS_SETTLE

    files = shared_files(node)
    peer = connected(node)
    gone = [FileEntry(f.path, deleted=True, version={PEER: 2}, modified_by=PEER, seq=21 + i)
            for i, f in enumerate(files[:15])]

    async def main() -> None:
        await node._on_index(peer, index_page(gone[:10], 30, more=False))
        first = await node.assess()
        assert first.held is None and not [a for a in first.actions if a.op == "delete"]
        assert not node.in_sync_with(PEER)  # nothing is over while they wait
        await node._on_index(peer, index_page(gone[10:], 35, more=False))
        assert (await node.assess()).held is None  # still coming
        peer.deletions_last -= DELETIONS_SETTLE  # quiet since: they are all here
        then = await node.assess()
        assert then.held is not None and then.held.deletes == 15
        assert not [a for a in then.actions if a.op == "delete"]

    asyncio.run(main())


def test_a_peer_that_deletes_without_pause_is_judged_after_the_longest_wait(node):
    from app.engine.node import DELETIONS_WAIT_MAX

    shared_files(node)
    peer = connected(node)

    async def main() -> None:
        gone = [FileEntry("f00", deleted=True, version={PEER: 2}, modified_by=PEER, seq=21)]
        await node._on_index(peer, index_page(gone, 21, more=False))
        assert not [a for a in (await node.assess()).actions if a.op == "delete"]
        peer.deletions_since -= DELETIONS_WAIT_MAX  # its burst never paused since
        assert [a.path for a in (await node.assess()).actions if a.op == "delete"] == ["f00"]

    asyncio.run(main())


def test_pages_of_more_rows_go_only_to_a_device_that_takes_them(node):
    """A device of an earlier release refuses a page of more than 1,000 entries (a
    protocol error): its `start` names no "rows", and it gets pages of 1,000."""
    assert page_rows_for({"t": "start"}) == EARLIER_PAGE_ROWS
    assert page_rows_for({"rows": "many"}) == page_rows_for({"rows": 0}) == EARLIER_PAGE_ROWS
    assert page_rows_for({"rows": 10**12}) == PAGE_ROWS
    assert page_rows_for({"rows": 1500}) == 1500
    page = [FileEntry(f"f{i}", version={PEER: 1}, modified_by=PEER, seq=i + 1)
            for i in range(PAGE_ROWS + 1)]
    asyncio.run(node._on_index(peer_state(), index_page(page[:PAGE_ROWS], PAGE_ROWS)))
    assert node.index.remote_state(PEER)[1] == PAGE_ROWS
    assert len(node.index.remote_entries([f"f{i}" for i in range(PAGE_ROWS)])) == PAGE_ROWS
    with pytest.raises(ProtocolError, match="malformed 'index'"):
        asyncio.run(node._on_index(peer_state(), index_page(page, PAGE_ROWS + 1)))
