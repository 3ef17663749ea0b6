"""The lines a `sync` prints for files that could not be synced take a peer's words
for why as they may be shown: control characters escaped, so a member cannot forge a line of
this device's output nor send a terminal's escape codes through it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from app.engine.config import Config
from app.engine.node import Node, NodeOptions


def test_a_peers_reason_is_printed_printable(tmp_path):
    folder = tmp_path / "B"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")

    async def main() -> list[str]:
        node = Node(NodeOptions(folder=folder, config=Config(tmp_path / "cfg"),
                                secret="PROBLEMS-TEST-KEY", name="B", listen=None))
        await node.start()
        await node.scan_now()  # (a node that does not listen scans while it connects)
        try:
            node.peers["EVIL"] = SimpleNamespace(
                conn=SimpleNamespace(info=SimpleNamespace(name="evil")),
                last_state={"blocked": [["notes.txt", "no\n2026-12-04 p2psync: in sync\x1b[2J"]],
                            "nblocked": 1})
            return node.problems(["EVIL"])
        finally:
            node.peers.clear()
            await node.stop()

    lines = asyncio.run(main())
    assert lines == [r"notes.txt (on evil): no\n2026-12-04 p2psync: in sync\x1b[2J"], lines
