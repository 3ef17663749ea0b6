"""Broadcast targets from `ifaddr` (every platform), not from Linux ioctls."""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace

import ifaddr

from app.engine.roles import targets_for
from app.net import discovery


def test_targets_are_this_machines_networks_and_loopback(monkeypatch):
    monkeypatch.delenv(discovery.TARGETS_ENV, raising=False)
    targets = discovery.broadcast_targets()
    assert targets[0] == ("lo", "127.255.255.255")
    nets = {(a.name, ipaddress.IPv4Network(f"{ip.ip}/{ip.network_prefix}", strict=False))
            for a in ifaddr.get_adapters() for ip in a.ips if isinstance(ip.ip, str)}
    for name, addr in targets[1:]:
        assert any(n == name and str(net.broadcast_address) == addr for n, net in nets)
    assert "127.0.0.1" in discovery.interface_ipv4s("lo")
    assert discovery.interface_ipv4s("no-such-interface") == set()


def _adapter(name: str, *ips: tuple[str | tuple, int]) -> SimpleNamespace:
    return SimpleNamespace(name=name, ips=[SimpleNamespace(ip=ip, network_prefix=p)
                                           for ip, p in ips])


def test_no_target_for_loopback_point_to_point_or_ipv6(monkeypatch):
    monkeypatch.delenv(discovery.TARGETS_ENV, raising=False)
    monkeypatch.setattr(ifaddr, "get_adapters", lambda: [
        _adapter("lo", ("127.0.0.1", 8)),
        _adapter("eth0", ("192.168.1.20", 24), (("fe80::1", 0, 2), 64)),
        _adapter("wg0", ("10.9.0.2", 32)),
        _adapter("eth1", ("10.1.2.3", 16), ("10.1.9.9", 16)),  # two addresses, one network
    ])
    assert discovery.broadcast_targets() == [
        ("lo", "127.255.255.255"), ("eth0", "192.168.1.255"), ("eth1", "10.1.255.255")]
    assert discovery.interface_ipv4s("eth1") == {"10.1.2.3", "10.1.9.9"}


def test_no_interfaces_to_ask_leaves_loopback(monkeypatch):
    monkeypatch.delenv(discovery.TARGETS_ENV, raising=False)

    def fails():
        raise OSError("getifaddrs failed")

    monkeypatch.setattr(ifaddr, "get_adapters", fails)
    assert discovery.broadcast_targets() == [("lo", "127.255.255.255")]


def test_a_node_bound_to_one_address_announces_on_its_interface_only(monkeypatch):
    monkeypatch.setattr(ifaddr, "get_adapters", lambda: [
        _adapter("eth0", ("192.168.1.20", 24)), _adapter("eth1", ("10.1.2.3", 16))])
    targets = [("lo", "127.255.255.255"), ("eth0", "192.168.1.255"), ("eth1", "10.1.255.255")]
    assert targets_for(targets, "10.1.2.3") == [("eth1", "10.1.255.255")]
    assert targets_for(targets, "127.0.0.1") == [("lo", "127.255.255.255")]
    assert targets_for(targets, "") == targets  # all addresses: every interface
