"""Many devices on separate (emulated) machines: discovery, election, failover, merge.

Each device runs as a real `p2psync run` process in its own network namespace; the
namespaces share a bridge, so they are separate hosts on one LAN. No `--peer` unless
a test says so: they must find each other by LAN discovery.
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.netns import Lan, netns_available, start_in_ns
from tests.procs import live_node, tree, wait_until

pytestmark = pytest.mark.netns

_why_not = netns_available()
if _why_not:
    pytest.skip(_why_not, allow_module_level=True)


@pytest.fixture
def lan(tmp_path):
    made = []

    def make(n_hosts: int) -> Lan:
        """n hosts; the first half on one switch, the rest on the other."""
        lan = Lan(tag=f"{os.getpid() % 10000}{len(made)}", subnet=len(made) + 1)
        made.append(lan)
        lan.up()
        for i in range(n_hosts):
            lan.add_host(side=int(i >= n_hosts // 2))
        return lan

    yield make
    for lan in made:
        lan.down()


@pytest.fixture
def devices(tmp_path):
    nodes = {}

    def start(lan: Lan, ns: str, name: str, *extra: str):
        node = start_in_ns(ns, tmp_path / name, tmp_path / f"cfg-{name}", *extra, name=name)
        nodes[name] = node
        return node

    yield start, nodes
    for name, node in nodes.items():
        if node.proc.poll() is None:
            node.stop(signal.SIGKILL)
        print(f"==== {name} ====\n{node.log()}")  # shown by pytest when a test fails


def roles(nodes) -> dict[str, str]:
    out = {}
    for name, node in nodes.items():
        if node.proc.poll() is None:
            st = live_node(node)
            out[name] = st["role"] if st else "down"
    return out


def one_server_all_connected(nodes) -> bool:
    live = {n: node for n, node in nodes.items() if node.proc.poll() is None}
    infos = {n: live_node(node) for n, node in live.items()}
    servers = [n for n, i in infos.items() if i and i["role"] == "server"]
    if len(servers) != 1:
        return False
    server = servers[0]
    clients = [n for n in live if n != server]
    return (all(infos[c]["role"] == "client" and len(infos[c]["peers"]) == 1 for c in clients)
            and len(infos[server]["peers"]) == len(clients))


def same_everywhere(nodes) -> bool:
    trees = [tree(node.folder) for node in nodes.values() if node.proc.poll() is None]
    return all(t == trees[0] for t in trees)


def test_three_hosts_find_each_other_and_elect_one_server(lan, devices):
    start, nodes = devices
    net = lan(3)
    for i, ns in enumerate(net.hosts):
        folder_file = f"from-host-{i}.txt"
        node = start(net, ns, f"dev{i}")
        (node.folder / folder_file).write_text(f"hello from host {i}\n")
    wait_until(lambda: one_server_all_connected(nodes), timeout=20,
               msg=f"no single server: {roles(nodes)}")
    wait_until(lambda: same_everywhere(nodes) and len(tree(nodes["dev0"].folder)) == 3,
               timeout=20, msg="files did not reach every host")
    # a change on one client reaches the other client through the server
    server = next(n for n, r in roles(nodes).items() if r == "server")
    c1, c2 = [n for n in nodes if n != server]
    (nodes[c1].folder / "client-note.txt").write_text("via the server")
    wait_until(lambda: (nodes[c2].folder / "client-note.txt").exists(), timeout=15)
    peers_of_c2 = {p["name"] for p in live_node(nodes[c2])["peers"]}
    assert peers_of_c2 == {server}, "clients must not connect to each other"


def test_server_killed_survivors_elect_a_new_one(lan, devices):
    start, nodes = devices
    net = lan(3)
    for i, ns in enumerate(net.hosts):
        start(net, ns, f"dev{i}")
    wait_until(lambda: one_server_all_connected(nodes), timeout=20)
    old = next(n for n, r in roles(nodes).items() if r == "server")
    nodes[old].proc.send_signal(signal.SIGKILL)
    nodes[old].proc.wait()
    wait_until(lambda: one_server_all_connected(nodes), timeout=15,
               msg=f"no new server: {roles(nodes)}")
    survivors = [n for n in nodes if n != old]
    (nodes[survivors[0]].folder / "after-failover.txt").write_text("still syncing")
    wait_until(lambda: all((nodes[n].folder / "after-failover.txt").exists()
                           for n in survivors), timeout=15)


def test_late_joiner_becomes_a_client(lan, devices):
    start, nodes = devices
    net = lan(3)
    start(net, net.hosts[0], "first")
    start(net, net.hosts[1], "second")
    wait_until(lambda: one_server_all_connected(nodes), timeout=20)
    server_before = next(n for n, r in roles(nodes).items() if r == "server")
    start(net, net.hosts[2], "late")
    wait_until(lambda: one_server_all_connected(nodes), timeout=20)
    assert roles(nodes)["late"] == "client"
    assert roles(nodes)[server_before] == "server", "a joiner must not take the server role"


def test_healed_partition_merges_into_one_server(lan, devices):
    start, nodes = devices
    net = lan(4)
    names = [f"dev{i}" for i in range(4)]
    for name, ns in zip(names, net.hosts, strict=True):
        start(net, ns, name)
    wait_until(lambda: one_server_all_connected(nodes), timeout=20)
    # cut the trunk between the switches: each half elects its own server
    net.split()
    left = {n: nodes[n] for n in names[:2]}
    right = {n: nodes[n] for n in names[2:]}
    wait_until(lambda: one_server_all_connected(left) and one_server_all_connected(right),
               timeout=20, msg=f"partition did not settle: {roles(nodes)}")
    (nodes["dev0"].folder / "left.txt").write_text("made on the left")
    (nodes["dev3"].folder / "right.txt").write_text("made on the right")
    net.heal()
    wait_until(lambda: one_server_all_connected(nodes), timeout=30,
               msg=f"groups did not merge: {roles(nodes)}")
    wait_until(lambda: same_everywhere(nodes) and (nodes["dev1"].folder / "right.txt").exists(),
               timeout=20, msg="folders did not converge after the merge")


def test_peer_address_works_where_broadcasts_do_not_pass(lan, devices):
    start, nodes = devices
    net = lan(3)
    first_ip = net.host_ip(net.hosts[0])
    start(net, net.hosts[0], "a", "--no-discovery")
    start(net, net.hosts[1], "b", "--no-discovery", "--peer", f"{first_ip}:22100")
    start(net, net.hosts[2], "c", "--no-discovery", "--peer", f"{first_ip}:22100")
    (nodes["c"].folder / "from-c.txt").write_text("c")
    wait_until(lambda: one_server_all_connected(nodes), timeout=20,
               msg=f"roles with --peer: {roles(nodes)}")
    assert roles(nodes)["a"] == "server"
    wait_until(lambda: (nodes["b"].folder / "from-c.txt").exists(), timeout=15)
