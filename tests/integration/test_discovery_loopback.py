"""LAN discovery between devices of one machine (loopback broadcast), no --peer."""

from __future__ import annotations

import pytest

from tests.procs import live_node, start_run, sync, tree, wait_until


@pytest.fixture
def nodes():
    started = []
    yield started
    for n in started:
        assert n.stop() == 0, n.log()


def discovering(tmp_path, name: str, port: int, secret: str = "loopback-key"):
    return start_run(tmp_path / name, tmp_path / f"cfg-{name}", "--discovery-port", str(port),
                     "--name", name, secret=secret, discovery=True)


def test_a_device_with_another_share_key_is_never_joined(tmp_path, nodes):
    port = 23000 + (hash(str(tmp_path)) % 500)
    nodes.append(discovering(tmp_path, "ours", port))
    nodes.append(discovering(tmp_path, "theirs", port, secret="another-key"))
    (tmp_path / "ours" / "private.txt").write_text("not for them")
    for n in nodes:
        wait_until(lambda n=n: (live_node(n) or {}).get("role") == "server", timeout=10)
    assert live_node(nodes[0])["peers"] == [] and live_node(nodes[1])["peers"] == []
    assert "private.txt" not in tree(tmp_path / "theirs")


def test_sync_without_peer_finds_the_server_by_discovery(tmp_path, nodes):
    port = 23500 + (hash(str(tmp_path)) % 400)
    (tmp_path / "A").mkdir()
    (tmp_path / "A" / "hello.txt").write_text("found me")
    nodes.append(discovering(tmp_path, "A", port))
    wait_until(lambda: (live_node(nodes[0]) or {}).get("role") == "server", timeout=10)
    r = sync(tmp_path / "B", tmp_path / "cfgB", secret="loopback-key",
             extra=("--discovery-port", str(port)), discovery=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "B" / "hello.txt").read_text() == "found me"


def test_sync_with_no_device_around_names_the_discovery_port(tmp_path):
    r = sync(tmp_path / "B", tmp_path / "cfgB", secret="nobody-has-this",
             extra=("--discovery-port", "23999"), discovery=True)
    assert r.returncode == 3, r.stderr
    assert "UDP port 23999" in r.stderr and "firewall" in r.stderr
    assert r.stderr.count("\n") == 1
