"""A fresh index opened by several processes at once gets one index_id (issue #9).

`run` and `status` of one folder open its database together; `_migrate` and
`_init_identity` read and write inside BEGIN IMMEDIATE transactions, so the second
process waits for the first's commit and then reads its index_id instead of inserting
its own (peers key our history by index_id: two would make them discard it).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from app.core.index import MIGRATIONS, Index

REPO = Path(__file__).resolve().parents[2]
DEV = "AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"


def test_processes_opening_a_fresh_index_at_once_agree_on_its_id(tmp_path: Path) -> None:
    """8 processes race to open each of 12 fresh databases (one race every 0.15 s)."""
    dbs = [tmp_path / "index" / f"f{i}.db" for i in range(12)]
    dbs[0].parent.mkdir()
    go = time.time() + 1.5  # every interpreter is up by then
    code = (
        "import sys, time; from app.core.index import Index\n"
        "for i, db in enumerate(sys.argv[2:]):\n"
        "    time.sleep(max(0.0, float(sys.argv[1]) + 0.15 * i - time.time()))\n"
        f"    ix = Index(db, {DEV!r}); print(ix.index_id.hex(), ix.schema_version); ix.close()"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(go), *map(str, dbs)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    for i, db in enumerate(dbs):
        seen = {out.splitlines()[i] for out, _ in outs}
        with Index(db, DEV) as ix:
            assert seen == {f"{ix.index_id.hex()} {len(MIGRATIONS)}"}
