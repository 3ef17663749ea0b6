"""Several "machines" on one Linux host: network namespaces joined by a bridge.

Each host is a namespace with one veth leg on a private bridge (10.77.X.0/24 inside
namespaces this test made, never the real network) and its own loopback, so LAN
discovery broadcasts cross hosts exactly as on a real LAN, and `127.0.0.1` of one
host is not another's. Skips cleanly where `ip netns` is not allowed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tests.procs import SECRET, RunNode, _pump, env, p2psync_cmd


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def netns_available() -> str | None:
    """None when namespaces work here, else why not (for pytest.skip)."""
    if os.geteuid() != 0:
        return "needs root for ip netns"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    name = f"p2pcheck{os.getpid()}"
    r = _ip("netns", "add", name, check=False)
    if r.returncode != 0:
        return f"ip netns add failed: {r.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


@dataclass
class Lan:
    """A bridge and the hosts plugged into it."""

    tag: str
    subnet: int
    hosts: list[str] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"p2pbr{self.tag}"

    def up(self) -> None:
        """Two switches joined by a trunk cable: cutting it splits the LAN in halves."""
        for side in (0, 1):
            _ip("link", "add", f"{self.bridge}{side}", "type", "bridge")
            _ip("link", "set", f"{self.bridge}{side}", "up")
        _ip("link", "add", f"p2p{self.tag}t0", "type", "veth", "peer", "name", f"p2p{self.tag}t1")
        for side in (0, 1):
            _ip("link", "set", f"p2p{self.tag}t{side}", "master", f"{self.bridge}{side}")
            _ip("link", "set", f"p2p{self.tag}t{side}", "up")

    def split(self) -> None:
        _ip("link", "set", f"p2p{self.tag}t0", "down")

    def heal(self) -> None:
        _ip("link", "set", f"p2p{self.tag}t0", "up")

    def add_host(self, side: int = 0) -> str:
        i = len(self.hosts) + 1
        ns = f"p2p{self.tag}h{i}"
        host_leg, ns_leg = f"p2p{self.tag}v{i}", f"p2p{self.tag}n{i}"
        _ip("netns", "add", ns)
        _ip("link", "add", host_leg, "type", "veth", "peer", "name", ns_leg)
        _ip("link", "set", ns_leg, "netns", ns)
        _ip("link", "set", host_leg, "master", f"{self.bridge}{side}")
        _ip("link", "set", host_leg, "up")
        _ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "brd", "+", "dev", ns_leg)
        _ip("-n", ns, "link", "set", ns_leg, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        self.hosts.append(ns)
        return ns

    def address(self, i: int) -> str:
        return f"10.77.{self.subnet}.{i}"

    def host_ip(self, ns: str) -> str:
        return self.address(self.hosts.index(ns) + 1)

    def down(self) -> None:
        for i, ns in enumerate(self.hosts, 1):
            _ip("link", "del", f"p2p{self.tag}v{i}", check=False)
            _ip("netns", "del", ns, check=False)
        _ip("link", "del", f"p2p{self.tag}t0", check=False)
        for side in (0, 1):
            _ip("link", "del", f"{self.bridge}{side}", check=False)


def start_in_ns(ns: str, folder: Path, config: Path, *extra: str, name: str,
                secret: str = SECRET) -> RunNode:
    """A `run` node inside namespace ns, with discovery on its real interfaces."""
    folder.mkdir(parents=True, exist_ok=True)
    e = env()
    e.pop("P2PSYNC_DISCOVERY_TARGETS", None)  # inside the namespace: the veth and lo
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, *p2psync_cmd(
            "run", "--folder", str(folder), "--config-dir", str(config),
            "--listen", "0.0.0.0:22100", "--secret", secret, "--name", name, *extra)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=e)
    node = RunNode(folder, config, proc, port=22100)
    threading.Thread(target=_pump, args=(proc, node.lines), daemon=True).start()
    node.wait_for_log(r"listening on")
    return node
