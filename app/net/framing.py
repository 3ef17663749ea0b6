"""Frames on the wire: a 4-byte big-endian length, then one msgpack map with a str "t".

Everything a peer sends passes through `read_message` first, so this is where
hostile input is bounded: the length is checked before the body is read, and the
unpacker may not allocate more than the body's own size.
"""

from __future__ import annotations

import asyncio
import struct

import msgpack

MAX_FRAME = 32 * 1024 * 1024
_HEADER = struct.Struct(">I")


class FrameError(Exception):
    """A peer broke the framing rules; str(e) is a short reason for the log."""


def encode_message(msg: dict) -> bytes:
    """One frame for `msg`. Refuses to build a frame no peer would accept."""
    header, body = encode_frame(msg)
    return header + body


def encode_frame(msg: dict) -> tuple[bytes, bytes]:
    """`msg`'s frame as its header and its body, not joined: a large body (a page of our
    index naming a huge file) is sent without a second copy of it (`FrameStream.write_frame`)."""
    body = msgpack.packb(msg, use_bin_type=True)
    if len(body) > MAX_FRAME:
        raise FrameError(f"frame too large ({len(body)} bytes)")
    return _HEADER.pack(len(body)), body


async def read_message(reader: asyncio.StreamReader, max_size: int = MAX_FRAME) -> dict:
    """Read one frame and return its map.

    Raises EOFError on a clean end of stream between frames (the peer hung up
    normally) and FrameError on anything else that is not a valid frame.
    """
    size = await _read_header(reader)
    if size > max_size:
        raise FrameError(f"frame too large ({size} bytes)")
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise FrameError("connection closed mid-frame") from None
    return decode_body(body)


async def _read_header(reader: asyncio.StreamReader) -> int:
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            raise EOFError("connection closed") from None
        raise FrameError("connection closed mid-frame") from None
    return _HEADER.unpack(header)[0]


def decode_body(body: bytes | bytearray) -> dict:
    """Unpack with limits tied to the body size, so garbage cannot blow memory.

    unpackb sets its max_str/bin/array/map/ext_len limits from len(body) (it has no
    max_buffer_size argument), so a 5-byte body cannot claim a 4 GiB string.
    """
    if not body:
        raise FrameError("malformed frame")
    try:
        msg = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception:  # msgpack raises many types (ValueError, TypeError, its own)
        raise FrameError("malformed frame") from None
    if not isinstance(msg, dict):
        raise FrameError("message is not a map")
    if not isinstance(msg.get("t"), str):
        raise FrameError('message has no string "t"')
    return msg


async def write_message(writer: asyncio.StreamWriter, msg: dict) -> None:
    """Send one frame and wait for the transport to take it (back-pressure)."""
    writer.write(encode_message(msg))
    await writer.drain()
