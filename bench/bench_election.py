"""How fast N devices elect one server, and how fast they recover when it is killed.

Starts N real `p2psync run` processes on loopback (LAN discovery by loopback
broadcast, no --peer), then reports:

  election.N.start_to_one_server_s   from launching the first process to "exactly one
                                      server and every client connected to it"
  election.N.failover_s              from SIGKILL of that server to the same condition
                                      among the survivors

Each device's state is read through the node's own control socket (what `p2psync
status` shows). Prints figures, asserts nothing.

    python bench/bench_election.py --devices 3 10
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.engine import control  # noqa: E402
from app.engine.config import Config  # noqa: E402


def start(n: int, work: Path, port: int) -> list[tuple[subprocess.Popen, Path, Path]]:
    env = dict(os.environ, PYTHONPATH=str(REPO), P2PSYNC_DISCOVERY_TARGETS="127.255.255.255")
    nodes = []
    for i in range(n):
        folder, cfg = work / f"dev{i}", work / f"cfg{i}"
        folder.mkdir()
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "run", "--folder", str(folder), "--config-dir",
             str(cfg), "--listen", "127.0.0.1:0", "--discovery-port", str(port),
             "--secret", "bench-key", "--name", f"dev{i}", "-q"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        nodes.append((proc, folder, cfg))
    return nodes


def infos(nodes) -> dict[int, dict | None]:
    out = {}
    for i, (proc, folder, cfg) in enumerate(nodes):
        if proc.poll() is None:
            sock = Config(cfg).folder_paths(folder).control_socket
            out[i] = control.query(sock, timeout=0.5) if sock.exists() else None
    return out


def settled(nodes) -> int | None:
    """The server's index once exactly one server holds every live device; else None."""
    now = infos(nodes)
    if any(v is None for v in now.values()):
        return None
    servers = [i for i, v in now.items() if v["role"] == "server"]
    if len(servers) != 1:
        return None
    clients = [i for i in now if i != servers[0]]
    ok = all(now[c]["role"] == "client" and len(now[c]["peers"]) == 1 for c in clients)
    return servers[0] if ok and len(now[servers[0]]["peers"]) == len(clients) else None


def wait_settled(nodes, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server = settled(nodes)
        if server is not None:
            return server
        time.sleep(0.05)
    raise SystemExit(f"no single server within {timeout:g} s: {infos(nodes)}")


def measure(n: int, port: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="p2psync-election-"))
    nodes = []
    try:
        t0 = time.monotonic()
        nodes = start(n, work, port)
        server = wait_settled(nodes)
        print(f"election.{n}.start_to_one_server_s {time.monotonic() - t0:10.2f}")
        t1 = time.monotonic()
        nodes[server][0].send_signal(signal.SIGKILL)
        nodes[server][0].wait()
        wait_settled(nodes)
        print(f"election.{n}.failover_s            {time.monotonic() - t1:10.2f}")
    finally:
        for proc, _, _ in nodes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _, _ in nodes:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, nargs="+", default=[3, 10])
    ap.add_argument("--discovery-port", type=int, default=23901)
    args = ap.parse_args()
    print(f"env.cpus {os.cpu_count()}  env.loadavg_1m {os.getloadavg()[0]:.2f}")
    for n in args.devices:
        measure(n, args.discovery_port)


if __name__ == "__main__":
    main()
