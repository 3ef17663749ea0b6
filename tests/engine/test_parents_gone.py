"""A node scans a vanished parent as a whole, once its move may be known.

The watcher's events for files inside a directory can come before the directory's own
move, which watchdog holds 0.5 s to pair it. A scan of those files finds their parent
gone and leaves them to the parent's scan (`ScanResult.parents_gone`); the node asks
for that scan MOVE_PAIRED s later, so the whole directory's deletion is recorded in
one scan and reaches the peers (and their mass-deletion guard) as one change.
"""

from __future__ import annotations

import asyncio
import os
import time

from app.engine.config import Config
from app.engine.node import MOVE_PAIRED, Node, NodeOptions


def test_a_vanished_parent_is_scanned_whole_a_moment_later(tmp_path) -> None:
    root = tmp_path / "A"
    (root / "docs").mkdir(parents=True)
    for i in range(5):
        (root / "docs" / f"f{i}.txt").write_text(str(i))
    # no watcher: the only scan of "docs" is the one the node asks for itself
    node = Node(NodeOptions(folder=root, config=Config(tmp_path / "cfg"), secret="k",
                            name="a", watch=False))

    async def main() -> int:
        await node.start()
        try:
            while not node._first_scan_done():
                await asyncio.sleep(0.02)
            os.rename(root / "docs", tmp_path / "trash")
            first = await node.scan_now({"docs/f0.txt", "docs/f1.txt"})
            assert first.changed_count == 0 and first.parents_gone == ["docs"]
            assert not node.index.get("docs/f0.txt").deleted
            started = time.monotonic()
            while not node.index.get("docs").deleted:
                assert time.monotonic() - started < 10, "the parent was never scanned"
                await asyncio.sleep(0.05)
            assert time.monotonic() - started >= MOVE_PAIRED * 0.9
            return sum(node.index.get(f"docs/f{i}.txt").deleted for i in range(5))
        finally:
            await node.stop()

    assert asyncio.run(main()) == 5
