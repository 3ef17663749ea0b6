"""A watching node's periodic full rescan comes less often where it takes long.

It holds the disk lock (pulls wait) and, at a million files, two cores for ~3 s: every
minute, that was 5% of the machine for a folder nobody touched.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from app.core import scanner
from app.engine import node as node_module
from app.engine.config import Config
from app.engine.node import Node, NodeOptions


def test_the_full_rescan_waits_in_proportion_to_its_length(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "A"
    root.mkdir()
    (root / "a.txt").write_bytes(b"a")
    real_scan = scanner.scan

    def slow_disk_scan(*args, **kwargs):
        result = real_scan(*args, **kwargs)
        if args[3] is None:  # a full scan
            time.sleep(1.5)
        return result

    async def main() -> tuple[float, float]:
        node = Node(NodeOptions(folder=root, config=Config(tmp_path / "cfg"), secret="k",
                                name="a"))
        await node.start()
        try:
            quick = node.full_rescan_every()
            monkeypatch.setattr(scanner, "scan", slow_disk_scan)
            await node.scan_now()
            return quick, node.full_rescan_every()
        finally:
            await node.stop()

    quick, slow = asyncio.run(main())
    assert quick == node_module.FULL_RESCAN_EVERY
    assert slow >= 1.5 / node_module.FULL_RESCAN_SHARE  # 75 s: 2% of the time at most
