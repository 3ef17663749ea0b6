"""A `run` node whose stop hangs says where: every thread's stack, on its stderr."""

from __future__ import annotations

import signal
import subprocess
import sys

from tests.procs import SECRET, env

# The real `run` command, with SLOW_STOP_S shortened and the engine's stop made to block
# its thread (as a join that never ends would) for longer than that.
HANGING_RUN = """
import sys, time
import app.cli.headless as headless
import app.engine.node as node
headless.SLOW_STOP_S = 0.5
real_stop = node.Node.stop
async def stuck_stop(self):
    time.sleep(3)  # blocks the loop's thread, GIL released: the C timer must still fire
    await real_stop(self)
node.Node.stop = stuck_stop
from app.cli.main import main
sys.argv = ["p2psync", *sys.argv[1:]]
raise SystemExit(main())
"""


def test_a_stop_that_hangs_prints_every_threads_stack(tmp_path):
    (tmp_path / "A").mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", HANGING_RUN, "run", "--folder", str(tmp_path / "A"),
         "--config-dir", str(tmp_path / "cfg"), "--listen", "127.0.0.1:0",
         "--secret", SECRET, "--no-discovery"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env())
    try:
        for line in proc.stderr:
            if "listening on" in line:
                break
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=30)[1]
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopping" in err
    assert "(most recent call first)" in err, err  # faulthandler's dump
    assert "stuck_stop" in err, err  # and it names where the stop waits
