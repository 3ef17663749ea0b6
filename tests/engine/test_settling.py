"""A file the scan found still being written stops counting as such once it is as the
index says, however it came to be: the count goes to every peer in state messages, and
their `sync` does not end while it is above zero."""

from __future__ import annotations

import asyncio
import os
import time
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


def test_a_file_written_in_place_and_kept_open_is_picked_up_once_still(tmp_path: Path) -> None:
    """A database or a log that its program keeps open is never closed: its writes are
    the only news of it. It was left to the periodic full rescan (a minute and more);
    now it is picked up once it has been still for SETTLE, and while it is written its
    many writes cost a rescan now and then, not one each."""
    from app.engine.node import FULL_RESCAN_EVERY, SETTLE

    root = tmp_path / "A"
    root.mkdir()
    (root / "app.db").write_bytes(b"\0" * 8192)

    async def main() -> tuple[bytes | None, bytes | None, int, float]:
        node = await _started(root, tmp_path / "cfg")
        scans: list[set[str] | None] = []
        scan_now = node.scan_now

        async def counted(subpaths=None):  # type: ignore[no-untyped-def]
            scans.append(subpaths)
            return await scan_now(subpaths)

        node.scan_now = counted  # type: ignore[method-assign]
        try:
            while node.settling:  # (just made: picked up once still, as a user's file)
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            scans.clear()
            before = node.index.get("app.db")
            fd = os.open(root / "app.db", os.O_WRONLY)
            try:
                for i in range(100):  # 2 s of writes, one every 20 ms
                    os.pwrite(fd, b"page %03d" % i, 4096 + 8 * i)
                    await asyncio.sleep(0.02)
                written = time.monotonic()
                while time.monotonic() - written < FULL_RESCAN_EVERY / 4:
                    entry = node.index.get("app.db")
                    if entry is not None and before is not None and entry.hash != before.hash:
                        break
                    await asyncio.sleep(0.05)
                took = time.monotonic() - written
            finally:
                os.close(fd)
            after = node.index.get("app.db")
            return (before.hash if before else None, after.hash if after else None,
                    sum(1 for s in scans if s and "app.db" in s), took)
        finally:
            await node.stop()

    before, after, rescans, took = asyncio.run(main())
    assert before is not None and after != before
    assert after == hashing.hash_file(root / "app.db")[1]  # as the file is now
    assert took < SETTLE + 5  # not the full rescan's minute
    assert rescans < 10  # ~one a SETTLE while written; one a write report would be ~30


def test_a_write_reported_while_a_settling_file_is_scanned_is_not_lost(
        tmp_path: Path, monkeypatch) -> None:
    """Writes to a file being written are set aside, not scanned for one by one. The
    scan that finds it still at last may have read it just before one more write: that
    write's report came while the file still counted as being written, and without a
    second look it waited for the periodic full rescan."""
    from app.core import scanner

    root = tmp_path / "A"
    root.mkdir()
    (root / "log.txt").write_bytes(b"line 0\n")
    real_scan = scanner.scan
    node: Node | None = None
    late_write = {"done": False}
    kept_open = os.open(root / "log.txt", os.O_WRONLY | os.O_APPEND)  # never closed before

    def scan_then_write(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = real_scan(*args, **kwargs)
        if (not late_write["done"] and not result.unsettled
                and any(e.path == "log.txt" for e in result.changed)):
            late_write["done"] = True  # the scan took it as still: one more write now
            os.write(kept_open, b"line 2, written as the scan ended\n")
            assert node is not None
            deadline = time.monotonic() + 5
            while "log.txt" not in node._written_settling and time.monotonic() < deadline:
                time.sleep(0.01)  # its report reached the node meanwhile
        return result

    async def main() -> bytes | None:
        nonlocal node
        node = await _started(root, tmp_path / "cfg")
        try:
            while node.settling:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            monkeypatch.setattr(scanner, "scan", scan_then_write)
            try:
                os.write(kept_open, b"line 1\n")
                deadline = time.monotonic() + 15
                want = b"line 0\nline 1\nline 2, written as the scan ended\n"
                while time.monotonic() < deadline:
                    entry = node.index.get("log.txt")
                    if late_write["done"] and entry and entry.size == len(want):
                        break
                    await asyncio.sleep(0.05)
            finally:
                os.close(kept_open)
            entry = node.index.get("log.txt")
            return entry.hash if entry else None
        finally:
            await node.stop()

    indexed = asyncio.run(main())
    assert late_write["done"]
    assert indexed == hashing.hash_file(root / "log.txt")[1]
