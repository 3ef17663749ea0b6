"""Benchmarks of the desktop app: how long the UI thread stalls, how fast the table fills.

Real widgets (offscreen unless QT_QPA_PLATFORM says otherwise), the real engine in the
window's worker thread, and a real `p2psync run` process on 127.0.0.1. Prints figures
(one per line, the target next to it); never asserts timing.

  stall  a `run` node A holds N small files (default 10,000); the window's node B starts
         with an empty folder and --peer A. A QTimer heartbeat every 10 ms runs in the
         UI thread from the moment the window is shown until B's table says "synced"
         for all N files: the longest gap between two beats is the longest stall.
  fill   a folder of M files (default 100,000) is indexed once by a `run` node, which
         is then stopped; the bench measures from constructing the window on that
         folder (same config dir) to the table holding all M rows, and the longest
         heartbeat gap from then until --tail s (20) after the engine has started (its
         startup rescan of the M files included); and the process's memory (the
         window and its engine live in it): its RSS once the table is full, and its
         peak then and at the end.

Usage:  python bench/bench_gui.py [--files N] [--big-files M] [--only stall,fill] [--tail S]
            [--workdir DIR] [--keep] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["QT_QPA_PLATFORM"] = os.environ.get("QT_QPA_PLATFORM") or "offscreen"
os.environ.setdefault("P2PSYNC_DISCOVERY_TARGETS", "127.255.255.255")  # never the real LAN

from PySide6.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

import app.gui  # noqa: E402,F401 - the binding work-around before any widget
from app.engine.config import Config  # noqa: E402
from app.gui.window import LaunchOptions, MainWindow  # noqa: E402

SECRET = "bench-gui-key"
TARGETS = {"stall.max_gap_ms": ("<", 100.0)}
HEARTBEAT_MS = 10


def log(msg: str) -> None:
    print(f"[bench_gui] {msg}", file=sys.stderr, flush=True)


# --- a `run` node ------------------------------------------------------------------
class RunNode:
    def __init__(self, folder: Path, config: Path, name: str = "A") -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("P2PSYNC_SECRET", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "run", "--folder", str(folder), "--config-dir",
             str(config), "--listen", "127.0.0.1:0", "--no-discovery", "--secret", SECRET,
             "--name", name],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_listening(self, timeout: float) -> str:
        rx = re.compile(r"listening on ([\d.]+:\d+)")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := rx.search(line):
                    return m.group(1)
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit("run node did not start:\n" + "\n".join(self.lines))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def make_files(folder: Path, n: int, dirs: int, max_size: int, seed: int = 1) -> int:
    rnd = random.Random(seed)
    total = 0
    for d in range(dirs):
        (folder / f"dir{d:04d}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        size = rnd.randrange(max_size + 1)
        (folder / f"dir{i % dirs:04d}" / f"file{i:06d}.dat").write_bytes(rnd.randbytes(size))
        total += size
    return total


# --- the UI thread's heartbeat ---------------------------------------------------------
class Heartbeat:
    def __init__(self) -> None:
        self.gaps: list[float] = []
        self.clock = QElapsedTimer()
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._beat)

    def start(self) -> None:
        self.gaps.clear()
        self.clock.start()
        self.timer.start(HEARTBEAT_MS)

    def stop(self) -> None:
        self.timer.stop()

    def _beat(self) -> None:
        self.gaps.append(self.clock.nsecsElapsed() / 1e6)
        self.clock.restart()

    def figures(self, prefix: str) -> dict[str, float]:
        g = sorted(self.gaps) or [0.0]
        return {f"{prefix}.max_gap_ms": round(g[-1], 1),
                f"{prefix}.p99_gap_ms": round(g[int(len(g) * 0.99)], 1),
                f"{prefix}.median_gap_ms": round(statistics.median(g), 1),
                f"{prefix}.gaps_over_50ms": sum(1 for x in g if x > 50),
                f"{prefix}.beats": len(g)}


def run_until(app: QApplication, done, timeout: float) -> bool:
    """Runs an event loop until done() (checked every 20 ms) or the timeout.

    A QEventLoop of its own, not app.exec()/app.quit(): Qt 6's quit() first asks every
    window to close, which would stop the engine.
    """
    deadline = time.monotonic() + timeout
    result = {"ok": False}
    loop = QEventLoop()

    def check() -> None:
        if done():
            result["ok"] = True
            loop.quit()
        elif time.monotonic() > deadline:
            loop.quit()

    t = QTimer()
    t.timeout.connect(check)
    t.start(20)
    loop.exec()
    t.stop()
    return result["ok"]


def close_window(app: QApplication, w: MainWindow) -> None:
    w.close()
    run_until(app, lambda: w.worker is None, 60)
    w.deleteLater()


# --- scenarios ---------------------------------------------------------------------
def bench_stall(app: QApplication, work: Path, n: int, timeout: float) -> dict[str, float]:
    a, b = work / "stall-A", work / "stall-B"
    a.mkdir()
    b.mkdir()
    log(f"stall: writing {n:,} files into A")
    total = make_files(a, n, 100, 4096)
    node = RunNode(a, work / "stall-cfgA")
    try:
        addr = node.wait_listening(timeout)
        host, port = addr.rsplit(":", 1)
        log(f"stall: A listens on {addr}; starting the window on empty B")
        beat = Heartbeat()
        t0 = time.monotonic()
        w = MainWindow(LaunchOptions(config=Config(work / "stall-cfgB"), folder=b,
                                     secret=SECRET, name="B", listen=("127.0.0.1", 0),
                                     peers=[(host, int(port))], discovery=False))
        w.show()
        beat.start()
        first = {}

        def all_synced() -> bool:
            m = w.files_model
            if "first" not in first and m.count("synced"):
                first["first"] = time.monotonic() - t0
            return m.total_files() == n and m.count("synced") == n

        ok = run_until(app, all_synced, timeout)
        elapsed = time.monotonic() - t0
        beat.stop()
        figures = beat.figures("stall")
        figures.update({"stall.files": n, "stall.mib": round(total / 2**20, 1),
                        "stall.first_synced_s": round(first.get("first", -1), 2),
                        "stall.all_synced_s": round(elapsed, 2)})
        if not ok:
            log(f"stall: NOT all synced after {timeout:g} s: "
                f"{w.files_model.count('synced')} of {n}")
        close_window(app, w)
        return figures
    finally:
        node.stop()


def rss_mib(field: str = "VmHWM") -> float:
    """This process's peak RSS so far (VmHWM), or its RSS now (VmRSS): the window and its
    engine live here."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return -1.0


def bench_fill(app: QApplication, work: Path, n: int, timeout: float,
               tail: float) -> dict[str, float]:
    folder = work / "fill"
    folder.mkdir()
    log(f"fill: writing {n:,} files")
    make_files(folder, n, 1000, 64)
    cfg = work / "fill-cfg"
    log("fill: indexing them once with `p2psync run`")
    t = time.monotonic()
    node = RunNode(folder, cfg)
    node.wait_listening(max(timeout, 600))
    index_s = time.monotonic() - t
    node.stop()
    log(f"fill: indexed in {index_s:.1f} s; opening the window")
    beat = Heartbeat()
    beat.start()
    t0 = time.monotonic()
    w = MainWindow(LaunchOptions(config=Config(cfg), folder=folder, secret=SECRET, name="A",
                                 listen=("127.0.0.1", 0), discovery=False))
    construct_s = time.monotonic() - t0
    w.show()
    ok = run_until(app, lambda: w.files_model.total_files() == n, timeout)
    filled_s = time.monotonic() - t0
    filled_rss = rss_mib("VmRSS"), rss_mib()
    engine = run_until(app, lambda: bool(w.info), timeout)
    started_s = time.monotonic() - t0
    # and the first seconds of the running engine: its first polls work out every row
    # whose why names who is connected (8 s at a million files)
    run_until(app, lambda: False, tail)
    beat.stop()
    if not ok:
        log(f"fill: table holds {w.files_model.total_files()} of {n} after {timeout:g} s")
    if not engine:
        log(f"fill: the engine did not start: {w.banner_text.text() or 'no error shown'}")
    figures = {"fill.files": n, "fill.index_once_s": round(index_s, 1),
               "fill.window_constructed_s": round(construct_s, 3),
               "fill.table_filled_s": round(filled_s, 3),
               "fill.engine_started_s": round(started_s, 3) if engine else -1}
    figures.update(beat.figures("fill"))
    figures.update({"fill.filled_rss_mib": filled_rss[0], "fill.filled_peak_rss_mib": filled_rss[1],
                    "fill.end_rss_mib": rss_mib("VmRSS"), "fill.peak_rss_mib": rss_mib()})
    close_window(app, w)
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=10_000, help="files of the stall scenario")
    p.add_argument("--big-files", type=int, default=100_000, help="files of the fill scenario")
    p.add_argument("--only", default="stall,fill")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--tail", type=float, default=20.0,
                   help="seconds the fill scenario keeps measuring after the engine started")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    only = set(args.only.split(","))
    work = Path(tempfile.mkdtemp(prefix="bench-gui-", dir=args.workdir))
    app = QApplication.instance() or QApplication(sys.argv[:1])
    figures: dict[str, float] = {"env.cpus": os.cpu_count() or 0,
                                 "env.loadavg_1m": round(os.getloadavg()[0], 2),
                                 "env.qpa": os.environ["QT_QPA_PLATFORM"]}
    try:
        if "stall" in only:
            figures.update(bench_stall(app, work, args.files, args.timeout))
        if "fill" in only:
            figures.update(bench_fill(app, work, args.big_files, args.timeout, args.tail))
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        json.dump({"figures": figures, "targets": TARGETS}, sys.stdout, indent=2)
        print()
    else:
        for name, value in figures.items():
            tgt = TARGETS.get(name)
            note = f"   (target {tgt[0]} {tgt[1]:g})" if tgt else ""
            print(f"{name:<32} {value!s:>12}{note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
