"""bench_sync.py's big_copy: a copy of a big file on A is made on B from B's own file
(nothing fetched), and the figures say so, with B's loop lag beside them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_big_files_copy_is_made_from_the_file_here(tmp_path):
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_sync.py"), "--only", "big_copy",
         "--big-mib", "4", "--workdir", str(tmp_path), "--json", "--timeout", "120"],
        capture_output=True, text=True, timeout=300, check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    figures = json.loads(out.stdout)["figures"]
    assert figures["big_file.block_bytes_received"] == 4 * 1024 * 1024
    assert figures["big_copy.block_bytes_received"] == 0
    assert figures["big_copy.bytes_fetched"] == 0
    assert figures["big_copy.bytes_reused"] == 4 * 1024 * 1024
    assert "big_copy.sync_loop_worst_ms" in figures  # printed, not asserted (a timing)
