"""Files whose only peer is resting wait; they neither fail nor get asked for.

A peer that left 4,000 block requests unanswered for 10 s (it was sending a million-file
index ahead of the answers) is not asked for 30 s. Its files were still planned, asked
of it, refused at once, retried one by one and logged, round after round: 300,000
debug lines and the loop blocked for over a second at a time, for 30 s.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from app.core.index import Index
from app.core.planner import FETCH, Action
from app.engine.puller import Puller
from tests.hostile import file_entry

ME = "AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"
PEER = "PEER000-0000000-0000000-0000000-0000000"


class Conn:
    """What the puller uses of a connection: whether it rests, and the requests."""

    info = SimpleNamespace(name="peer")
    device_id = PEER

    def __init__(self, resting: bool) -> None:
        self.resting = resting
        self.asked: list[str] = []

    def request_block(self, path: str, offset: int, size: int, h: bytes) -> asyncio.Future:
        self.asked.append(path)
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def run_round(tmp_path, conn: Conn, count: int):
    root = tmp_path / "folder"
    root.mkdir()
    actions = [Action(FETCH, f"f{i:03}.txt", file_entry(f"f{i:03}.txt", b"x%d" % i, PEER),
                      [PEER]) for i in range(count)]
    with Index(tmp_path / "index.db", ME) as index:
        async def main():
            puller = Puller(root, index, asyncio.Lock(), lambda: {PEER: conn},
                            lambda rel: None, lambda kind, data: None)
            try:
                return await puller.run_round(actions)
            finally:
                puller.close()

        return asyncio.run(main())


def test_files_of_a_resting_peer_wait_without_being_asked(tmp_path):
    conn = Conn(resting=True)
    result = run_round(tmp_path, conn, 50)
    assert result.waiting == 50 and result.done == 0 and not result.failed
    assert conn.asked == []


def test_a_peer_that_is_not_resting_is_asked(tmp_path):
    conn = Conn(resting=False)  # it answers "I have none of them"
    result = run_round(tmp_path, conn, 50)
    assert result.waiting == 50 and result.done == 0
    assert sorted(set(conn.asked)) == [f"f{i:03}.txt" for i in range(50)]
