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


def test_a_move_to_a_name_refused_here_is_the_old_name_deleted_alone(tmp_path):
    """The assessment pairs a deletion with a new name of the same content as a move; where
    the new name cannot be here, B deletes the old name (kept in its versions folder) and
    the new one is an error, while A keeps its file; a move in case only waits for the old
    name to go, then comes in."""
    async def main() -> None:
        (tmp_path / "A").mkdir()
        for name in ("ok.txt", "Readme.md"):
            (tmp_path / "A" / name).write_bytes(f"content of {name}\n".encode())
        a = _node("A", tmp_path / "A", tmp_path / "cfgA", listen=True)
        b = _node("B", tmp_path / "B", tmp_path / "cfgB", listen=False)
        await a.start()
        await b.start()
        b.name_rules = b.puller.names = WINDOWS
        moves: list = []
        run_round = b.puller.run_round

        async def counted(actions, renames=()):
            moves.extend((old.path, new.path) for old, new in renames)
            return await run_round(actions, renames)

        b.puller.run_round = counted
        peer = [("127.0.0.1", a.listen_address[1])]
        try:
            await sync_once(b, peer, 30)
            assert (tmp_path / "B" / "ok.txt").exists()
            (tmp_path / "A" / "ok.txt").rename(tmp_path / "A" / "a:b")
            (tmp_path / "A" / "Readme.md").rename(tmp_path / "A" / "README.md")
            await a.scan_now()  # B, still connected, hears of it and pulls
            for _ in range(300):
                names = sorted(p.name for p in (tmp_path / "B").iterdir())
                if names == [".p2psync", "README.md"] and "a:b" in b.index.failures():
                    break
                await asyncio.sleep(0.1)
            assert ("ok.txt", "a:b") in moves  # the plan's move, not two unrelated paths
            assert sorted(p.name for p in (tmp_path / "B").iterdir()) == [".p2psync",
                                                                         "README.md"]
            assert (tmp_path / "B" / "README.md").read_bytes() == b"content of Readme.md\n"
            kept = [p for p in (tmp_path / "B" / ".p2psync" / "versions").rglob("ok*")]
            assert [p.read_bytes() for p in kept] == [b"content of ok.txt\n"]
            assert (tmp_path / "A" / "a:b").read_bytes() == b"content of ok.txt\n"
            assert b.index.failures() == {"a:b": "':' is not allowed in names on this device"}
        finally:
            await b.stop()
            await a.stop()

    asyncio.run(main())
