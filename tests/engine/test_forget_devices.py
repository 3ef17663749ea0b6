"""What a device long gone announced is dropped at a start (Node._forget_gone_devices):
every device ever met kept a row per file, for good. One that comes back is a new
device to us, and syncs as one."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from app.core.index import Index
from app.engine import node as node_module
from app.engine.config import Config
from app.engine.node import Node, NodeOptions
from tests.twonodes import sync_beta_with_alpha

DAY = 24 * 3600.0


@contextlib.contextmanager
def _alpha_index(tmp_path) -> Iterator[Index]:
    """Alpha's index, alpha not running."""
    a = Node(NodeOptions(folder=tmp_path / "A", config=Config(tmp_path / "cfgA"),
                         secret="k", name="alpha"))
    try:
        yield a.index
    finally:
        a.index.close()


def _last_seen(tmp_path, days_ago: float) -> str:
    """Beta's last connection as alpha recorded it, moved back; beta's device ID."""
    with _alpha_index(tmp_path) as index:
        (beta,) = index.remote_devices()
        index.saw_device(beta, time.time() - days_ago * DAY)
        return beta


def test_a_device_gone_for_long_is_forgotten_and_syncs_as_new_when_back(tmp_path):
    for d in "AB":
        (tmp_path / d).mkdir()
    (tmp_path / "A" / "a.txt").write_text("from alpha")
    (tmp_path / "B" / "b.txt").write_text("from beta")
    sync_beta_with_alpha(tmp_path)
    assert (tmp_path / "A" / "b.txt").read_text() == "from beta"

    beta = _last_seen(tmp_path, node_module.FORGET_AFTER / DAY + 1)
    (tmp_path / "B" / "c.txt").write_text("made while away")
    (tmp_path / "A" / "a.txt").write_text("changed while it was away")
    seen = {}

    def forgotten(a: Node) -> None:  # alpha started: beta's rows are gone, its name is not
        seen["devices"] = a.index.remote_devices()
        seen["state"] = a.index.remote_state(beta)
        seen["name"] = a.index.device_names().get(beta)

    sync_beta_with_alpha(tmp_path, alpha_started=forgotten)
    assert seen == {"devices": [], "state": (b"", 0), "name": "beta"}
    for d in "AB":
        assert (tmp_path / d / "c.txt").read_text() == "made while away"
        assert (tmp_path / d / "a.txt").read_text() == "changed while it was away"
        assert (tmp_path / d / "b.txt").read_text() == "from beta"
    with _alpha_index(tmp_path) as index:
        assert index.remote_devices() == [beta]  # known again, with its whole index
        assert index.remote_state(beta)[1] > 0


def test_a_device_seen_lately_is_kept(tmp_path):
    for d in "AB":
        (tmp_path / d).mkdir()
    (tmp_path / "B" / "b.txt").write_text("from beta")
    sync_beta_with_alpha(tmp_path)
    beta = _last_seen(tmp_path, node_module.FORGET_AFTER / DAY - 1)
    kept = []
    sync_beta_with_alpha(tmp_path, alpha_started=lambda a: kept.append(a.index.remote_state(beta)))
    assert kept[0][1] > 0
