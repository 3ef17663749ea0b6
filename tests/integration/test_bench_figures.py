"""bench_sync.py's own measurements: a side's CPU time beside the wall time, so that a
run tells which process was the bound (issue #11)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import bench_sync  # noqa: E402

BUSY = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"


def test_a_measured_process_reports_the_cpu_it_used_not_its_wall_time():
    busy = bench_sync.run_measured([sys.executable, "-c", BUSY], 30)
    idle = bench_sync.run_measured([sys.executable, "-c", "import time; time.sleep(0.3)"], 30)
    assert busy.returncode == 0 and idle.returncode == 0
    assert busy.cpu_s >= 0.3
    assert busy.cpu_s <= busy.wall_s + 0.05
    assert idle.wall_s >= 0.3
    assert idle.cpu_s < 0.25  # the interpreter's start, not the sleep


def test_a_run_nodes_cpu_is_read_from_its_own_stat_and_stops_growing_when_it_sleeps():
    proc = subprocess.Popen([sys.executable, "-c", BUSY + "\ntime.sleep(30)"])
    try:
        node = bench_sync.RunNode.__new__(bench_sync.RunNode)  # only its process is used
        node.proc = proc
        deadline = time.monotonic() + 10
        while node.cpu_s() < 0.3:
            assert time.monotonic() < deadline, "the busy child's CPU never reached 0.3 s"
            time.sleep(0.05)
        time.sleep(0.5)  # asleep now: its CPU time stays where the loop left it
        assert 0.3 <= node.cpu_s() < 0.6
    finally:
        proc.kill()
        proc.wait()
