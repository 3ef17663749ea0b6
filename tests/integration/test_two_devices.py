"""Two real devices (a `run` node and a `sync`) over TLS on loopback, real files."""

from __future__ import annotations

import os

import pytest

from tests.procs import start_run, sync, tree


@pytest.fixture
def run_node(tmp_path):
    """Start a `run` node on tmp_path/NAME once its files are in place; always stopped."""
    nodes = []

    def start(name: str = "A"):
        node = start_run(tmp_path / name, tmp_path / f"cfg{name}")
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        assert node.stop() == 0, node.log()


def test_files_flow_both_ways(tmp_path, run_node):
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir()
    (a / "only-a.txt").write_text("from A")
    (a / "nested" / "deeper").mkdir(parents=True)
    (a / "nested" / "deeper" / "ünï cödé name.txt").write_text("x" * 1000)
    (a / "empty-dir").mkdir()
    (a / "empty.bin").write_bytes(b"")
    b.mkdir()
    (b / "only-b.txt").write_text("from B")
    device_a = run_node("A")
    r = sync(b, tmp_path / "cfgB", device_a.address)
    assert r.returncode == 0, r.stderr
    assert tree(a) == tree(b)
    assert tree(b)["only-a.txt"] == b"from A"
    assert tree(b)["empty-dir"] == "<dir>"
    assert os.stat(a / "only-a.txt").st_mtime_ns == os.stat(b / "only-a.txt").st_mtime_ns
