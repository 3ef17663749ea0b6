"""A frame larger than a piece (`stream.PIECE`) goes to TLS in pieces: whole and in
order at the other end, and never held as several whole copies on its way out.

A page of our index naming a 100 GiB file is one frame of 25 MiB (its block hashes).
Handed to asyncio's TLS layer whole, it was held joined to its header, as the records
read out of the memory BIO and in the transport's buffer at once: the sending node
peaked at 264 MB. Real TLS connections on loopback.
"""

from __future__ import annotations

import asyncio
import os
import tracemalloc

import pytest

from app.net import framing
from app.net.identity import load_or_create
from app.net.stream import PIECE
from tests.net.pairs import connected_tls_pair

MIB = 1024 * 1024


@pytest.fixture
def identity(tmp_path):
    return load_or_create(tmp_path / "id")


def test_a_frame_in_pieces_arrives_whole_and_before_what_was_sent_after_it(identity):
    async def main():
        us, them = await connected_tls_pair(identity)
        blob = os.urandom(5 * PIECE + 12345)
        us.send_frame_nowait(framing.encode_frame({"t": "index", "entries": [["big", blob]]}))
        us.send_nowait({"t": "state", "seq": 7})
        first = await asyncio.wait_for(them.stream.read_message(), 30)
        second = await asyncio.wait_for(them.stream.read_message(), 30)
        assert first == {"t": "index", "entries": [["big", blob]]}
        assert second == {"t": "state", "seq": 7}
        assert us.bytes_out == len(framing.encode_message(first)) + \
            len(framing.encode_message(second))
        await us.close()
        await them.close()

    asyncio.run(main())


def test_a_large_frame_is_held_about_once_while_it_is_sent(identity):
    """The other side reads nothing: every record stays in the sender's transport
    buffer. Besides that buffer (about the body's size) and the body, what the send
    allocates is a piece or two, not further copies of the whole."""
    async def main():
        us, them = await connected_tls_pair(identity)
        them.stream.transport.pause_reading()
        frame = framing.encode_frame({"t": "index", "entries": [["big", os.urandom(24 * MIB)]]})
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            us.send_frame_nowait(frame)
            peak = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
        size = len(frame[1])
        assert peak < size + 4 * MIB, f"{peak / MIB:.1f} MiB for a {size / MIB:.1f} MiB frame"
        us.stream.transport.abort()
        them.stream.transport.abort()

    asyncio.run(main())
