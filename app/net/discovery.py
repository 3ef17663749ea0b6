"""LAN discovery: small UDP broadcasts that say "a device of share X is here".

An announcement carries only what a stranger may know: a share ID derived from the
share key (not the key, no file names), the device ID, its display name, its TCP
port and its election role. It is tagged with an HMAC keyed by the share key, so a
device of another share (or a stranger) can neither be joined nor forge roles.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import hmac
import logging
import os
import socket
import struct
from collections.abc import Callable

import msgpack

log = logging.getLogger(__name__)

MAGIC = "p2psync-announce"
TARGETS_ENV = "P2PSYNC_DISCOVERY_TARGETS"  # comma-separated broadcast addresses (tests)
_SIOCGIFBRDADDR = 0x8919
_SIOCGIFFLAGS = 0x8913
_IFF_BROADCAST = 0x2
_IFF_UP = 0x1


def share_keys(secret: str) -> tuple[bytes, bytes]:
    """(share ID announced in the clear, key that tags announcements)."""
    base = hashlib.sha256(b"p2psync share v1\0" + secret.encode()).digest()
    share_id = hmac.new(base, b"share-id", hashlib.sha256).digest()[:16]
    tag_key = hmac.new(base, b"announce-tag", hashlib.sha256).digest()
    return share_id, tag_key


def broadcast_targets() -> list[tuple[str, str]]:
    """(interface, broadcast address) of every IPv4 interface that is up and broadcasts."""
    override = os.environ.get(TARGETS_ENV)
    if override is not None:
        return [("env", a.strip()) for a in override.split(",") if a.strip()]
    out = [("lo", "127.255.255.255")]  # other devices on this same machine
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            req = struct.pack("256s", name.encode()[:15])
            try:
                flags = struct.unpack("H", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req)[16:18])[0]
                if not (flags & _IFF_UP and flags & _IFF_BROADCAST) or name == "lo":
                    continue
                addr = fcntl.ioctl(s.fileno(), _SIOCGIFBRDADDR, req)[20:24]
            except OSError:
                continue
            out.append((name, socket.inet_ntoa(addr)))
    return out


def encode(announcement: dict, tag_key: bytes) -> bytes:
    body = msgpack.packb(announcement, use_bin_type=True)
    return hmac.new(tag_key, body, hashlib.sha256).digest()[:16] + body


def decode(packet: bytes, share_id: bytes, tag_key: bytes) -> dict | None:
    """The announcement, or None for anything not of our share (silently)."""
    if len(packet) < 17 or len(packet) > 4096:
        return None
    tag, body = packet[:16], packet[16:]
    if not hmac.compare_digest(tag, hmac.new(tag_key, body, hashlib.sha256).digest()[:16]):
        return None
    try:
        msg = msgpack.unpackb(body, raw=False)
    except Exception:  # noqa: BLE001 - tagged garbage is still garbage
        return None
    if not (isinstance(msg, dict) and msg.get("magic") == MAGIC and msg.get("share") == share_id
            and isinstance(msg.get("device"), str) and isinstance(msg.get("port"), int)
            and isinstance(msg.get("role"), str) and isinstance(msg.get("server"), str)
            and isinstance(msg.get("name"), str)):
        return None
    return msg


class Discovery(asyncio.DatagramProtocol):
    def __init__(self, port: int, secret: str,
                 on_heard: Callable[[dict, str], None]) -> None:
        self.port = port
        self.share_id, self.tag_key = share_keys(secret)
        self.on_heard = on_heard
        self.transport: asyncio.DatagramTransport | None = None
        self.targets: list[tuple[str, str]] = []

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(AttributeError, OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        try:
            sock.bind(("0.0.0.0", self.port))
        except OSError as e:
            sock.close()
            raise OSError(e.errno, f"cannot use UDP port {self.port} for discovery: "
                          f"{e.strerror}") from e
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
        self.targets = broadcast_targets()
        log.debug("LAN discovery on UDP port %d via %s", self.port, self.where())

    def where(self) -> str:
        return ", ".join(f"{n} ({a})" for n, a in self.targets) or "no interface"

    def announce(self, announcement: dict) -> None:
        if self.transport is None:
            return
        packet = encode({"magic": MAGIC, "share": self.share_id, **announcement},
                        self.tag_key)
        for _, addr in self.targets:
            with contextlib.suppress(OSError):
                self.transport.sendto(packet, (addr, self.port))

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        msg = decode(data, self.share_id, self.tag_key)
        if msg is not None:
            self.on_heard(msg, addr[0])

    def error_received(self, exc: Exception) -> None:
        log.debug("discovery: %s", exc)

    def stop(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


__all__ = ["Discovery", "broadcast_targets", "share_keys"]
