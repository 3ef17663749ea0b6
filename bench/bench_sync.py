"""Sync benchmarks with real processes: a `p2psync run` node A and one-shot `p2psync sync`s B.

Prints figures (one per line, with the target next to it); never asserts timing.
Scenarios (see bench/README.md):

  small_files   first sync of N small files (1-32 KiB, ~100 dirs) from A to an empty B
  small_noop    the same sync again with nothing changed (median of 5)
  small_run     a watching `run` node C receives the same files
  big_file      first sync of one big random file (default 1 GiB), --runs times
  big_edit      1 MiB overwritten in the middle of the big file on A, then sync B again
  big_copy      the big file copied to a new name on A, then sync B again: B makes the
                copy from its own file (nothing fetched), its event loop never held
  tiny_files    first sync of --tiny files of 50-200 bytes (100 per dir, default 100,000)
  tiny_noop     the same again, nothing changed (median of 5)
  tiny_status   `status --json` on B: first byte, whole answer, peak RSS
  tiny_rename   the directory holding all tiny files renamed on A, then sync B
  tiny_ignore   a `.p2psyncignore` of usual rules (ignoring none of the files) on A;
                once B has it, the no-op again (median of 5)
  sparse_file   first sync of a 2 GiB sparse file holding 2 MiB of data
  million_*     the same five with --million files (default 1,000,000; not in the default set)

small_noop needs small_files and big_edit and big_copy need big_file: asking for one runs both (and
the same for the tiny and million groups).

With --compare, rsync copies the same data over loopback right after p2psync (rsync
only hands its writes to the page cache), and again with --fsync for the big file and
the small files: the durable reference, since a p2psync file is on the disk before it
is renamed into place.

Usage:  PYTHONPATH=. python bench/bench_sync.py [--files N] [--big-mib N] [--tiny N]
            [--runs N] [--only small_files,small_noop,...] [--json] [--keep] [--compare]
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import blake3
from peakrss import PeakRss, vmhwm_kib

REPO = Path(__file__).resolve().parents[1]
SECRET = "bench-share-key"
MIB = 1024 * 1024
CHUNK = 4 * MIB
SMALL_DIRS = 100
SMALL_MAX = 32 * 1024
NOOP_RUNS = 5
EDIT_OFFSET_MIB = 500
EDIT_MIB = 1
SPARSE_SIZE = 2 * 1024 * MIB
SPARSE_DATA = 2 * MIB
SPARSE_PIECES = 16
IMAGES = 200  # the images group: disk images of SPARSE_SIZE, each a piece of data
IMAGE_DATA = 64 * 1024
BLOCK = 128 * 1024  # p2psync's block: each image's data lies within one

TINY_MIN, TINY_MAX = 50, 200
TINY_PER_DIR = 100
TINY_TOP = "t"  # every tiny file is below this one directory (tiny_rename renames it)
MANY = ("files", "noop", "status", "rename", "ignore")  # the tiny and million groups' scenarios
IGNORE_RULES = "*.tmp\nbuild/\nnode_modules/\n*.pyc\n.cache/\n"  # a folder's usual rules

SCENARIOS = ("small_files", "small_noop", "small_run", "big_file", "big_edit", "big_copy",
             "sparse_file", "images",
             *(f"tiny_{s}" for s in MANY), *(f"million_{s}" for s in MANY))
DEFAULT_SCENARIOS = tuple(s for s in SCENARIOS if not s.startswith("million_"))
NEEDS = {"small_noop": "small_files", "small_run": "small_files", "big_edit": "big_file",
         "big_copy": "big_file",
         **{f"{g}_{s}": f"{g}_files" for g in ("tiny", "million") for s in MANY[1:]}}

# figure -> (comparison, limit); RSS figures are all "< 100"
TARGETS: dict[str, tuple[str, float]] = {
    "small_files.first_sync_s": ("<", 2.0),
    "small_noop.sync_s": ("<", 0.3),
    "big_file.mb_per_s": (">=", 500.0),
    "big_file.ratio_to_rsync": ("<=", 1.1),
    "big_edit.block_bytes_received": ("<=", 2 * MIB),
    "big_copy.block_bytes_received": ("<=", 0),
    "big_copy.sync_loop_worst_ms": ("<=", 100.0),
    "sparse_file.block_bytes_received": ("<=", SPARSE_DATA),
    "sparse_file.b_allocated_mib": ("<=", 3.0),
    # a folder of many big files: memory bounded by the 150 MB, the loop by 100 ms
    "images.sync_rss_mib": ("<=", 150.0),
    "images.a_rss_mib": ("<=", 150.0),
    "images.sync_loop_worst_ms": ("<=", 100.0),
    "images.a_loop_worst_ms": ("<=", 100.0),
    "images.block_bytes_received": ("<=", IMAGES * BLOCK),  # a block holds each piece
}
RSS_TARGET = ("<", 100.0)
# the tiny and million groups: ratios against rsync in the same run, and the limits
TARGETS.update({
    "tiny_files.vs_rsync": ("<=", 1.5),
    "tiny_noop.vs_rsync": ("<=", 1.0),
    "small_files.vs_rsync": ("<=", 1.0),
    "small_run.vs_sync": ("<=", 1.2),
    "million_noop.sync_s": ("<=", 3.0),
    "million_ignore.sync_s": ("<=", 3.0),
    "million_status.first_byte_s": ("<=", 1.0),
    "tiny_rename.bytes_fetched": ("<=", 0),
    "tiny_rename.bytes_reused": ("<=", 0),
    "tiny_rename.versions_files": ("<=", 0),
    "million_rename.bytes_fetched": ("<=", 0),
    "million_rename.bytes_reused": ("<=", 0),
    "million_rename.versions_files": ("<=", 0),
})
for _g, _rss in (("tiny", 120.0), ("million", 150.0)):
    for _s in MANY:
        TARGETS[f"{_g}_{_s}.sync_rss_mib"] = ("<=", _rss)
        TARGETS[f"{_g}_{_s}.a_rss_mib"] = ("<=", _rss)
    TARGETS[f"{_g}_status.rss_mib"] = ("<=", _rss)
    TARGETS[f"{_g}_files.index_bytes_per_file"] = ("<=", 300.0)
    for _side in ("a", "sync"):
        for _s in MANY:
            TARGETS[f"{_g}_{_s}.{_side}_loop_worst_ms"] = ("<=", 100.0)


class BenchFailure(Exception):
    """A scenario could not produce its figures (sync failed, copies differ, ...)."""


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


LOG_DIR: Path | None = None  # --logs: every process's stderr is kept there


def keep_log(name: str, text: str) -> None:
    if LOG_DIR is not None:
        slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")
        (LOG_DIR / f"{time.strftime('%H%M%S')}-{slug}.log").write_text(text)


def app_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("P2PSYNC_SECRET", None)
    # Measure what a user gets: cached bytecode. Without this, a shell that sets
    # PYTHONDONTWRITEBYTECODE makes every process compile the app again (~0.1 s).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def precompile() -> None:
    import compileall

    compileall.compile_dir(str(REPO / "app"), quiet=1)


def app_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "app", *args]


# --- figures ------------------------------------------------------------------------
@dataclass
class Figures:
    values: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def add(self, name: str, value: float) -> None:
        self.values[name] = value

    def target(self, name: str) -> tuple[str, float] | None:
        if name in TARGETS:
            return TARGETS[name]
        return RSS_TARGET if name.endswith("_rss_mib") else None

    def line(self, name: str) -> str:
        value = self.values[name]
        text = f"{value:.3f}" if isinstance(value, float) else str(value)
        tgt = self.target(name)
        note = f"   (target {tgt[0]} {_num(tgt[1])})" if tgt else ""
        return f"{name:<36} {text:>14}{note}"

    def print_text(self) -> None:
        for name in self.values:
            print(self.line(name))
        for f in self.failures:
            print(f"FAILED: {f}")

    def print_json(self, params: dict[str, object]) -> None:
        targets = {n: list(t) for n in self.values if (t := self.target(n))}
        json.dump({"params": params, "figures": self.values, "targets": targets,
                   "failures": self.failures}, sys.stdout, indent=2)
        sys.stdout.write("\n")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) >= 1000 else f"{x:g}"


# --- processes ----------------------------------------------------------------------
@dataclass
class ProcResult:
    returncode: int
    wall_s: float
    maxrss_mib: float
    stderr: str
    cpu_s: float = 0.0  # user + system time of the process (and its threads)
    peer_cpu_s: float = 0.0  # what run node A used meanwhile (`Ctx.sync`)

    def check(self, what: str) -> None:
        if self.returncode != 0:
            raise BenchFailure(f"{what} exited {self.returncode}; stderr:\n{self.stderr}")


def run_measured(cmd: list[str], timeout: float) -> ProcResult:
    """Run cmd to completion; wall time, CPU time and this child's own peak RSS (VmHWM).

    The disk's write-back of whatever ran before is done first (`os.sync`): else a
    run pays for the one before it (rsync after a first sync took 14 s or 33 s as
    the sync's dirty pages were still being written or not).
    """
    os.sync()
    with tempfile.TemporaryFile("w+") as err:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=app_env())
        peak = PeakRss(proc.pid)
        pidfd = os.pidfd_open(proc.pid)  # a kill after the reap cannot hit a reused pid
        killer = threading.Timer(timeout, _kill_quietly, args=(pidfd,))
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
            killer.join()
            os.close(pidfd)
        wall = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not reap it again
        err.seek(0)
        return ProcResult(proc.returncode, wall, peak.stop_mib(), err.read(),
                          usage.ru_utime + usage.ru_stime)


def _kill_quietly(pidfd: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)


def sync_cmd(folder: Path, config: Path, peer: str, timeout: float,
             *extra: str) -> list[str]:
    return app_cmd("sync", "--folder", str(folder), "--config-dir", str(config),
                   "--no-discovery", "--secret", SECRET, "--name", "B", "-v",
                   "--timeout", str(timeout), "--peer", peer, *extra)


class RunNode:
    """A `p2psync run` node on 127.0.0.1 whose stderr lines are kept with timestamps."""

    def __init__(self, folder: Path, config: Path, *extra: str, name: str = "A") -> None:
        self.started = time.monotonic()
        self.name = name
        self.proc = subprocess.Popen(
            app_cmd("run", "--folder", str(folder), "--config-dir", str(config),
                    "--listen", "127.0.0.1:0", "--no-discovery", "--secret", SECRET,
                    "--name", name, "-v", *extra),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=app_env())
        self.lines: list[tuple[float, str]] = []
        self.next_line = 0  # after the line the last wait_for matched
        threading.Thread(target=self._pump, daemon=True).start()
        self.port = 0

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def log_text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def wait_for(self, pattern: str, after: int = 0, timeout: float = 120.0
                 ) -> tuple[float, re.Match[str]]:
        """(time the first matching line from index `after` on was read, its match)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = after
        while time.monotonic() < deadline:
            while seen < len(self.lines):
                at, line = self.lines[seen]
                seen += 1
                if m := rx.search(line):
                    self.next_line = seen  # where a wait for the next such line starts
                    return at, m
            if self.proc.poll() is not None:
                raise BenchFailure(f"run node A exited {self.proc.returncode}; log:\n"
                                   f"{self.log_text()}")
            time.sleep(0.01)
        raise BenchFailure(f"A never logged {pattern!r} within {timeout:g} s; log:\n"
                           f"{self.log_text()}")

    def wait_ready(self, timeout: float) -> float:
        """Wait for "listening on" (logged after the startup scan); seconds since start."""
        at, m = self.wait_for(r"listening on [\d.]+:(\d+)", timeout=timeout)
        self.port = int(m.group(1))
        return at - self.started

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cpu_s(self) -> float:
        """User + system time A has used so far (/proc/PID/stat, all its threads)."""
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            raise BenchFailure("no /proc/PID/stat of A") from None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def vmhwm_mib(self) -> float:
        kib = vmhwm_kib(self.proc.pid)
        if kib is None:
            raise BenchFailure("no VmHWM in /proc/PID/status of A")
        return kib / 1024

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        time.sleep(0.1)  # the pump reads the last lines
        keep_log(f"run node {self.name}", self.log_text())

    def loop_lag(self) -> tuple[float, int] | None:
        """(worst wake-up delay in ms, stalls over 100 ms) from the summary A logs at stop."""
        return loop_lag(self.log_text())


# --- data ---------------------------------------------------------------------------
def populate_small(root: Path, count: int, rng: random.Random) -> int:
    """count files of 1..32 KiB random bytes spread over ~100 subdirs; total bytes."""
    dirs = [root / f"d{i:03d}" for i in range(SMALL_DIRS)]
    for d in dirs:
        d.mkdir(parents=True)
    total = 0
    for i in range(count):
        size = rng.randint(1, SMALL_MAX)
        (rng.choice(dirs) / f"f{i:05d}.bin").write_bytes(os.urandom(size))
        total += size
    return total


def write_big(path: Path, mib: int) -> float:
    """Write mib MiB of random bytes; returns the seconds spent in write() alone."""
    spent = 0.0
    with path.open("wb") as f:
        for _ in range(0, mib * MIB, CHUNK):
            chunk = os.urandom(CHUNK)
            start = time.monotonic()
            f.write(chunk)
            spent += time.monotonic() - start
    return spent


def overwrite(path: Path, offset: int, size: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(os.urandom(size))


def hash_file(path: Path) -> bytes:
    h = blake3.blake3(max_threads=blake3.blake3.AUTO)
    with path.open("rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.digest()


def walk_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d != ".p2psync"]
        for name in filenames:
            yield Path(dirpath, name)


def count_entries(root: Path) -> int:
    """Files and directories below root (not root itself, not .p2psync/): index entries."""
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d != ".p2psync"]
        n += len(dirnames) + len(filenames)
    return n


def tree_digest(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): hash_file(p) for p in walk_files(root)}


def verify_same_tree(a: Path, b: Path) -> None:
    da, db = tree_digest(a), tree_digest(b)
    if da == db:
        return
    missing = sorted(set(da) - set(db))
    extra = sorted(set(db) - set(da))
    differ = sorted(k for k in set(da) & set(db) if da[k] != db[k])
    raise BenchFailure(f"B differs from A: {len(missing)} missing (e.g. {missing[:3]}), "
                       f"{len(extra)} extra (e.g. {extra[:3]}), "
                       f"{len(differ)} with other content (e.g. {differ[:3]})")


def verify_same_file(a: Path, b: Path) -> None:
    if not b.exists():
        raise BenchFailure(f"B has no {b.name}")
    if hash_file(a) != hash_file(b):
        raise BenchFailure(f"{b.name} on B differs from A ({b.stat().st_size} vs "
                           f"{a.stat().st_size} bytes)")


# --- log parsing --------------------------------------------------------------------
TRAFFIC_RX = re.compile(r"traffic with .*: (\d+) block bytes received, (\d+) bytes sent")
PULLED_RX = re.compile(r"pulled (\d+) change\(s\) in [\d.]+ s \((\d+) bytes fetched, "
                       r"(\d+) reused\)")


LOOP_RX = re.compile(r"event loop: worst wake-up delay (\d+) ms, (\d+) over")


def loop_lag(text: str) -> tuple[float, int] | None:
    """(worst wake-up delay in ms, stalls) from a node's stop summary (logged with -v)."""
    found = LOOP_RX.findall(text)
    return (float(found[-1][0]), int(found[-1][1])) if found else None


def add_loop_figures(fig: Figures, prefix: str, side: str, text: str) -> None:
    lag = loop_lag(text)
    if lag is not None:
        fig.add(f"{prefix}.{side}_loop_worst_ms", lag[0])
        fig.add(f"{prefix}.{side}_loop_stalls", lag[1])


def traffic(stderr: str) -> tuple[int, int]:
    """(block bytes received, bytes sent) summed over the sync's traffic lines."""
    found = TRAFFIC_RX.findall(stderr)
    if not found:
        raise BenchFailure(f"no 'traffic with' line in the sync's stderr:\n{stderr}")
    return sum(int(r) for r, _ in found), sum(int(s) for _, s in found)


def pulled(stderr: str) -> tuple[int, int, int]:
    """(changes, bytes fetched, bytes reused) summed over the sync's "pulled" lines."""
    found = PULLED_RX.findall(stderr)
    return (sum(int(c) for c, _, _ in found), sum(int(f) for _, f, _ in found),
            sum(int(r) for _, _, r in found))


# --- rsync reference (--compare) --------------------------------------------------------
class RsyncDaemon:
    """`rsync --daemon` on 127.0.0.1 serving one folder as module `a`: a loopback reference.

    Run right after p2psync's own sync of the same data, so both meet the same disk
    and page-cache conditions (on these VMs they swing widely from minute to minute).
    """

    def __init__(self, folder: Path, workdir: Path) -> None:
        self.port = _free_port()
        conf = workdir / "rsyncd.conf"
        conf.write_text(f"use chroot = no\n[a]\n  path = {folder}\n  read only = yes\n"
                        "  uid = root\n  gid = root\n  exclude = .p2psync/\n")
        self.proc = subprocess.Popen(
            ["rsync", "--daemon", "--no-detach", f"--port={self.port}",
             "--address=127.0.0.1", f"--config={conf}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _port_open(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise BenchFailure("rsync --daemon did not start")
            time.sleep(0.05)

    def copy_to(self, dest: Path, *extra: str) -> ProcResult:
        res = run_measured(["rsync", "-a", *extra, f"rsync://127.0.0.1:{self.port}/a/",
                            f"{dest}/"], 600)
        res.check("rsync")
        return res

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def rsync_reference(ctx: Ctx, folder: Path, name: str, *extra: str) -> ProcResult | None:
    """Time rsync over loopback from folder into a fresh dir; None without --compare."""
    if not ctx.compare:
        return None
    dest = ctx.workdir / f"{name}-rsync"
    shutil.rmtree(dest, ignore_errors=True)  # a copy of an earlier run would make it a no-op
    daemon = RsyncDaemon(folder, ctx.workdir)
    try:
        log(f"rsync reference: {name}")
        return daemon.copy_to(dest, *extra)
    finally:
        daemon.stop()


# --- scenarios ----------------------------------------------------------------------
@dataclass
class Ctx:
    workdir: Path
    files: int
    big_mib: int
    timeout: float
    figures: Figures
    compare: bool = False
    runs: int = 1  # first syncs of the big file (each beside an rsync with --compare)
    tiny: int = 100_000
    million: int = 1_000_000

    def fresh(self, name: str) -> tuple[Path, Path, Path, Path]:
        """Folder and config dir of A and of B, new and empty, under the workdir."""
        base = self.workdir / name
        dirs = tuple(base / n for n in ("a", "a-config", "b", "b-config"))
        for d in dirs:
            d.mkdir(parents=True)
        return dirs  # type: ignore[return-value]

    def sync(self, b: Path, b_cfg: Path, node: RunNode, what: str) -> ProcResult:
        before = node.cpu_s()
        res = run_measured(sync_cmd(b, b_cfg, node.address, self.timeout),
                           self.timeout + 60)
        res.peer_cpu_s = node.cpu_s() - before
        keep_log(f"sync {what}", res.stderr)
        res.check(what)
        return res


def add_sync_figures(fig: Figures, prefix: str, res: ProcResult) -> None:
    received, sent = traffic(res.stderr)
    fig.add(f"{prefix}.sync_rss_mib", res.maxrss_mib)
    # Wall time over CPU time: whether a side waited or worked (two cores: a wall
    # close to B's CPU means B is the bound, and only less work on B makes it faster).
    fig.add(f"{prefix}.sync_cpu_s", res.cpu_s)
    fig.add(f"{prefix}.a_cpu_s", res.peer_cpu_s)
    add_loop_figures(fig, prefix, "sync", res.stderr)
    fig.add(f"{prefix}.block_bytes_received", received)
    fig.add(f"{prefix}.bytes_sent", sent)


def small_group(ctx: Ctx, want: set[str]) -> None:
    fig = ctx.figures
    a, a_cfg, b, b_cfg = ctx.fresh("small")
    log(f"writing {ctx.files} small files")
    total = populate_small(a, ctx.files, random.Random(1))
    fig.add("small_files.total_mib", total / MIB)
    node = RunNode(a, a_cfg)
    try:
        fig.add("small_files.a_scan_s", node.wait_ready(ctx.timeout))
        log("A ready; first sync")
        res = ctx.sync(b, b_cfg, node, "first sync of the small files")
        fig.add("small_files.first_sync_s", res.wall_s)
        add_sync_figures(fig, "small_files", res)
        fig.add("small_files.a_rss_mib", node.vmhwm_mib())
        verify_same_tree(a, b)
        if ref := rsync_reference(ctx, a, "small"):
            fig.add("small_files.rsync_s", ref.wall_s)
            fig.add("small_files.vs_rsync", res.wall_s / ref.wall_s)
        if ref := rsync_reference(ctx, a, "small", "--fsync"):
            fig.add("small_files.rsync_fsync_s", ref.wall_s)
            fig.add("small_files.vs_rsync_fsync", res.wall_s / ref.wall_s)
        if "small_noop" in want:
            small_noop(ctx, node, b, b_cfg)
        if "small_run" in want:
            small_run(ctx, node, a)
    finally:
        node.stop()


def noop_syncs(ctx: Ctx, node: RunNode, b: Path, b_cfg: Path, prefix: str, what: str
               ) -> list[ProcResult]:
    """NOOP_RUNS syncs of B with nothing to do, their figures added under `prefix`."""
    log(f"{what} x{NOOP_RUNS}")
    runs = [ctx.sync(b, b_cfg, node, what) for _ in range(NOOP_RUNS)]
    add_noop_figures(ctx.figures, prefix, runs)
    return runs


def add_noop_figures(fig: Figures, prefix: str, runs: list[ProcResult]) -> None:
    """The median, min and max wall time of no-op syncs and their largest peak RSS."""
    walls = [r.wall_s for r in runs]
    fig.add(f"{prefix}.sync_s", statistics.median(walls))
    fig.add(f"{prefix}.sync_s_min", min(walls))
    fig.add(f"{prefix}.sync_s_max", max(walls))
    fig.add(f"{prefix}.sync_rss_mib", max(r.maxrss_mib for r in runs))


def add_worst_loop_figures(fig: Figures, prefix: str, runs: list[ProcResult]) -> None:
    """The loop figures of the run whose event loop was held up the longest."""
    add_loop_figures(fig, prefix, "sync",
                     max((r.stderr for r in runs), key=lambda t: (loop_lag(t) or (0, 0))[0]))


def small_noop(ctx: Ctx, node: RunNode, b: Path, b_cfg: Path) -> None:
    fig = ctx.figures
    runs = noop_syncs(ctx, node, b, b_cfg, "small_noop", "no-op sync")
    received, sent = traffic(runs[-1].stderr)
    fig.add("small_noop.block_bytes_received", received)
    fig.add("small_noop.bytes_sent", sent)
    fig.add("small_noop.startup_floor_s", startup_floor())
    fig.add("small_noop.a_rss_mib", node.vmhwm_mib())


def small_run(ctx: Ctx, node: RunNode, a: Path) -> None:
    """A `run` node C (watching its folder, as the desktop app does) joins A."""
    fig = ctx.figures
    c, c_cfg = ctx.workdir / "small-run", ctx.workdir / "small-run-config"
    c.mkdir()
    log("a run node joins A")
    joiner = RunNode(c, c_cfg, "--peer", node.address, name="C")
    try:
        want = count_entries(a)
        deadline = time.monotonic() + ctx.timeout
        while (done := _pulled_by(joiner)) is None or done[0] < want:
            if time.monotonic() > deadline or joiner.proc.poll() is not None:
                raise BenchFailure(f"run node C did not get all {want} entries; log:\n"
                                   f"{joiner.log_text()}")
            time.sleep(0.05)
        fig.add("small_run.all_files_s", done[1] - joiner.started)
        fig.add("small_run.rss_mib", joiner.vmhwm_mib())
        if "small_files.first_sync_s" in fig.values:
            fig.add("small_run.vs_sync",
                    fig.values["small_run.all_files_s"] / fig.values["small_files.first_sync_s"])
    finally:
        joiner.stop()
    verify_same_tree(a, c)


def _pulled_by(node: RunNode) -> tuple[int, float] | None:
    """(changes pulled so far, when the last "pulled" line was read) from node's log."""
    total, at = 0, None
    for when, line in list(node.lines):
        if m := PULLED_RX.search(line):
            total += int(m.group(1))
            at = when
    return None if at is None else (total, at)


def startup_floor() -> float:
    """Median wall time of `python -m app --version`: interpreter + CLI import only."""
    walls = [run_measured(app_cmd("--version"), 30).wall_s for _ in range(NOOP_RUNS)]
    return statistics.median(walls)


def big_group(ctx: Ctx, want: set[str]) -> None:
    fig = ctx.figures
    a, a_cfg, b, b_cfg = ctx.fresh("big")
    big = a / "big.bin"
    log(f"writing a {ctx.big_mib} MiB file")
    spent = write_big(big, ctx.big_mib)
    fig.add("big_file.local_write_mb_per_s", ctx.big_mib * MIB / 1e6 / max(spent, 1e-9))
    node = RunNode(a, a_cfg)
    try:
        fig.add("big_file.a_scan_s", node.wait_ready(ctx.timeout))
        walls, refs, durable = [], [], []
        for run in range(ctx.runs):
            if run:  # a new, empty B: the first sync again
                for d in (b, b_cfg):
                    shutil.rmtree(d)
                    d.mkdir()
            log(f"A ready; first sync of the big file ({run + 1} of {ctx.runs})")
            res = ctx.sync(b, b_cfg, node, "first sync of the big file")
            walls.append(res.wall_s)
            verify_same_file(big, b / big.name)
            if ref := rsync_reference(ctx, a, "big"):  # right after, on the same data
                refs.append(ref.wall_s)
            if ref := rsync_reference(ctx, a, "big", "--fsync"):
                durable.append(ref.wall_s)
        add_spread(fig, "big_file.first_sync_s", walls)
        fig.add("big_file.mb_per_s", ctx.big_mib * MIB / 1e6 / statistics.median(walls))
        add_sync_figures(fig, "big_file", res)
        fig.add("big_file.a_rss_mib", node.vmhwm_mib())
        if refs:
            add_spread(fig, "big_file.rsync_s", refs)
            fig.add("big_file.rsync_mb_per_s", ctx.big_mib * MIB / 1e6 / statistics.median(refs))
            add_spread(fig, "big_file.ratio_to_rsync",
                       [w / r for w, r in zip(walls, refs, strict=True)])
        if durable:
            add_spread(fig, "big_file.rsync_fsync_s", durable)
            add_spread(fig, "big_file.ratio_to_rsync_fsync",
                       [w / r for w, r in zip(walls, durable, strict=True)])
        if "big_edit" in want:
            big_edit(ctx, node, big, b, b_cfg)
        if "big_copy" in want:
            big_copy(ctx, node, big, b, b_cfg)
    finally:
        node.stop()


def add_spread(fig: Figures, name: str, values: list[float]) -> None:
    """The median as `name`; with more than one value, also `name_min` and `name_max`."""
    fig.add(name, statistics.median(values))
    if len(values) > 1:
        fig.add(f"{name}_min", min(values))
        fig.add(f"{name}_max", max(values))


def big_edit(ctx: Ctx, node: RunNode, big: Path, b: Path, b_cfg: Path) -> None:
    offset = min(EDIT_OFFSET_MIB, ctx.big_mib // 2) * MIB
    log(f"overwriting {EDIT_MIB} MiB at {offset // MIB} MiB; waiting for A's rescan")
    edited = time.monotonic()
    at = resync(ctx, node, b, b_cfg, "big_edit", "sync after the 1 MiB edit",
                lambda: overwrite(big, offset, EDIT_MIB * MIB))
    ctx.figures.add("big_edit.a_rescan_s", at - edited)
    ctx.figures.add("big_edit.a_rss_mib", node.vmhwm_mib())
    verify_same_file(big, b / big.name)


def big_copy(ctx: Ctx, node: RunNode, big: Path, b: Path, b_cfg: Path) -> None:
    """Every block of the copy is in B's own file: found, read, checked and written
    there, which must not hold B's event loop (a 512 MiB copy once held it 451 ms)."""
    copy = big.with_name("copy.bin")
    log("copying the big file on A; waiting for A's rescan")
    resync(ctx, node, b, b_cfg, "big_copy", "sync after the copy",
           lambda: shutil.copyfile(big, copy))
    verify_same_file(copy, b / copy.name)


def resync(ctx: Ctx, node: RunNode, b: Path, b_cfg: Path, prefix: str, what: str,
           change: Callable[[], object]) -> float:
    """One change made in A's folder, A's rescan of it awaited, B synced again: the
    sync's figures and B's bytes fetched and reused under `prefix`. Returns when A's
    scan line came (monotonic)."""
    fig = ctx.figures
    mark = len(node.lines)
    change()
    at, _ = node.wait_for(r"scan: 1 local change\(s\)", after=mark, timeout=ctx.timeout)
    res = ctx.sync(b, b_cfg, node, what)
    fig.add(f"{prefix}.sync_s", res.wall_s)
    add_sync_figures(fig, prefix, res)
    _, fetched, reused = pulled(res.stderr)
    fig.add(f"{prefix}.bytes_fetched", fetched)
    fig.add(f"{prefix}.bytes_reused", reused)
    return at


def sparse_group(ctx: Ctx, want: set[str]) -> None:
    """A 2 GiB disk image holding 2 MiB of data, in 16 pieces spread over it."""
    fig = ctx.figures
    a, a_cfg, b, b_cfg = ctx.fresh("sparse")
    image = a / "disk.img"
    with image.open("wb") as f:
        f.truncate(SPARSE_SIZE)
        for k in range(SPARSE_PIECES):
            f.seek(k * (SPARSE_SIZE // SPARSE_PIECES))
            f.write(os.urandom(SPARSE_DATA // SPARSE_PIECES))
    fig.add("sparse_file.size_mib", SPARSE_SIZE / MIB)
    fig.add("sparse_file.a_allocated_mib", allocated(image) / MIB)
    node = RunNode(a, a_cfg)
    try:
        fig.add("sparse_file.a_scan_s", node.wait_ready(ctx.timeout))
        log("A ready; first sync of the sparse file")
        res = ctx.sync(b, b_cfg, node, "first sync of the sparse file")
        fig.add("sparse_file.first_sync_s", res.wall_s)
        add_sync_figures(fig, "sparse_file", res)
        fig.add("sparse_file.b_allocated_mib", allocated(b / image.name) / MIB)
        verify_same_file(image, b / image.name)
        if ref := rsync_reference(ctx, a, "sparse", "--sparse"):
            fig.add("sparse_file.rsync_sparse_s", ref.wall_s)
            fig.add("sparse_file.rsync_allocated_mib",
                    allocated(ctx.workdir / "sparse-rsync" / image.name) / MIB)
    finally:
        node.stop()


def images_group(ctx: Ctx, want: set[str]) -> None:
    """IMAGES disk images of 2 GiB, each holding 64 KiB of data somewhere (a folder of
    VM images): a block list of 512 KiB per file, 100 MiB of them in all."""
    fig = ctx.figures
    a, a_cfg, b, b_cfg = ctx.fresh("images")
    rng = random.Random(3)
    where = {}
    for i in range(IMAGES):
        name = f"vm{i:03d}.img"
        where[name] = rng.randrange(SPARSE_SIZE // BLOCK) * BLOCK
        with (a / name).open("wb") as f:
            f.truncate(SPARSE_SIZE)
            f.seek(where[name])
            f.write(rng.randbytes(IMAGE_DATA))
    node = RunNode(a, a_cfg)
    try:
        fig.add("images.a_scan_s", node.wait_ready(ctx.timeout))
        log(f"A ready; first sync of {IMAGES} disk images")
        res = ctx.sync(b, b_cfg, node, "first sync of the disk images")
        fig.add("images.first_sync_s", res.wall_s)
        add_sync_figures(fig, "images", res)
        fig.add("images.a_rss_mib", node.vmhwm_mib())
        fig.add("images.b_allocated_mib", sum(allocated(p) for p in b.iterdir()) / MIB)
        for name, at in where.items():  # the data, where it is; the rest is holes
            if (b / name).stat().st_size != SPARSE_SIZE or \
                    _block_at(b / name, at) != _block_at(a / name, at):
                raise BenchFailure(f"{name} differs on B")
    finally:
        node.stop()
        add_loop_figures(fig, "images", "a", node.log_text())


def _block_at(path: Path, offset: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(BLOCK)


def allocated(path: Path) -> int:
    """Bytes the file takes on the disk (its holes take none)."""
    return path.stat().st_blocks * 512


# --- many tiny files: the tiny and million groups ---------------------------------------
def populate_tiny(root: Path, count: int, rng: random.Random) -> int:
    """count files of 50-200 random bytes, 100 per directory, all below TINY_TOP; bytes."""
    total = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    for d in range(-(-count // TINY_PER_DIR)):
        dpath = root / TINY_TOP / f"d{d:05d}"
        dpath.mkdir(parents=True)
        for i in range(d * TINY_PER_DIR, min(count, (d + 1) * TINY_PER_DIR)):
            data = rng.randbytes(rng.randint(TINY_MIN, TINY_MAX))
            fd = os.open(dpath / f"f{i:07d}.txt", flags, 0o644)
            os.write(fd, data)
            os.close(fd)
            total += len(data)
    return total


def index_bytes(config: Path) -> tuple[int, int]:
    """(bytes of pages in use, bytes on disk with the WAL) of the one index in config."""
    import sqlite3

    [db_path] = list((config / "index").glob("*.db"))
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        size = db.execute("PRAGMA page_size").fetchone()[0]
        used = db.execute("PRAGMA page_count").fetchone()[0] - \
            db.execute("PRAGMA freelist_count").fetchone()[0]
    finally:
        db.close()
    wal = Path(f"{db_path}-wal")
    return used * size, db_path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def add_index_figures(fig: Figures, prefix: str, side: str, config: Path, count: int) -> None:
    used, disk = index_bytes(config)
    name = "index" if side == "b" else f"{side}_index"
    fig.add(f"{prefix}.{name}_bytes_per_file", used / count)
    fig.add(f"{prefix}.{name}_disk_bytes_per_file", disk / count)


@dataclass
class StatusResult:
    first_byte_s: float
    wall_s: float
    maxrss_mib: float
    files: int


def measure_status(folder: Path, config: Path, timeout: float) -> StatusResult:
    """`status --json`: when its first byte comes, when it ends, its peak RSS; the shape
    of what it printed is checked (the contract's keys, one row per file)."""
    with tempfile.TemporaryFile("w+") as err:
        start = time.monotonic()
        proc = subprocess.Popen(app_cmd("status", "--folder", str(folder), "--config-dir",
                                        str(config), "--json"),
                                stdout=subprocess.PIPE, stderr=err, env=app_env())
        peak = PeakRss(proc.pid)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            assert proc.stdout is not None
            first = proc.stdout.read(1)
            first_at = time.monotonic()
            out = first + proc.stdout.read()
            _, status = os.waitpid(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise BenchFailure(f"status exited {proc.returncode}: {err.read()}")
    report = json.loads(out)
    if set(report) != {"folder", "device_id", "node", "files"}:
        raise BenchFailure(f"status --json printed keys {sorted(report)}")
    for row in report["files"][:1]:
        if not {"path", "size", "hash", "mtime", "state"} <= set(row):
            raise BenchFailure(f"status --json row {row}")
    return StatusResult(first_at - start, wall, peak.stop_mib(), len(report["files"]))


def count_files(root: Path) -> int:
    return sum(1 for _ in walk_files(root)) if root.exists() else 0


def many_group(ctx: Ctx, want: set[str], group: str, count: int) -> None:
    """tiny_* or million_*: count files of 50-200 bytes, 100 per directory."""
    fig = ctx.figures
    a, a_cfg, b, b_cfg = ctx.fresh(group)
    log(f"writing {count:,} tiny files")
    fig.add(f"{group}_files.total_mib", populate_tiny(a, count, random.Random(2)) / MIB)
    node = RunNode(a, a_cfg)
    try:
        fig.add(f"{group}_files.a_scan_s", node.wait_ready(ctx.timeout))
        log("A ready; first sync")
        res = ctx.sync(b, b_cfg, node, f"first sync of {count:,} tiny files")
        fig.add(f"{group}_files.first_sync_s", res.wall_s)
        add_sync_figures(fig, f"{group}_files", res)
        fig.add(f"{group}_files.a_rss_mib", node.vmhwm_mib())
        add_index_figures(fig, f"{group}_files", "b", b_cfg, count)
        add_index_figures(fig, f"{group}_files", "a", a_cfg, count)
        log("comparing the trees")
        verify_same_tree(a, b)
        if ref := rsync_reference(ctx, a, group):
            fig.add(f"{group}_files.rsync_s", ref.wall_s)
            fig.add(f"{group}_files.vs_rsync", res.wall_s / ref.wall_s)
        if f"{group}_noop" in want:
            many_noop(ctx, node, a, b, b_cfg, group)
        if f"{group}_status" in want:
            log("status --json on B")
            st = measure_status(b, b_cfg, ctx.timeout)
            fig.add(f"{group}_status.first_byte_s", st.first_byte_s)
            fig.add(f"{group}_status.wall_s", st.wall_s)
            fig.add(f"{group}_status.rss_mib", st.maxrss_mib)
            if st.files != count:
                raise BenchFailure(f"status --json listed {st.files} files, not {count}")
        if f"{group}_rename" in want:
            many_rename(ctx, node, a, b, b_cfg, group, count)
        if f"{group}_ignore" in want:
            many_ignore(ctx, node, a, b, b_cfg, group)
    finally:
        node.stop()
        add_loop_figures(fig, f"{group}_files", "a", node.log_text())


def many_noop(ctx: Ctx, node: RunNode, a: Path, b: Path, b_cfg: Path, group: str) -> None:
    """The no-op syncs, each followed by an rsync no-op into its own copy (with
    --compare): taken in turns, both meet the same minutes of a VM whose speed swings
    from one minute to the next (Caveats in bench/README.md), where five of one and
    then five of the other met different ones."""
    fig = ctx.figures
    daemon = RsyncDaemon(a, ctx.workdir) if ctx.compare else None
    runs: list[ProcResult] = []
    ref: list[float] = []
    try:
        log(f"no-op sync x{NOOP_RUNS}" + (", each followed by rsync's" if daemon else ""))
        for _ in range(NOOP_RUNS):
            runs.append(ctx.sync(b, b_cfg, node, "no-op sync"))
            if daemon is not None:
                ref.append(daemon.copy_to(ctx.workdir / f"{group}-rsync").wall_s)
    finally:
        if daemon is not None:
            daemon.stop()
    add_noop_figures(fig, f"{group}_noop", runs)
    add_worst_loop_figures(fig, f"{group}_noop", runs)
    fig.add(f"{group}_noop.a_rss_mib", node.vmhwm_mib())
    if ref:
        walls = [r.wall_s for r in runs]
        fig.add(f"{group}_noop.rsync_s", statistics.median(ref))
        fig.add(f"{group}_noop.vs_rsync", statistics.median(walls) / statistics.median(ref))


def many_ignore(ctx: Ctx, node: RunNode, a: Path, b: Path, b_cfg: Path, group: str) -> None:
    """The no-op under ignore rules: a survey matches them against what differs only
    (app/core/survey.py). The rules reach B by a sync first, and B's rescan under them."""
    fig = ctx.figures
    mark = len(node.lines)
    (a / ".p2psyncignore").write_text(IGNORE_RULES)
    node.wait_for(r"\.p2psyncignore changed", mark, ctx.timeout)
    ctx.sync(b, b_cfg, node, "sync of the ignore file")
    if not (b / ".p2psyncignore").is_file():
        raise BenchFailure("B did not get A's .p2psyncignore")
    runs = noop_syncs(ctx, node, b, b_cfg, f"{group}_ignore", "no-op sync under ignore rules")
    add_worst_loop_figures(fig, f"{group}_ignore", runs)


def many_rename(ctx: Ctx, node: RunNode, a: Path, b: Path, b_cfg: Path, group: str,
                count: int) -> None:
    """The directory holding every tiny file is renamed on A; B syncs the rename.

    B starts once A's scans have recorded the move of every file (a deletion and a new
    entry each): a smaller scan of A's before that (one run had one) started B's sync
    while A was still rescanning, and it measured A's rescan as much as B's sync.
    """
    fig = ctx.figures
    mark = len(node.lines)
    log("renaming the directory of every tiny file on A; waiting for A's rescan")
    renamed = time.monotonic()
    os.rename(a / TINY_TOP, a / f"{TINY_TOP}-renamed")
    recorded = 0
    while recorded < 2 * count:
        at, m = node.wait_for(r"scan: (\d+) local change\(s\)", after=mark,
                              timeout=max(1.0, ctx.timeout - (time.monotonic() - renamed)))
        recorded += int(m.group(1))
        mark = node.next_line
    fig.add(f"{group}_rename.a_rescan_s", at - renamed)
    res = ctx.sync(b, b_cfg, node, "sync of the renamed directory")
    fig.add(f"{group}_rename.sync_s", res.wall_s)
    add_sync_figures(fig, f"{group}_rename", res)
    _, fetched, reused = pulled(res.stderr)
    fig.add(f"{group}_rename.bytes_fetched", fetched)
    fig.add(f"{group}_rename.bytes_reused", reused)
    fig.add(f"{group}_rename.versions_files", count_files(b / ".p2psync" / "versions"))
    fig.add(f"{group}_rename.a_rss_mib", node.vmhwm_mib())
    verify_same_tree(a, b)


def tiny_group(ctx: Ctx, want: set[str]) -> None:
    many_group(ctx, want, "tiny", ctx.tiny)


def million_group(ctx: Ctx, want: set[str]) -> None:
    many_group(ctx, want, "million", ctx.million)


GROUPS: dict[str, Callable[[Ctx, set[str]], None]] = {
    "small_files": small_group,
    "big_file": big_group,
    "sparse_file": sparse_group,
    "images": images_group,
    "tiny_files": tiny_group,
    "million_files": million_group,
}


# --- main ---------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=10_000, help="small files (default 10000)")
    p.add_argument("--big-mib", type=int, default=1024, help="big file size (default 1024)")
    p.add_argument("--tiny", type=int, default=100_000,
                   help="files of 50-200 bytes in the tiny group (default 100000)")
    p.add_argument("--million", type=int, default=1_000_000,
                   help="files of 50-200 bytes in the million group (default 1000000)")
    p.add_argument("--only", type=scenario_list, default=set(DEFAULT_SCENARIOS),
                   help="comma-separated subset of: " + ", ".join(SCENARIOS))
    p.add_argument("--workdir", type=Path, help="parent of the temp dirs (default: $TMPDIR)")
    p.add_argument("--timeout", type=float, default=600.0, help="per sync / wait (s)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--keep", action="store_true", help="keep the temp dirs")
    p.add_argument("--logs", type=Path,
                   help="keep every process's stderr (-v) in this directory")
    p.add_argument("--runs", type=int, default=1,
                   help="first syncs of the big file, each on a new B (default 1)")
    p.add_argument("--compare", action="store_true",
                   help="also time rsync (daemon on 127.0.0.1) on the same data, right after")
    p.add_argument("--fresh-fs", action="store_true",
                   help="the groups of many files each on a new ext4 (a loop device; root)")
    return p.parse_args(argv)


def scenario_list(text: str) -> set[str]:
    names = {s.strip() for s in text.split(",") if s.strip()}
    bad = names - set(SCENARIOS)
    if bad:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {sorted(bad)}; "
                                         f"choose from {', '.join(SCENARIOS)}")
    return names | {NEEDS[n] for n in names if n in NEEDS}


def run_all(ctx: Ctx, want: set[str], fresh: bool = False) -> None:
    for group, fn in GROUPS.items():
        if group not in want:
            continue
        try:
            if fresh and group in FRESH_GROUPS:
                with fresh_fs(ctx.workdir, group) as mnt:
                    fn(replace(ctx, workdir=mnt), want)
            else:
                fn(ctx, want)
        except BenchFailure as e:
            ctx.figures.failures.append(f"{group}: {e}")
            log(f"{group} FAILED: {e}")


FRESH_FS_BYTES = 64 * 1024**3  # sparse: the image takes what the group writes
# The groups of many files. Not the big and sparse files: one file each, which the inode
# allocator does not slow, and through a loop device O_DIRECT writes cost more than on
# the disk (a 1 GiB first sync took 2.1-2.5 s there against 1.8-2.1 s on the disk).
FRESH_GROUPS = {"small_files", "tiny_files", "million_files"}


@contextlib.contextmanager
def fresh_fs(parent: Path, name: str) -> Iterator[Path]:
    """A new, empty ext4 (journal-less, as this VM's root) mounted for one group.

    On a file system where many files were just deleted, ext4's inode allocator skips
    the recently freed inodes, one buffer lookup each, and creating a file costs about
    ten times more for minutes (see Caveats): rsync's first sync of 100,000 tiny files
    took 5.1 s in one run and 17-18 s in the next two. Each group on its own new file
    system meets none of that, and its folders go with the image, not by deleting
    millions of files. A loop device with direct I/O, so no page is cached twice.
    """
    image, mnt = parent / f"{name}.img", parent / name
    mnt.mkdir()
    with image.open("wb") as f:
        f.truncate(FRESH_FS_BYTES)
    try:
        _run_tool("mkfs.ext4", "-q", "-F", "-O", "^has_journal",
                  "-E", "lazy_itable_init=1,nodiscard", str(image))
        dev = _run_tool("losetup", "--direct-io=on", "--find", "--show", str(image))
        try:
            _run_tool("mount", "-o", "noinit_itable", dev, str(mnt))  # no zeroing meanwhile
            try:
                yield mnt
            finally:
                _run_tool("umount", str(mnt))
        finally:
            _run_tool("losetup", "--detach", dev)
            _wait_detached(dev)
    finally:
        image.unlink()


def _wait_detached(dev: str, timeout: float = 10.0) -> None:
    """A busy loop device (udev still probing it after the umount) is detached only when
    its last user lets go: `losetup --detach` returns before. Under load that took long
    enough for the next look to find it still attached (a CI run, 2026-12-02)."""
    backing = Path("/sys/block") / Path(dev).name / "loop" / "backing_file"
    deadline = time.monotonic() + timeout
    while backing.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _run_tool(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise BenchFailure(f"{' '.join(cmd)}: {done.stderr.strip() or done.returncode}")
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compare and shutil.which("rsync") is None:
        log("--compare needs rsync (apt-get install rsync)")
        return 2
    if args.fresh_fs and (os.geteuid() != 0 or not all(
            shutil.which(t) for t in ("mkfs.ext4", "losetup", "mount", "umount"))):
        log("--fresh-fs needs root, mkfs.ext4 (e2fsprogs), losetup and mount (mount)")
        return 2
    global LOG_DIR
    if args.logs:
        LOG_DIR = args.logs
        LOG_DIR.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="p2psync-bench-", dir=args.workdir))
    precompile()
    figures = Figures()
    ctx = Ctx(workdir, args.files, args.big_mib, args.timeout, figures, args.compare,
              max(args.runs, 1), args.tiny, args.million)
    figures.add("env.cpus", os.cpu_count() or 0)
    figures.add("env.loadavg_1m", os.getloadavg()[0])
    try:
        figures.add("env.fresh_fs", int(args.fresh_fs))
        run_all(ctx, args.only, args.fresh_fs)
        figures.add("env.loadavg_1m_end", os.getloadavg()[0])
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        figures.print_json({"files": args.files, "big_mib": args.big_mib, "tiny": args.tiny,
                            "million": args.million,
                            "scenarios": sorted(args.only), "python": sys.version.split()[0]})
    else:
        figures.print_text()
    return 1 if figures.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
