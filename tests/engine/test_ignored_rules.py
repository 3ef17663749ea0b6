"""A node keeps the ignore rules its last full scan matched by beside the ignored list,
and forgets them when the rules change: files it indexes from then on are by other
rules, and a survey must not trust the list for them (app/core/survey.py)."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

from app.core.ignore import IGNORE_FILE
from app.core.index import IGNORED_RULES_KEY
from app.engine.config import Config
from app.engine.node import Node, NodeOptions


def test_changed_rules_are_forgotten_until_a_full_scan_matched_by_them(tmp_path: Path) -> None:
    root = tmp_path / "A"
    root.mkdir()
    (root / IGNORE_FILE).write_text("*.log\n")
    (root / "a.log").write_text("log")

    async def main() -> list:
        node = Node(NodeOptions(folder=root, config=Config(tmp_path / "cfg"), secret="k",
                                name="a"))
        await node.start()
        try:
            await node.scan_now()  # a full scan (a one-shot node's first runs beside it)
            seen = [node.index.get_meta(IGNORED_RULES_KEY), node.index.ignored()]
            # with the disk lock held, no full scan (the first one, or the one the change
            # asks for) can match the files by the new rules before they are read
            async with node.disk_lock:
                (root / IGNORE_FILE).write_text("*.log\n*.tmp\n")
                assert await node._reload_ignore()
                seen.append(node.index.get_meta(IGNORED_RULES_KEY))
            await node.scan_now()
            seen.append(node.index.get_meta(IGNORED_RULES_KEY))
            return seen
        finally:
            await node.stop()

    first, ignored, changed, rescanned = asyncio.run(main())
    assert json.loads(first) == ["*.log"] and ignored == ["a.log"]
    assert changed is None
    assert json.loads(rescanned) == ["*.log", "*.tmp"]


def test_a_full_scans_ignored_paths_are_stored_off_the_loop(tmp_path: Path, monkeypatch) -> None:
    """A row each ignored file: 20,000 of them held the loop 0.4 s beside a busy thread."""
    root = tmp_path / "A"
    root.mkdir()
    (root / IGNORE_FILE).write_text("*.log\n")
    for i in range(3):
        (root / f"{i}.log").write_text("log")
    writers: list[str] = []

    async def main() -> list[str]:
        node = Node(NodeOptions(folder=root, config=Config(tmp_path / "cfg"), secret="k",
                                name="a"))
        real = node.index.set_ignored
        monkeypatch.setattr(node.index, "set_ignored", lambda *args: writers.append(
            threading.current_thread().name) or real(*args))
        await node.start()
        try:
            await node.scan_now()
            return node.index.ignored()
        finally:
            await node.stop()

    assert asyncio.run(main()) == ["0.log", "1.log", "2.log"]
    assert writers and threading.main_thread().name not in writers, writers
