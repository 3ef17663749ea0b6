"""How long a restarted device takes to be connected again (target: under 5 s).

Two real `p2psync run` processes on loopback, LAN discovery by loopback broadcast, no
--peer. Device B listens either on 127.0.0.1 like A (`same`), or on 127.0.0.2 only
while its connections and announcements come from 127.0.0.1 (`elsewhere`: a machine
that listens on one address and talks from another, which peers must dial where it
listens). B, then A, is stopped (SIGTERM or SIGKILL) and started again at the same
address; the figure is from its new process printing "listening" to both sides
holding the link again, read through the nodes' control sockets (what `p2psync
status` shows). Prints figures, asserts nothing.

    python bench/bench_reconnect.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.engine import control  # noqa: E402
from app.engine.config import Config  # noqa: E402


class Device:
    def __init__(self, work: Path, name: str, host: str, udp: int) -> None:
        self.folder, self.cfg = work / name, work / f"cfg{name}"
        self.folder.mkdir(exist_ok=True)
        self.name, self.host, self.udp, self.port = name, host, udp, 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        """Starts the process; returns when it listens (monotonic)."""
        env = dict(os.environ, PYTHONPATH=str(REPO),
                   P2PSYNC_DISCOVERY_TARGETS="127.255.255.255")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "run", "--folder", str(self.folder), "--config-dir",
             str(self.cfg), "--listen", f"{self.host}:{self.port}", "--discovery-port",
             str(self.udp), "--secret", "bench-reconnect-key", "--name", self.name],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in self.proc.stderr:
            m = re.search(r"listening on [\d.]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                return time.monotonic()
        raise SystemExit(f"{self.name} did not start")

    def stop(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(15)

    def peers(self) -> int:
        sock = Config(self.cfg).folder_paths(self.folder).control_socket
        info = control.query(sock, timeout=0.5) if sock.exists() else None
        return len(info["peers"]) if info else 0


def linked(a: Device, b: Device, timeout: float = 300.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if a.peers() == 1 and b.peers() == 1:
            return time.monotonic()
        time.sleep(0.02)
    raise SystemExit(f"not connected again within {timeout:g} s")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(where: str, sig: int, rounds: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="p2psync-reconnect-"))
    udp = free_udp_port()
    a = Device(work, "A", "127.0.0.1", udp)
    b = Device(work, "B", "127.0.0.1" if where == "same" else "127.0.0.2", udp)
    try:
        a.start()
        b.start()
        linked(a, b)
        for _ in range(rounds):
            for victim in (b, a):
                victim.stop(sig)
                time.sleep(1.0)  # the other side notices (closed link, or 6 s silence)
                up = victim.start()
                took = linked(a, b) - up
                print(f"reconnect.{where}.{signal.Signals(sig).name}.restart_{victim.name}_s"
                      f" {took:8.2f}")
    finally:
        for d in (a, b):
            if d.proc is not None and d.proc.poll() is None:
                d.stop(signal.SIGTERM)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    print(f"env.cpus {os.cpu_count()}  env.loadavg_1m {os.getloadavg()[0]:.2f}")
    for where in ("same", "elsewhere"):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            measure(where, sig, args.rounds)


if __name__ == "__main__":
    main()
