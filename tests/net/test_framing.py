"""Framing: round trips, and every way a peer's bytes can be wrong."""

from __future__ import annotations

import asyncio
import struct

import msgpack
import pytest

from app.net.framing import MAX_FRAME, FrameError, encode_message, read_message, write_message


def read_from(data: bytes, *, eof: bool = True, max_size: int = MAX_FRAME) -> dict:
    """Feed `data` to a StreamReader and read one message (at most 2 s)."""

    async def go() -> dict:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        if eof:
            reader.feed_eof()
        return await asyncio.wait_for(read_message(reader, max_size), 2)

    return asyncio.run(go())


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def test_round_trip() -> None:
    msg = {"t": "index", "entries": [["a/b", 0, 3, b"\x00\xff", {"DEV": 2}, None, True]],
           "blob": b"x" * 100_000, "text": "héllo"}
    data = encode_message(msg)
    assert data[:4] == struct.pack(">I", len(data) - 4)
    assert read_from(data) == msg


def test_two_frames_back_to_back() -> None:
    async def go() -> list[dict]:
        reader = asyncio.StreamReader()
        reader.feed_data(encode_message({"t": "ping"}) + encode_message({"t": "pong", "n": 1}))
        reader.feed_eof()
        out = [await read_message(reader), await read_message(reader)]
        with pytest.raises(EOFError):
            await read_message(reader)
        return out

    assert asyncio.run(go()) == [{"t": "ping"}, {"t": "pong", "n": 1}]


def test_write_message_writes_and_drains() -> None:
    class Writer:
        def __init__(self) -> None:
            self.data, self.drained = b"", False

        def write(self, data: bytes) -> None:
            self.data += data

        async def drain(self) -> None:
            self.drained = True

    writer = Writer()
    asyncio.run(write_message(writer, {"t": "ping"}))  # type: ignore[arg-type]
    assert writer.drained and read_from(writer.data) == {"t": "ping"}


def test_oversized_length_rejected_before_body() -> None:
    # only the header arrives and the stream stays open: reading the body would hang
    with pytest.raises(FrameError, match=rf"^frame too large \({MAX_FRAME + 1} bytes\)$"):
        read_from(struct.pack(">I", MAX_FRAME + 1), eof=False)
    with pytest.raises(FrameError, match="too large"):
        read_from(struct.pack(">I", 0xFFFFFFFF), eof=False)


def test_custom_max_size() -> None:
    data = encode_message({"t": "x", "pad": b"." * 100})
    with pytest.raises(FrameError, match="too large"):
        read_from(data, max_size=50)
    assert read_from(data, max_size=len(data) - 4)["t"] == "x"


def test_encode_refuses_oversized() -> None:
    with pytest.raises(FrameError, match="too large"):
        encode_message({"t": "data", "b": b"\0" * MAX_FRAME})


@pytest.mark.parametrize(
    "body",
    [
        b"",  # empty frame
        b"\xc1",  # a byte msgpack never uses
        b"\x81\xa1t",  # truncated map
        msgpack.packb({"t": "a"}) + b"\x01",  # trailing data
        b"\xdb\xff\xff\xff\xff",  # str claiming 4 GiB
        b"\xdd\xff\xff\xff\xff",  # array claiming 4G items
        b"\x81\xa1t\xc4\x01",  # bin truncated
        b"\x81\xa1t\xa2\xff\xfe",  # invalid UTF-8 string
        msgpack.packb({1: "x", "t": "a"}),  # non-string map key
        b"\x91" * 5000 + b"\xc0",  # deep nesting
    ],
)
def test_garbage_is_malformed(body: bytes) -> None:
    with pytest.raises(FrameError, match="^malformed frame$"):
        read_from(frame(body))


@pytest.mark.parametrize("value", [[1, 2], "t", 7, None, b"t"])
def test_non_map_body(value) -> None:
    with pytest.raises(FrameError, match="not a map"):
        read_from(frame(msgpack.packb(value, use_bin_type=True)))


@pytest.mark.parametrize("msg", [{}, {"x": 1}, {"t": 1}, {"t": None}, {"t": b"hello"}])
def test_missing_or_non_string_t(msg: dict) -> None:
    with pytest.raises(FrameError, match='no string "t"'):
        read_from(frame(msgpack.packb(msg, use_bin_type=True)))


def test_clean_eof() -> None:
    with pytest.raises(EOFError):
        read_from(b"")


@pytest.mark.parametrize("cut", [1, 3, 5, 10])
def test_eof_mid_frame(cut: int) -> None:
    data = encode_message({"t": "hello", "pad": "x" * 20})
    with pytest.raises(FrameError, match="^connection closed mid-frame$"):
        read_from(data[:cut])
