"""Held deletions the user answered are asked about again when they come back.

The node tells the app of held deletions once per change (`_report_held`, by the held
deletions' key: reason, devices, how many paths). After "Keep them" a device can
delete the very same files again: same device, as many paths, the same key. The
answer must count as a change, or the app is never asked the second time (seen on CI:
tests/gui/test_mass_delete.py waited in vain for the dialog after a Keep).
"""

from __future__ import annotations

import asyncio

from app.core import scanner
from app.core.model import FileEntry
from app.core.versions import merge
from tests.engine.peerstate import PEER, peer_state

FILES = [f"f{i:02d}" for i in range(20)]


def _deleted_by_peer(node, counter: int) -> list[FileEntry]:
    """The peer's deletion of 15 of the files, after every version we hold of them."""
    return [FileEntry(rel, deleted=True, modified_by=PEER,
                      version=merge(node.index.get(rel).version, {PEER: counter}))
            for rel in FILES[:15]]


def _held_events(node) -> list[str]:
    events: list[str] = []
    node.emit = lambda kind, data=None: events.append(kind) if "mass_delete" in kind else None
    return events


async def _assess_and_report(node) -> None:
    await node.assess()
    node._report_held()


def _setup(node) -> None:
    for rel in FILES:
        (node.root / rel).write_text(rel)
    scanner.scan(node.root, node.index, node.ignore)
    node.index.put_remote(PEER, b"id", [node.index.get(rel) for rel in FILES], len(FILES))
    peer = peer_state()
    peer.conn.send_nowait = lambda msg: None  # the state messages each assessment sends
    node.peers[PEER] = peer


def test_the_same_deletions_after_keep_are_asked_about_again(node):
    _setup(node)
    events = _held_events(node)
    peer = node.peers[PEER]

    async def main() -> None:
        node.index.put_remote(PEER, b"id", _deleted_by_peer(node, 10), 40)
        await _assess_and_report(node)
        assert events == ["mass_delete_held"]
        assert await node.keep_held() == 15
        assert events[-1] == "mass_delete_cleared"  # answered: the app asks no more
        # the peer's index streams back in (it fetches our copies): a plan then holds
        # nothing, but what a streaming peer said stands until its index is all here
        peer.index_streaming = True
        await _assess_and_report(node)
        peer.index_streaming = False
        # ... and the peer deletes them again: same device, as many files
        node.index.put_remote(PEER, b"id", _deleted_by_peer(node, 20), 60)
        await _assess_and_report(node)
        assert node.held_back() is not None and node.held_back().deletes == 15
        assert events == ["mass_delete_held", "mass_delete_cleared", "mass_delete_held"]

    asyncio.run(main())
    assert all((node.root / rel).exists() for rel in FILES)


def test_delete_them_is_an_answer_too(node):
    """Confirmed, the hold is over for the app at once; the deletions run next round."""
    _setup(node)
    events = _held_events(node)

    async def main() -> None:
        node.index.put_remote(PEER, b"id", _deleted_by_peer(node, 10), 40)
        await _assess_and_report(node)
        await node.delete_held()
        assert events == ["mass_delete_held", "mass_delete_cleared"]
        await _assess_and_report(node)  # they are the plan's deletions now, not held
        assert node.held_back() is None and events[-1] == "mass_delete_cleared"
        assert sorted(a.path for a in node.plan() if a.op == "delete") == FILES[:15]

    asyncio.run(main())
