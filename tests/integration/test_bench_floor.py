"""bench_floor.py writes what it times: every file arrives, whole, through the real
write path and (unless told not to) into a real index (issue #11's floor figures)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from app.core.index import Index

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_floor.py"
sys.path.insert(0, str(BENCH.parent))
import bench_floor  # noqa: E402


def _floor(tmp_path: Path, *args: str) -> dict:
    out = subprocess.run([sys.executable, str(BENCH), "--runs", "1", "--workdir",
                          str(tmp_path), "--json", *args],
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("mode", [[], ["--bookkept"], ["--no-index"]])
def test_the_floor_sync_delivers_every_file_whole(tmp_path, mode):
    figures = _floor(tmp_path, "--tiny", "250", *mode)
    assert figures["files"] == 250
    assert figures["all_same"] is True
    assert figures["wall_s"][0] > 0
    assert not list(tmp_path.iterdir())  # its folders are gone


def test_the_floor_receiver_records_each_file_and_what_the_sender_has(tmp_path):
    src, root = tmp_path / "a", tmp_path / "b"
    (src / "x" / "y").mkdir(parents=True)
    root.mkdir()
    for i in range(30):
        (src / "x" / ("y" if i % 2 else "") / f"f{i}").write_bytes(b"%d" % i * (i + 1))
    entries = bench_floor.entries_of(src)
    index = Index(tmp_path / "index.db", "B")
    try:
        receiver = bench_floor.Receiver(root, index, bookkept=False)
        receiver.take([[e.to_wire(), (src / e.path).read_bytes()] for e in entries])
        receiver.finish()
        assert receiver.failed == []
        for e in entries:
            assert (root / e.path).read_bytes() == (src / e.path).read_bytes()
            mine = index.get(e.path)
            assert mine is not None and mine.hash == e.hash and mine.version == {"A": e.seq}
        assert index.live_file_count() == 30
    finally:
        index.close()
    rows = sqlite3.connect(tmp_path / "index.db").execute(
        "SELECT count(*) FROM remote_same").fetchone()[0]
    assert rows == 30  # the sender holds exactly what we recorded: nothing to announce back
