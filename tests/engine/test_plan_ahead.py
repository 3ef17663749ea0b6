"""The next window's plan, made while a round runs (Node._plan_ahead): taken only when
nothing but that round changed the index; otherwise the node plans afresh.

The node here has one peer and no network: the peer's index is stored as its pages
would store it, and a "round" is the index writes a fetch of its files makes.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from app.core import hashing
from app.core.index import RemoteLimits
from app.core.model import FileEntry
from app.engine.node import Node
from app.engine.puller import RoundResult
from tests.engine.peerstate import PEER, peer_state
from tests.twonodes import sync_beta_with_alpha


@pytest.fixture
def node(node):
    """The engine's node fixture (tests/engine/conftest.py), windows of three, one peer."""
    node.index.remote_limits = RemoteLimits(planned=3)
    peer = peer_state()
    peer.conn.send_nowait = lambda msg: None
    node.peers[PEER] = peer
    return node


def announced(n: int, first_seq: int = 1) -> list[FileEntry]:
    out = []
    for i in range(n):
        data = b"file %d" % (first_seq + i)
        blocks = hashing.block_hash(data)
        out.append(FileEntry(f"f{first_seq + i:02d}", size=len(data), mtime_ns=10**18,
                             hash=hashing.file_hash_from_blocks(blocks), blocks=blocks,
                             version={PEER: 1}, modified_by=PEER, seq=first_seq + i))
    return out


def fetched(node: Node, paths: list[str]) -> None:
    """What a round that fetched these paths writes into the index."""
    remote = node.index.remote_entries(paths)
    node.index.put_local([remote[p][PEER].recorded(inode=1, ctime_ns=1) for p in paths])


def first_round(node: Node, entries: list[FileEntry]):  # type: ignore[no-untyped-def]
    node.index.put_remote(PEER, b"id", entries, entries[-1].seq)

    async def start():  # type: ignore[no-untyped-def]
        assessed = await node.assess()
        node._plan_ahead(assessed)
        await asyncio.wait([node._ahead.plan])  # type: ignore[union-attr]
        return assessed

    return start()


def paths(assessed) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(a.path for a in assessed.actions)


def test_the_plan_made_during_a_round_is_the_next_window(node):
    async def main():  # type: ignore[no-untyped-def]
        first = await first_round(node, announced(8))
        fetched(node, paths(first))
        return first, await node._planned_ahead()

    first, ahead = asyncio.run(main())
    assert paths(first) == ["f01", "f02", "f03"]
    assert ahead is not None and paths(ahead) == ["f04", "f05", "f06"]
    assert node.assessed_now() and node.plan() == ahead.actions  # the current plan
    assert node.need_count(PEER) == 3


@pytest.mark.parametrize("meanwhile", ["local change", "peer's page", "rules"])
def test_a_plan_made_ahead_is_dropped_when_more_than_the_round_changed(node, meanwhile):
    async def main():  # type: ignore[no-untyped-def]
        first = await first_round(node, announced(8))
        fetched(node, paths(first))
        if meanwhile == "local change":  # a scan found that the user edited f05 here
            node.index.put_local([FileEntry("f05", size=2, version={"ME": 1},
                                            modified_by="ME")])
        elif meanwhile == "peer's page":
            node.index.put_remote(PEER, b"id", announced(1, first_seq=9), 9)
        else:
            node.ignore.rules = node.ignore.rules.__class__(["f05"])
        ahead = await node._planned_ahead()
        return ahead, await node.assess()

    ahead, afresh = asyncio.run(main())
    assert ahead is None
    assert paths(afresh) == {"local change": ["f04", "f05", "f06"],
                             "peer's page": ["f04", "f05", "f06"],
                             "rules": ["f04", "f06"]}[meanwhile]
    # the edit is kept as a conflict copy: the plan made ahead would have overwritten it
    assert [a.path for a in afresh.actions if a.conflict_copy] == \
        (["f05"] if meanwhile == "local change" else [])


def test_a_plan_made_ahead_with_nothing_to_do_leaves_the_last_word_to_a_fresh_one(node):
    """A row the round left pending (its file changed on disk meanwhile) is in no window
    past the round's: only a plan made afresh can say that all is done."""

    async def main():  # type: ignore[no-untyped-def]
        first = await first_round(node, announced(3))
        fetched(node, paths(first)[1:])  # f01 stays to do
        ahead = await node._planned_ahead()
        return ahead, await node.assess()

    ahead, afresh = asyncio.run(main())
    assert ahead is None
    assert paths(afresh) == ["f01"]


def test_a_round_with_a_failure_drops_the_plan_made_ahead(node, monkeypatch):
    async def round_with_a_failure(actions, renames=()):  # type: ignore[no-untyped-def]
        fetched(node, [a.path for a in actions][1:])
        return RoundResult(done=len(actions) - 1, failed={actions[0].path: "changed on disk"})

    monkeypatch.setattr(node.puller, "run_round", round_with_a_failure)

    async def main():  # type: ignore[no-untyped-def]
        node.index.put_remote(PEER, b"id", announced(8), 8)
        await node._pull_once()
        assert node._ahead is None
        return await node.assess()

    assert paths(asyncio.run(main())) == ["f01", "f04", "f05"]  # f01 first again


def test_two_engines_plan_each_window_during_the_round_before(tmp_path, caplog):
    """Real engines on loopback, windows of five files: every window after the first
    few is planned while the one before it is fetched, and every file arrives. (B holds a
    file of its own: into an empty folder, small files come with the index, unplanned.)"""
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    (tmp_path / "B" / "mine").write_bytes(b"here first")
    for i in range(60):
        (tmp_path / "A" / f"f{i:02d}.txt").write_bytes(b"content %d" % i)

    with caplog.at_level(logging.DEBUG, logger="app.engine.node"):
        sync_beta_with_alpha(tmp_path, beta_limits=RemoteLimits(planned=5))
    for i in range(60):
        assert (tmp_path / "B" / f"f{i:02d}.txt").read_bytes() == b"content %d" % i
    ahead = [r for r in caplog.records if "planned during the last round" in r.getMessage()]
    assert len(ahead) >= 6, caplog.text


def test_no_plan_is_made_ahead_of_a_round_that_deletes(node):
    """What a deletion waits for (the move it may be half of, the files left in a
    directory) and what the mass-deletion guard counts depend on the round before."""
    ours = announced(2)
    node.index.put_local([e.recorded(inode=1, ctime_ns=1) for e in ours])
    gone = [FileEntry(e.path, deleted=True, version={PEER: 2}, modified_by=PEER, seq=i + 1)
            for i, e in enumerate(ours)]

    node.opts.allow_mass_delete = True  # two of two files: else the guard holds them

    async def main():  # type: ignore[no-untyped-def]
        node.index.put_remote(PEER, b"id", gone + announced(4, first_seq=3), 6)
        assessed = await node.assess()
        node._plan_ahead(assessed)
        return assessed

    assessed = asyncio.run(main())
    assert sorted(a.op for a in assessed.actions) == ["delete", "delete", "fetch", "fetch",
                                                      "fetch"]
    assert node._ahead is None


def test_no_plan_is_made_ahead_while_a_device_that_is_gone_has_rows(node):
    """Its window is planned beside the peer's, and a path in both windows would be in
    the round and in the plan made ahead of it."""
    other = "OOOOOOO-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"
    node.index.put_remote(other, b"o", [FileEntry("f09", version={other: 1},
                                                  modified_by=other, seq=1)], 1)

    async def main():  # type: ignore[no-untyped-def]
        node.index.put_remote(PEER, b"id", announced(8), 8)
        assessed = await node.assess()
        node._plan_ahead(assessed)
        return assessed

    assessed = asyncio.run(main())
    assert "f09" in paths(assessed) and node._ahead is None


def test_a_plan_ahead_that_failed_leaves_the_round_to_a_fresh_plan(node, monkeypatch):
    """The worker thread's plan raised (the index closed under it, a bug): the node
    plans afresh, and says so there if it fails again."""
    from app.engine import node as node_mod

    real = node_mod.assess

    def fails_ahead(index, key, inputs, after=None):  # type: ignore[no-untyped-def]
        if after is not None:
            raise OSError("disk I/O error")
        return real(index, key, inputs)

    monkeypatch.setattr(node_mod, "assess", fails_ahead)

    async def main():  # type: ignore[no-untyped-def]
        first = await first_round(node, announced(8))
        assert node._ahead is not None and node._ahead.plan.exception() is not None
        fetched(node, paths(first))
        return await node._planned_ahead(), await node.assess()

    ahead, afresh = asyncio.run(main())
    assert ahead is None and node._ahead is None
    assert paths(afresh) == ["f04", "f05", "f06"]
