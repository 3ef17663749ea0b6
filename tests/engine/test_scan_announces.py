"""Every row a scan writes reaches the peers, not only new versions.

A scan also writes rows without a new version (an error cleared, a time recorded as a
coarse disk keeps it). Each moves our max_seq, and a peer is in sync with us only once
its state says it has seen that far (`Node.in_sync_with`): unannounced, such a row held
a `sync` until its timeout with "0 change(s) to fetch here, 0 on the peer" (seen on an
NTFS folder, tests/integration/test_windows_names.py, when B's scan ended after its
index was sent).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

from app.engine.config import Config
from app.engine.node import Node, NodeOptions
from app.engine.oneshot import sync_once

SECRET = "ANNOUNCE-TEST-KEY"


def _node(name: str, root: Path, config: Path, listen: bool) -> Node:
    root.mkdir(parents=True, exist_ok=True)
    return Node(NodeOptions(folder=root, config=Config(config), secret=SECRET, name=name,
                            listen=("127.0.0.1", 0) if listen else None))


def test_a_row_a_scan_writes_without_a_new_version_reaches_the_peer(tmp_path) -> None:
    async def main() -> None:
        a = _node("A", tmp_path / "A", tmp_path / "cfgA", listen=True)
        b = _node("B", tmp_path / "B", tmp_path / "cfgB", listen=False)
        (tmp_path / "B" / "x.txt").write_bytes(b"x")
        await a.start()
        await b.start()
        try:
            await sync_once(b, [("127.0.0.1", a.listen_address[1])], 30)
            entry = b.index.get("x.txt")
            # an error the file no longer has: the scan clears it without a new version
            b.index.put_local([replace(entry, error="cannot read: Input/output error")])
            result = await b.scan_now()
            assert result.changed_count == 0 and b.index.get("x.txt").error == ""
            assert b.index.get("x.txt").version == entry.version
            deadline = time.monotonic() + 10
            while not b.in_sync_with(a.device_id):
                assert time.monotonic() < deadline, b.progress_text(a.device_id)
                await asyncio.sleep(0.1)
        finally:
            await b.stop()
            await a.stop()

    asyncio.run(main())
