"""A started node has loaded what its first handshake needs: imported on the event loop
at the first connection, spake2 and the key blocked it for 190 ms while a scan ran."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CODE = """
import asyncio, sys
from pathlib import Path
from app.engine.config import Config
from app.engine.node import Node, NodeOptions

async def main(root):
    node = Node(NodeOptions(folder=root / "A", config=Config(root / "cfg"), secret="k",
                            name="a"))
    before = "spake2" in sys.modules
    await node.start()
    try:
        print(before, "spake2" in sys.modules, node.identity._key is not None)
    finally:
        await node.stop()

asyncio.run(main(Path(sys.argv[1])))
"""


def test_a_started_node_has_loaded_what_a_handshake_needs(tmp_path):
    (tmp_path / "A").mkdir()
    r = subprocess.run([sys.executable, "-c", CODE, str(tmp_path)], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "True", "True"]
