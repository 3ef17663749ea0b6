"""A peer's index counts as streaming until we stored it up to the seq its state tells
of: a state sent between two pages of its index (its own assessment ended meanwhile)
must not let its deletions be judged on the first page alone."""

from __future__ import annotations

from types import SimpleNamespace

from app.core.model import FileEntry
from app.engine.config import Config
from app.engine.node import Node, NodeOptions, PeerState

PEER = "PPPPPPP-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"


def state(seq: int) -> dict:
    return {"t": "state", "seq": seq, "seen": 0, "need": 0}


def test_a_state_between_two_pages_does_not_end_the_index(tmp_path):
    (tmp_path / "A").mkdir()
    node = Node(NodeOptions(folder=tmp_path / "A", config=Config(tmp_path / "cfg"),
                            secret="k", name="a"))
    try:
        conn = SimpleNamespace(device_id=PEER, info=SimpleNamespace(name="peer"))
        peer = PeerState(conn=conn, index_streaming=True)  # type: ignore[arg-type]
        page = [FileEntry(f"f{i}", version={PEER: 1}, modified_by=PEER, seq=i + 1)
                for i in range(3)]
        node.index.put_remote(PEER, b"id", page, 3)  # the first page, up to seq 3
        node._on_state(peer, state(5))  # it has up to 5: a page is still to come
        assert peer.index_streaming
        node._on_state(peer, state(3))  # all of it stored
        assert not peer.index_streaming
    finally:
        node.index.close()
