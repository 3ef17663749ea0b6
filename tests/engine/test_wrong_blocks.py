"""A peer that sent wrong bytes for a block is not asked for it again on that connection.

A round remembered its refusals only while it ran; the next round (any wake while the
peer stayed connected) asked the same peer for the same wrong bytes. The memory now
lasts as long as the connection, and only that long: a new connection of the same
device (it may have repaired its disk) is asked again. Over real sockets and links:
tests/integration/test_data_links.py and test_hostile_peer.py.
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
CONTENT = b"the real content of a small file\n"


class Conn:
    """A connection of PEER that answers every request with `answer`."""

    info = SimpleNamespace(name="peer")
    device_id = PEER
    resting = False

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def request_block(self, path: str, offset: int, size: int, h: bytes) -> asyncio.Future:
        self.asked.append(path)
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(self.answer)
        return fut


def test_wrong_bytes_are_not_asked_again_of_that_connection_but_of_a_new_one(tmp_path):
    root = tmp_path / "folder"
    root.mkdir()
    entry = file_entry("f.txt", CONTENT, PEER)
    liar = Conn(b"X" * len(CONTENT))  # the right size, the wrong bytes
    conns = {PEER: liar}

    def actions() -> list[Action]:
        return [Action(FETCH, "f.txt", entry, [PEER])]

    with Index(tmp_path / "index.db", ME) as index:
        async def main():
            puller = Puller(root, index, asyncio.Lock(), lambda: conns,
                            lambda rel: None, lambda kind, data: None)
            try:
                first = await puller.run_round(actions())
                asked_first = list(liar.asked)
                second = await puller.run_round(actions())
                asked_second = liar.asked[len(asked_first):]
                conns[PEER] = honest = Conn(CONTENT)  # the device connected again
                third = await puller.run_round(actions())
                return first, asked_first, second, asked_second, third, honest.asked
            finally:
                puller.close()

        first, asked_first, second, asked_second, third, asked_third = asyncio.run(main())

    assert asked_first, "the first round asks the peer"
    assert first.done == 0 and first.waiting == 1  # no other source: it waits
    assert asked_second == [], "the same connection was asked for the same wrong bytes"
    assert second.done == 0 and second.waiting == 1
    assert asked_third == ["f.txt"] and third.done == 1
    assert (root / "f.txt").read_bytes() == CONTENT
