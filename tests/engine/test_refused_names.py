"""A name this device refuses is an error at once, never fetched, never retried by itself.

Two real engines in one process over TLS on loopback; B has Windows' name rules (as
its probe finds them on an NTFS disk, see tests/integration/test_windows_names.py).
B's pull rounds and block requests are counted: the refused path is asked of nobody,
no round runs while nothing changes (no retry every 2 s), and a change of its entry
plans it again, still refused, while its good neighbour syncs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.core import namerules
from app.core.namerules import WINDOWS
from app.engine.config import Config
from app.engine.node import Node, NodeOptions
from app.engine.oneshot import sync_once
from app.errors import IncompleteError
from app.net.connection import PeerConnection

SECRET = "NAMES-TEST-KEY"


def _node(name: str, root: Path, config: Path, listen: bool) -> Node:
    root.mkdir(parents=True, exist_ok=True)
    return Node(NodeOptions(folder=root, config=Config(config), secret=SECRET, name=name,
                            listen=("127.0.0.1", 0) if listen else None))


def test_a_refused_name_is_never_fetched_nor_retried(tmp_path, monkeypatch):
    asked: list[str] = []
    request = PeerConnection.request_block

    def counting(self, path, *args):
        asked.append(path)
        return request(self, path, *args)

    monkeypatch.setattr(PeerConnection, "request_block", counting)

    async def main() -> None:
        (tmp_path / "A").mkdir()
        (tmp_path / "A" / "a:b").write_bytes(b"colon\n")
        (tmp_path / "A" / "good.txt").write_bytes(b"good\n")
        a = _node("A", tmp_path / "A", tmp_path / "cfgA", listen=True)
        b = _node("B", tmp_path / "B", tmp_path / "cfgB", listen=False)
        await a.start()
        await b.start()
        b.name_rules = b.puller.names = WINDOWS
        rounds: list = []
        run_round = b.puller.run_round

        async def counted(actions, renames=()):
            result = await run_round(actions, renames)
            rounds.append(result)
            return result

        b.puller.run_round = counted
        try:
            with pytest.raises(IncompleteError, match="a:b: ':' is not allowed"):
                await sync_once(b, [("127.0.0.1", a.listen_address[1])], 30)
            assert (tmp_path / "B" / "good.txt").read_bytes() == b"good\n"
            assert "a:b" not in asked and "good.txt" in asked
            assert rounds[-1].blocked == {"a:b": "':' is not allowed in names on this device"}
            assert not rounds[-1].failed
            assert b.index.failures() == rounds[-1].blocked  # what `status` shows
            # each told the other its rules in its hello
            told = a.peers[b.device_id].conn.info.extra.get("names")
            assert namerules.from_wire(told) == WINDOWS
            assert namerules.from_wire(b.peers[a.device_id].conn.info.extra.get("names")) \
                == a.name_rules == namerules.LINUX

            seen = len(rounds)
            await asyncio.sleep(5)  # a retry every 2 s would run two rounds here
            assert len(rounds) == seen

            (tmp_path / "A" / "a:b").write_bytes(b"colon, edited\n")
            await a.scan_now()
            for _ in range(100):
                if len(rounds) > seen:
                    break
                await asyncio.sleep(0.1)
            assert len(rounds) > seen, "a changed entry was not planned again"
            assert "a:b" in rounds[-1].blocked and "a:b" not in asked
            assert (tmp_path / "A" / "a:b").read_bytes() == b"colon, edited\n"
        finally:
            await b.stop()
            await a.stop()

    asyncio.run(main())
