"""What a device long gone announced is dropped at a start (Node._forget_gone_devices):
every device ever met kept a row per file, for good. One that comes back is a new
device to us, and syncs as one."""

from __future__ import annotations

import asyncio
import time

from app.engine import node as node_module
from app.engine.config import Config
from app.engine.node import Node, NodeOptions
from app.engine.oneshot import sync_once

DAY = 24 * 3600.0


def _alpha(tmp_path) -> Node:
    return Node(NodeOptions(folder=tmp_path / "A", config=Config(tmp_path / "cfgA"),
                            secret="k", name="alpha", listen=("127.0.0.1", 0)))


def _sync(tmp_path, before_beta=None) -> None:
    async def main() -> None:
        a = _alpha(tmp_path)
        b = Node(NodeOptions(folder=tmp_path / "B", config=Config(tmp_path / "cfgB"),
                             secret="k", name="beta"))
        await a.start()
        try:
            if before_beta is not None:
                before_beta(a)
            await b.start()
            await sync_once(b, [("127.0.0.1", a.listen_address[1])], timeout=30)
        finally:
            await b.stop()
            await a.stop()

    asyncio.run(main())


def _last_seen(tmp_path, days_ago: float) -> str:
    """Beta's last connection as alpha recorded it, moved back; beta's device ID."""
    a = _alpha(tmp_path)
    try:
        (beta,) = a.index.remote_devices()
        a.index.saw_device(beta, time.time() - days_ago * DAY)
        return beta
    finally:
        a.index.close()


def test_a_device_gone_for_long_is_forgotten_and_syncs_as_new_when_back(tmp_path):
    for d in "AB":
        (tmp_path / d).mkdir()
    (tmp_path / "A" / "a.txt").write_text("from alpha")
    (tmp_path / "B" / "b.txt").write_text("from beta")
    _sync(tmp_path)
    assert (tmp_path / "A" / "b.txt").read_text() == "from beta"

    beta = _last_seen(tmp_path, node_module.FORGET_AFTER / DAY + 1)
    (tmp_path / "B" / "c.txt").write_text("made while away")
    (tmp_path / "A" / "a.txt").write_text("changed while it was away")
    seen = {}

    def forgotten(a: Node) -> None:  # alpha started: beta's rows are gone, its name is not
        seen["devices"] = a.index.remote_devices()
        seen["state"] = a.index.remote_state(beta)
        seen["name"] = a.index.device_names().get(beta)

    _sync(tmp_path, forgotten)
    assert seen == {"devices": [], "state": (b"", 0), "name": "beta"}
    for d in "AB":
        assert (tmp_path / d / "c.txt").read_text() == "made while away"
        assert (tmp_path / d / "a.txt").read_text() == "changed while it was away"
        assert (tmp_path / d / "b.txt").read_text() == "from beta"
    a = _alpha(tmp_path)
    try:
        assert a.index.remote_devices() == [beta]  # known again, with its whole index
        assert a.index.remote_state(beta)[1] > 0
    finally:
        a.index.close()


def test_a_device_seen_lately_or_never_timed_is_kept(tmp_path):
    for d in "AB":
        (tmp_path / d).mkdir()
    (tmp_path / "B" / "b.txt").write_text("from beta")
    _sync(tmp_path)
    beta = _last_seen(tmp_path, node_module.FORGET_AFTER / DAY - 1)
    kept = []
    _sync(tmp_path, lambda a: kept.append(a.index.remote_state(beta)))
    assert kept[0][1] > 0
