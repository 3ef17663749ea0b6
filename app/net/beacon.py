"""Invitation beacons: "invitation number N is open here, at TCP port P", on the LAN.

While an invitation is open, the inviting node broadcasts one small UDP packet a second
to the discovery port; a joining device listens there for the number of its code. The
packet holds the number, the port, the inviting device's name and ID: nothing derived
from the code's words, which are the secret (app/net/pairwords.py). Like a discovery
announcement it is only a hint of where to dial: the pairing itself (TLS + SPAKE2 over
the code) proves who is there. Its magic differs from announcements', so discovery
neither takes it for a device of the share nor counts it as one of another key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

import msgpack

from app.core import platform
from app.net.discovery import MAX_PACKET, broadcast_targets
from app.net.peertext import shown_name

log = logging.getLogger(__name__)

MAGIC = b"p2psync-invite-1\n"
INTERVAL = 1.0  # one beacon a second
LISTEN = 3.0  # a joiner listens this long (about three beacons) before it gives up
SECOND_LOOK = 1.2  # after the first beacon heard: time for a second one of the same number


@dataclass(frozen=True)
class Heard:
    host: str
    port: int
    name: str
    device_id: str


def encode(nameplate: int, port: int, name: str, device_id: str) -> bytes:
    return MAGIC + msgpack.packb({"n": nameplate, "port": port, "name": name[:64],
                                  "device": device_id}, use_bin_type=True)


def decode(packet: bytes) -> dict | None:
    """The beacon's fields, or None for anything else (silently)."""
    if len(packet) > MAX_PACKET or not packet.startswith(MAGIC):
        return None
    try:
        msg = msgpack.unpackb(packet[len(MAGIC):], raw=False)
    except Exception:  # noqa: BLE001 - garbage is garbage
        return None
    if not (isinstance(msg, dict) and type(msg.get("n")) is int
            and type(msg.get("port")) is int and 0 < msg["port"] <= 65535
            and isinstance(msg.get("name"), str) and isinstance(msg.get("device"), str)):
        return None
    msg["name"] = shown_name(msg["name"])  # a stranger's words: printable and short
    return msg


async def send_while(is_open: Callable[[], bool], packet: bytes, port: int) -> None:
    """Broadcast `packet` to the discovery port once a second while `is_open()`."""
    targets = [addr for _, addr in broadcast_targets()]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setblocking(False)
        while is_open():
            for addr in targets:
                with contextlib.suppress(OSError):
                    sock.sendto(packet, (addr, port))
            await asyncio.sleep(INTERVAL)


async def find(nameplate: int, port: int, wait: float = LISTEN) -> list[Heard]:
    """The devices that beacon invitation `nameplate`: listens up to `wait` s, and a
    moment more after the first one, so two invitations of one number are both seen.
    OSError (one sentence) when the discovery port cannot be bound."""
    heard: dict[str, Heard] = {}
    first = asyncio.Event()

    class _Protocol(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            msg = decode(data)
            if msg is not None and msg["n"] == nameplate and len(heard) < 16:
                heard.setdefault(msg["device"], Heard(addr[0], msg["port"], msg["name"],
                                                      msg["device"]))
                first.set()

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    platform.reuse_port(sock)
    try:
        sock.bind(("0.0.0.0", port))
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"cannot listen on UDP port {port} for invitations: "
                      f"{e.strerror}") from e
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        _Protocol, sock=sock)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(first.wait(), wait)
        if first.is_set():
            await asyncio.sleep(SECOND_LOOK)
    finally:
        transport.close()
    return list(heard.values())


def where() -> str:
    """The broadcast addresses beacons go to, for messages."""
    return ", ".join(addr for _, addr in broadcast_targets()) or "no interface"


__all__ = ["Heard", "decode", "encode", "find", "send_while", "where"]
