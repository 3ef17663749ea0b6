"""A peer's index counts as streaming while its pages say more follows, and until we
stored it up to the seq its state tells of: a state sent between two pages of its index
(its own assessment ended meanwhile) must not let its deletions be judged on the first
page alone."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from app.core.model import FileEntry
from app.engine.config import Config
from app.engine.node import INDEX_BATCH, Node, NodeOptions, PeerState

PEER = "PPPPPPP-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"


@pytest.fixture
def node(tmp_path):
    (tmp_path / "A").mkdir()
    node = Node(NodeOptions(folder=tmp_path / "A", config=Config(tmp_path / "cfg"),
                            secret="k", name="a"))
    try:
        yield node
    finally:
        node.index.close()


def peer_state(**kw) -> PeerState:
    conn = SimpleNamespace(device_id=PEER, info=SimpleNamespace(name="peer"))
    return PeerState(conn=conn, **kw)  # type: ignore[arg-type]


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


def index_page(entries: list[FileEntry], max_seq: int, **more) -> dict:
    return {"t": "index", "index_id": b"id", "entries": [e.to_wire() for e in entries],
            "max_seq": max_seq, **more}


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
            for i in range(INDEX_BATCH)]
    asyncio.run(node._on_index(peer, index_page(full, 10 + INDEX_BATCH)))
    assert peer.index_streaming
    asyncio.run(node._on_index(peer, index_page(page[:1], 20 + INDEX_BATCH)))
    assert not peer.index_streaming


def test_a_more_flag_that_is_no_bool_counts_as_absent(node):
    """A peer that sends junk in `more` gets the rule of a device without the flag."""
    peer = peer_state()
    short = [FileEntry("f", version={PEER: 1}, modified_by=PEER, seq=1)]
    asyncio.run(node._on_index(peer, index_page(short, 1, more="yes")))
    assert not peer.index_streaming
    full = [FileEntry(f"g{i}", version={PEER: 1}, modified_by=PEER, seq=2 + i)
            for i in range(INDEX_BATCH)]
    asyncio.run(node._on_index(peer, index_page(full, 1 + INDEX_BATCH, more=0)))
    assert peer.index_streaming
