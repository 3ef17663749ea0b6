"""Old kept versions are pruned by the node: after a full rescan, at most once an hour,
after the number of days the device's settings say (30 by default)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import types

import pytest

from app.core import versionstore
from app.core.versionstore import Kept
from app.engine import node as node_mod
from app.engine.config import VERSIONS_DAYS, Config
from app.engine.node import Node, NodeOptions

DAY = 86400.0


def settings(cfg_dir, **values) -> Config:
    cfg_dir.mkdir(exist_ok=True)
    (cfg_dir / "settings.json").write_text(json.dumps(values))
    return Config(cfg_dir)


@pytest.mark.parametrize(("value", "days"), [
    (None, VERSIONS_DAYS), (7, 7), (0.5, 0.5),
    ("7", VERSIONS_DAYS), (0, VERSIONS_DAYS), (-3, VERSIONS_DAYS), (True, VERSIONS_DAYS),
    ([1], VERSIONS_DAYS),
])
def test_versions_days_setting(tmp_path, value, days):
    cfg = settings(tmp_path / "cfg", **({} if value is None else {"versions_days": value}))
    assert cfg.versions_days() == days
    assert VERSIONS_DAYS == 30


def kept(root, name: str, age_days: float) -> Kept:
    version = f".p2psync/versions/{name}~old"
    (root / version).parent.mkdir(parents=True, exist_ok=True)
    (root / version).write_text(name)
    k = Kept(name, version, time.time() - age_days * DAY, len(name))
    versionstore.record(root, k)
    return k


def test_a_full_rescan_prunes_at_most_once_an_hour(tmp_path, monkeypatch):
    clock = types.SimpleNamespace(now=1000.0)
    monkeypatch.setattr(node_mod, "time", types.SimpleNamespace(monotonic=lambda: clock.now))
    root = tmp_path / "A"
    root.mkdir()
    (root / "file.txt").write_text("a file")
    old = kept(root, "old.txt", 11)
    young = kept(root, "young.txt", 9)
    node = Node(NodeOptions(folder=root, config=settings(tmp_path / "cfg", versions_days=10),
                            secret="k", name="a"))
    try:
        asyncio.run(node.scan_now())  # the first full scan prunes
        assert versionstore.entries(root) == [young]
        assert not (root / old.version).exists()

        later = kept(root, "later.txt", 11)
        clock.now += node_mod.PRUNE_VERSIONS_EVERY - 1
        asyncio.run(node.scan_now())  # within the hour: no prune
        asyncio.run(node.scan_now({"file.txt"}))  # nor after a partial scan
        assert versionstore.entries(root) == [young, later]

        clock.now += 1
        asyncio.run(node.scan_now({"file.txt"}))
        assert versionstore.entries(root) == [young, later]
        asyncio.run(node.scan_now())  # an hour on, the next full rescan
        assert versionstore.entries(root) == [young]
    finally:
        node.puller.close()
        node.index.close()


def test_a_prune_that_fails_is_logged_and_the_scan_goes_on(tmp_path, caplog):
    root = tmp_path / "A"
    root.mkdir()
    old = kept(root, "old.txt", 40)
    (root / (versionstore.INDEX + ".tmp")).mkdir()  # the index cannot be rewritten
    node = Node(NodeOptions(folder=root, config=Config(tmp_path / "cfg"), secret="k",
                            name="a"))
    try:
        with caplog.at_level(logging.WARNING, logger="app.engine.node"):
            asyncio.run(node.scan_now())
        assert "cannot prune old versions" in caplog.text
        assert versionstore.entries(root) == [old]
    finally:
        node.puller.close()
        node.index.close()


def test_a_new_retention_is_applied_at_the_next_full_rescan(tmp_path, monkeypatch):
    """The app's settings (or settings.json) change while the node runs: the next full
    rescan prunes by the new number of days, without waiting for the hour."""
    clock = types.SimpleNamespace(now=1000.0)
    monkeypatch.setattr(node_mod, "time", types.SimpleNamespace(monotonic=lambda: clock.now))
    root = tmp_path / "A"
    root.mkdir()
    cfg = settings(tmp_path / "cfg")
    ten_days = kept(root, "ten.txt", 10)
    node = Node(NodeOptions(folder=root, config=cfg, secret="k", name="a"))
    try:
        asyncio.run(node.scan_now())  # 30 days: kept
        assert versionstore.entries(root) == [ten_days]
        cfg.update(lambda s: s.__setitem__("versions_days", 7))
        clock.now += 60
        asyncio.run(node.scan_now({"ten.txt"}))  # a partial scan prunes nothing
        assert versionstore.entries(root) == [ten_days]
        asyncio.run(node.scan_now())
        assert versionstore.entries(root) == []
        assert not (root / ten_days.version).exists()
    finally:
        node.puller.close()
        node.index.close()
