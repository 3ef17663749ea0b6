"""The time of `p2psync sync --dry-run` against a peer with N differing files (real processes).

A `p2psync run` node A holds N small files (1 KiB, in 100 directories); B is a one-shot
device on 127.0.0.1. Two scenarios, each timed --runs times (a dry run changes nothing,
so every run sees the same N differences):

  first     B's folder is empty and was never synced: N fetches (and the directories)
  changed   B synced once, then every file was rewritten on A: N fetches of new content

Prints figures, one a line (`name value`), never asserts: the wall time of the whole
`sync --dry-run --json` process (start-up, scan, connection, index exchange, planning,
printing), its peak RSS, and the number of actions it listed.

Usage:  PYTHONPATH=. python bench/bench_preview.py [--files N] [--runs N] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from peakrss import PeakRss

REPO = Path(__file__).resolve().parents[1]
SECRET = "TESTS-HARE7-KEY4X-NQ2ZW"
DIRS = 100
SIZE = 1024


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("P2PSYNC_SECRET", None)
    e["P2PSYNC_DISCOVERY_TARGETS"] = "127.255.255.255"  # never the real LAN
    return e


def cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "app", *args]


def write_files(folder: Path, n: int, tag: str) -> None:
    for i in range(n):
        d = folder / f"d{i % DIRS:03}"
        d.mkdir(parents=True, exist_ok=True)
        line = f"{tag} {i}\n".encode()
        (d / f"f{i:06}.txt").write_bytes((line * (SIZE // len(line) + 1))[:SIZE])


class RunNode:
    """`p2psync run` on A; its stderr lines are kept to wait for its scans."""

    def __init__(self, folder: Path, config: Path) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            cmd("run", "--folder", str(folder), "--config-dir", str(config), "--listen",
                "127.0.0.1:0", "--secret", SECRET, "--no-discovery"),
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env())
        threading.Thread(target=self._pump, daemon=True).start()
        self.port = int(self.wait(r"listening on [\d.]+:(\d+)").group(1))

    def _pump(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait(self, pattern: str, timeout: float = 600) -> re.Match:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := rx.search(line):
                    return m
            time.sleep(0.05)
        raise SystemExit(f"A did not log {pattern!r}:\n" + "\n".join(self.lines[-20:]))

    def scanned(self) -> int:
        return sum(int(m.group(1)) for line in list(self.lines)
                   if (m := re.search(r"scan: (\d+) local change", line)))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def b_args(work: Path, port: int, *extra: str) -> list[str]:
    return ["sync", "--folder", str(work / "B"), "--config-dir", str(work / "cfgB"),
            "--peer", f"127.0.0.1:{port}", "--secret", SECRET, "--no-discovery", "-q", *extra]


def timed_dry_run(work: Path, port: int) -> tuple[float, float, int]:
    """(seconds, peak RSS in MiB, actions listed) of one `sync --dry-run --json`."""
    out = work / "preview.json"
    with open(out, "w") as f:
        start = time.monotonic()
        proc = subprocess.Popen(cmd(*b_args(work, port, "--dry-run", "--json")), stdout=f,
                                stderr=subprocess.PIPE, env=env())
        peak = PeakRss(proc.pid)
        _, status = os.waitpid(proc.pid, 0)
        took = time.monotonic() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the dry run failed: {proc.stderr.read().decode()}")
    actions = len(json.loads(out.read_text())["actions"])
    return took, peak.stop_mib(), actions


def scenario(name: str, work: Path, port: int, runs: int) -> None:
    times = []
    for i in range(runs):
        took, rss, actions = timed_dry_run(work, port)
        times.append(took)
        print(f"{name}.run{i + 1}_s {took:.2f}   ({actions} actions, peak RSS {rss:.0f} MiB)",
              flush=True)
    print(f"{name}.dry_run_s {statistics.median(times):.2f}   (median of {runs})", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-preview-"))
    print(f"env.cpus {os.cpu_count()}   (load {os.getloadavg()[0]:.2f})", flush=True)
    a = None
    try:
        write_files(work / "A", args.files, "first")
        (work / "B").mkdir()
        a = RunNode(work / "A", work / "cfgA")
        scenario("first", work, a.port, args.runs)

        r = subprocess.run(cmd(*b_args(work, a.port, "--timeout", "600")), env=env(),
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"the sync failed: {r.stderr}")
        before = a.scanned()
        write_files(work / "A", args.files, "second")
        deadline = time.monotonic() + 600
        while a.scanned() - before < args.files and time.monotonic() < deadline:
            time.sleep(0.2)
        scenario("changed", work, a.port, args.runs)
    finally:
        if a is not None:
            a.stop()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
