"""A connected peer as a node's tests need it: its ID and its state, with no connection."""

from __future__ import annotations

from types import SimpleNamespace

from app.engine.node import PeerState

PEER = "PPPPPPP-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"


def peer_state(**kw) -> PeerState:
    conn = SimpleNamespace(device_id=PEER, info=SimpleNamespace(name="peer"))
    return PeerState(conn=conn, **kw)  # type: ignore[arg-type]
