"""What LAN discovery costs an eavesdropper, and what it costs a node's start.

  discovery.offline_guesses_per_s      key guesses per second one core can test against
                                       a captured announcement (one scrypt each), over
                                       --guesses guesses
  discovery.one_hmac_guesses_per_s     the same with the old derivation (one SHA-256, one
                                       HMAC), for comparison
  discovery.derive_ms                  the derivation a node does once per start (median)
  discovery.derive_peak_rss_mib        this process's peak RSS growth over the derivations
  sync.peer_s / sync.discovery_s       median wall time of a no-op `p2psync sync` against a
                                       running `run` node, with --peer and by discovery
  run.first_announcement_s             from starting a `run` process to its first
                                       announcement on the wire (median)

Real processes on loopback (discovery on 127.255.255.255 only). Prints figures,
asserts nothing.

    python bench/bench_discovery.py [--guesses 20] [--runs 5]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.net import discovery  # noqa: E402

KEY = "bench-discovery-key"


def env() -> dict:
    e = dict(os.environ, PYTHONPATH=str(REPO), P2PSYNC_DISCOVERY_TARGETS="127.255.255.255")
    e.pop("P2PSYNC_SECRET", None)
    return e


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listen_udp(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("0.0.0.0", port))
    return s


def one_hmac(secret: str) -> tuple[bytes, bytes]:
    base = hashlib.sha256(b"p2psync share v1\0" + secret.encode()).digest()
    return (hmac.new(base, b"share-id", hashlib.sha256).digest()[:16],
            hmac.new(base, b"announce-tag", hashlib.sha256).digest())


def offline(guesses: int) -> None:
    derive = discovery.share_keys.__wrapped__  # no cache: each guess pays in full
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for i in range(guesses):
        t = time.perf_counter()
        derive(f"guess-{i}")
        times.append(time.perf_counter() - t)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    n = 100_000
    for i in range(n):
        one_hmac(f"guess-{i}")
    old = n / (time.perf_counter() - t)
    print(f"discovery.offline_guesses_per_s   {len(times) / sum(times):10.1f}   (target <= ~10)")
    print(f"discovery.one_hmac_guesses_per_s  {old:10.0f}")
    print(f"discovery.derive_ms               {statistics.median(times) * 1000:10.0f}")
    print(f"discovery.derive_peak_rss_mib     {(rss1 - rss0) / 1024:10.0f}")


def wait_line(proc: subprocess.Popen, pattern: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if pattern in line:
            return line
        if not line and proc.poll() is not None:
            break
    raise SystemExit(f"no line with {pattern!r} from the run node")


def first_announcement(work: Path, runs: int) -> None:
    took = []
    for i in range(runs):
        port = free_udp_port()
        sock = listen_udp(port)
        sock.settimeout(20)
        folder = work / f"first{i}"
        folder.mkdir()
        t = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "run", "--folder", str(folder), "--config-dir",
             str(work / f"cfg-first{i}"), "--listen", "127.0.0.1:0", "--discovery-port",
             str(port), "--secret", KEY, "-q"],
            env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            sock.recvfrom(65536)
            took.append(time.monotonic() - t)
        finally:
            proc.terminate()
            proc.wait(10)
            sock.close()
    print(f"run.first_announcement_s          {statistics.median(took):10.2f}")


def syncs(work: Path, runs: int) -> None:
    port = free_udp_port()
    a = work / "A"
    a.mkdir()
    (a / "hello.txt").write_text("hello\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "run", "--folder", str(a), "--config-dir",
         str(work / "cfgA"), "--listen", "127.0.0.1:0", "--discovery-port", str(port),
         "--secret", KEY], env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    try:
        addr = wait_line(proc, "listening on").split()[-1]
        wait_line(proc, "role: server")
        b = work / "B"
        b.mkdir()
        base = [sys.executable, "-m", "app", "sync", "--folder", str(b), "--config-dir",
                str(work / "cfgB"), "--secret", KEY, "--discovery-port", str(port), "-q"]
        for label, extra in (("peer", ["--peer", addr, "--no-discovery"]),
                             ("discovery", [])):
            took = []
            for _ in range(runs + 1):  # the first one also copies the file: not counted
                t = time.monotonic()
                r = subprocess.run(base + extra, env=env(), capture_output=True, text=True)
                took.append(time.monotonic() - t)
                if r.returncode != 0:
                    raise SystemExit(f"sync ({label}) failed: {r.stderr}")
            print(f"sync.{label}_s{' ' * (27 - len(label))}{statistics.median(took[1:]):10.2f}")
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--guesses", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    print(f"env.cpus {os.cpu_count()}  env.loadavg_1m {os.getloadavg()[0]:.2f}")
    offline(args.guesses)
    work = Path(tempfile.mkdtemp(prefix="p2psync-discovery-"))
    try:
        first_announcement(work, args.runs)
        syncs(work, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
