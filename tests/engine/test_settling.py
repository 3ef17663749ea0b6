"""A file the scan found still being written stops counting as such once it is as the
index says, however it came to be: the count goes to every peer in state messages, and
their `sync` does not end while it is above zero."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from app.core import hashing
from app.core.model import FileEntry, Kind
from app.engine.config import Config
from app.engine.node import Node, NodeOptions


def test_a_file_indexed_by_a_pull_while_it_settled_is_no_longer_being_written(
        tmp_path: Path) -> None:
    """The pull's own write (a conflict copy, say) is seen by the watcher, and the scan
    finds it too fresh to take; the pull then indexes it. Its rescan found disk and index
    agreeing and looked no further, so it stayed "being written" until the next full scan
    (found by scripts/fuzz_live.py --c-sync: a `sync` waited 20 s for it, then timed out)."""
    root = tmp_path / "A"
    (root / "d").mkdir(parents=True)

    async def main() -> tuple[set[str], set[str]]:
        node = await _started(root, tmp_path / "cfg")
        try:
            data = b"the pull's own file\n"
            (root / "d/copy.txt").write_bytes(data)
            await node.scan_now({"d/copy.txt"})
            found = set(node.settling)
            entry = _recorded(node, "d/copy.txt", data, os.lstat(root / "d/copy.txt"))
            await asyncio.to_thread(node.index.put_local, [entry])
            await node.scan_now({"d/copy.txt"})  # its rescan, once due
            return found, set(node.settling)
        finally:
            await node.stop()

    found, after = asyncio.run(main())
    assert found == {"d/copy.txt"}  # (written a moment ago: too fresh to take)
    assert after == set()


async def _started(root: Path, config: Path) -> Node:
    """A watching node whose first scan is over (that one takes every file as it is)."""
    node = Node(NodeOptions(folder=root, config=Config(config), secret="k", name="a",
                            watch=True))
    await node.start()
    await node.scan_now()
    return node


def _recorded(node: Node, rel: str, data: bytes, st: os.stat_result) -> FileEntry:
    """The entry a pull puts in the index for a file it wrote at rel."""
    blocks = hashing.block_hash(data)
    return FileEntry(rel, Kind.FILE, len(data), st.st_mtime_ns, st.st_mode & 0o777,
                     hashing.file_hash_from_blocks(blocks), blocks,
                     version={node.index.device_id: 1}, modified_by=node.index.device_id,
                     inode=st.st_ino, ctime_ns=st.st_ctime_ns)
