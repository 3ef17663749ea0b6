"""The engine's events name what happened and who it came from (the window shows them)."""

from __future__ import annotations

import asyncio

from app.engine.config import Config
from app.engine.node import Node, NodeOptions
from app.engine.oneshot import sync_once


def test_fetched_events_name_the_peer_that_sent_the_file(tmp_path):
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    (tmp_path / "A" / "small.txt").write_text("one block")
    (tmp_path / "A" / "big.bin").write_bytes(bytes(range(256)) * 4096)  # 8 blocks
    events: list[tuple[str, dict]] = []

    async def main() -> None:
        a = Node(NodeOptions(folder=tmp_path / "A", config=Config(tmp_path / "cfgA"),
                             secret="k", name="alpha", listen=("127.0.0.1", 0)))
        b = Node(NodeOptions(folder=tmp_path / "B", config=Config(tmp_path / "cfgB"),
                             secret="k", name="beta"),
                 on_event=lambda kind, data: events.append((kind, data)))
        await a.start()
        try:
            await b.start()
            await sync_once(b, [("127.0.0.1", a.listen_address[1])], timeout=30)
        finally:
            await b.stop()
            await a.stop()

    asyncio.run(main())
    fetched = {d["path"]: d for kind, d in events if kind == "fetched"}
    assert set(fetched) == {"small.txt", "big.bin"}
    assert fetched["small.txt"]["from"] == "alpha"
    assert fetched["big.bin"]["from"] == "alpha"
    assert fetched["big.bin"]["size"] == 256 * 4096
