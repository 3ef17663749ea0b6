"""A round of thousands of simple steps lets the event loop breathe between them.

A million-file directory renamed ends with 10,000 directories to remove: done one
after the other with no await that yields, the loop was blocked for 14 s and the
peer dropped the connection ("no answer"). Counted, not timed: a task that only
yields must get a turn between the steps.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from app.core import scanner
from app.core.ignore import Ignore
from app.core.index import Index
from app.core.model import Kind
from app.core.planner import DELETE, Action
from app.core.versions import bump
from app.engine.puller import Puller

ME = "AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"
PEER = "PEER000-0000000-0000000-0000000-0000000"


def test_removing_many_directories_yields_between_them(tmp_path):
    root = tmp_path / "folder"
    for i in range(300):
        (root / f"d{i:03}").mkdir(parents=True)
    with Index(tmp_path / "index.db", ME) as index:
        scanner.scan(root, index, Ignore(root))
        dirs = [e for e in index.all_local() if e.kind == Kind.DIR]
        assert len(dirs) == 300
        actions = [Action(DELETE, e.path, replace(e, deleted=True, modified_by=PEER,
                                                  version=bump(e.version, PEER)))
                   for e in dirs]

        async def main() -> tuple[int, int]:
            puller = Puller(root, index, asyncio.Lock(), dict, lambda rel: None,
                            lambda kind, data: None)
            turns = 0

            async def other_work() -> None:
                nonlocal turns
                while True:
                    turns += 1
                    await asyncio.sleep(0)

            task = asyncio.create_task(other_work())
            await asyncio.sleep(0)
            try:
                result = await puller.run_round(actions)
            finally:
                task.cancel()
                puller.close()
            return result.done, turns

        done, turns = asyncio.run(main())
    assert done == 300 and not any(root.iterdir())
    assert turns >= 150, f"other work ran {turns} times during 300 steps"
