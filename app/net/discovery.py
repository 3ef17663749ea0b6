"""LAN discovery: small UDP broadcasts that say "a device of share X may be here".

An announcement carries only what a stranger may know: a share ID, the device ID,
its display name, its TCP port and its election role. It is a *hint*: it makes a
device dial the sender to find out (docs/election.md), never a fact by itself. A
replayed or forged packet can cost at most one failed dial, rate-limited by
`app.net.hints`.

What a capture gives an eavesdropper: the share ID and the tag are both derived
from the share key through scrypt (memory-hard, ~0.2 s and 32 MiB per try here,
with a fixed versioned salt), so testing one guess of the key against a captured
packet costs one scrypt: a few guesses per second per core, instead of the
hundreds of thousands a plain HMAC allowed. A node pays that cost once per start,
in a worker thread while it listens (`start` does not wait for it); packets that
arrive meanwhile wait in a small queue and are checked once the keys are ready.

An announcement of another share is not dropped without a word: its clear share ID
differs from ours, which is all it takes to count "devices nearby with a different key"
(a mistyped key otherwise fails in silence); nothing about their key is learnt.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import ipaddress
import logging
import os
import socket
from collections import deque
from collections.abc import Callable

import msgpack

from app.core import platform

log = logging.getLogger(__name__)

MAGIC = "p2psync-announce-2"  # 2: keys from scrypt (1 was one HMAC of the key)
TARGETS_ENV = "P2PSYNC_DISCOVERY_TARGETS"  # comma-separated broadcast addresses (tests)
TAG_LEN = 16
MAX_PACKET = 4096
EARLY_PACKETS = 64  # packets kept while the keys are being derived (the rest are dropped)

# scrypt: N=2^15, r=8 (32 MiB per evaluation), p=2 (two passes): ~0.2 s here per guess.
# Changing any of these (or the salt) changes every share ID: bump MAGIC and SALT.
SALT = b"p2psync discovery v2: share key -> discovery keys"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 2
SCRYPT_MAXMEM = 64 * 1024 * 1024



@functools.lru_cache(maxsize=4)  # a process that restarts its node pays once per key
def share_keys(secret: str) -> tuple[bytes, bytes]:
    """(share ID announced in the clear, key that tags announcements); slow on purpose."""
    base = hashlib.scrypt(secret.encode("utf-8"), salt=SALT, n=SCRYPT_N, r=SCRYPT_R,
                          p=SCRYPT_P, maxmem=SCRYPT_MAXMEM, dklen=32)
    share_id = hmac.new(base, b"share-id", hashlib.sha256).digest()[:16]
    tag_key = hmac.new(base, b"announce-tag", hashlib.sha256).digest()
    return share_id, tag_key


def broadcast_targets() -> list[tuple[str, str]]:
    """(interface, broadcast address) of every IPv4 network this device is on.

    From `ifaddr` (getifaddrs on Linux and macOS, GetAdaptersAddresses on Windows), not
    from Linux ioctls. Point-to-point links (/31, /32) have no broadcast address; a
    down interface's broadcast simply fails to send (`announce` ignores that).
    """
    override = os.environ.get(TARGETS_ENV)
    if override is not None:
        return [("env", a.strip()) for a in override.split(",") if a.strip()]
    out = [("lo", "127.255.255.255")]  # other devices on this same machine
    for name, net in _ipv4_networks():
        if net.is_loopback or net.prefixlen >= 31:
            continue
        target = (name, str(net.broadcast_address))
        if target not in out:
            out.append(target)
    return out


def interface_ipv4s(name: str) -> set[str]:
    """The IPv4 addresses of the interface called name (none when there is no such one)."""
    return {ip for n, _, ip in _ipv4_addresses() if n == name}


def _ipv4_addresses() -> list[tuple[str, ipaddress.IPv4Network, str]]:
    """(interface, network, address) of every IPv4 address of this device."""
    import ifaddr  # here: importing it runs `ldconfig -p` (18 ms), which most CLI runs never need

    out = []
    try:
        adapters = ifaddr.get_adapters()
    except OSError as e:  # no interfaces to ask: loopback only
        log.debug("cannot list the network interfaces: %s", e)
        return []
    for adapter in adapters:
        for ip in adapter.ips:
            if isinstance(ip.ip, str):  # IPv6 addresses are tuples
                with contextlib.suppress(ValueError):
                    net = ipaddress.IPv4Network(f"{ip.ip}/{ip.network_prefix}", strict=False)
                    out.append((str(adapter.name), net, ip.ip))
    return out


def _ipv4_networks() -> list[tuple[str, ipaddress.IPv4Network]]:
    return [(name, net) for name, net, _ in _ipv4_addresses()]


def encode(announcement: dict, tag_key: bytes) -> bytes:
    body = msgpack.packb(announcement, use_bin_type=True)
    return hmac.new(tag_key, body, hashlib.sha256).digest()[:TAG_LEN] + body


def decode(packet: bytes, share_id: bytes, tag_key: bytes) -> dict | None:
    """The announcement, or None for anything not of our share (silently)."""
    if len(packet) <= TAG_LEN or len(packet) > MAX_PACKET:
        return None
    tag, body = packet[:TAG_LEN], packet[TAG_LEN:]
    if not hmac.compare_digest(tag, hmac.new(tag_key, body, hashlib.sha256).digest()[:TAG_LEN]):
        return None
    try:
        msg = msgpack.unpackb(body, raw=False)
    except Exception:  # noqa: BLE001 - tagged garbage is still garbage
        return None
    if not (isinstance(msg, dict) and msg.get("magic") == MAGIC and msg.get("share") == share_id
            and isinstance(msg.get("device"), str) and isinstance(msg.get("port"), int)
            and not isinstance(msg.get("port"), bool) and 0 <= msg["port"] <= 65535
            and isinstance(msg.get("role"), str) and isinstance(msg.get("server"), str)
            and isinstance(msg.get("name"), str)):
        return None
    return msg


def foreign_device(packet: bytes, share_id: bytes) -> str | None:
    """The device ID an announcement of *another* share claims, else None.

    Only the clear fields are read (the magic, the share ID, the device): a device of
    another key is told apart without learning anything of that key, and without any
    work per packet beyond parsing it. What it claims is unproven: a count to show, not
    a device to trust.
    """
    if len(packet) <= TAG_LEN or len(packet) > MAX_PACKET:
        return None
    try:
        msg = msgpack.unpackb(packet[TAG_LEN:], raw=False)
    except Exception:  # noqa: BLE001
        return None
    if not (isinstance(msg, dict) and msg.get("magic") == MAGIC
            and isinstance(msg.get("share"), bytes) and msg["share"] != share_id
            and isinstance(msg.get("device"), str) and 0 < len(msg["device"]) <= 64):
        return None
    return msg["device"]


class Discovery(asyncio.DatagramProtocol):
    """Sends our announcements and passes on the ones of our share, as hints."""

    def __init__(self, port: int, secret: str,
                 on_heard: Callable[[dict, str], None],
                 on_foreign: Callable[[str, str], None] | None = None) -> None:
        self.port = port
        self.secret = secret
        self.share_id = b""
        self.tag_key = b""
        self.on_heard = on_heard
        self.on_foreign = on_foreign  # (device, ip) of an announcement of another share
        self.transport: asyncio.DatagramTransport | None = None
        self.targets: list[tuple[str, str]] = []
        self.ready = asyncio.Event()  # set once the keys are derived
        self._early: deque[tuple[bytes, str]] = deque(maxlen=EARLY_PACKETS)
        self._derive: asyncio.Task | None = None

    async def start(self) -> None:
        """Bind the UDP port (OSError with one clear sentence); derive keys meanwhile."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        platform.reuse_port(sock)
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
        self._derive = asyncio.create_task(self._derive_keys())
        log.debug("LAN discovery on UDP port %d via %s", self.port, self.where())

    async def _derive_keys(self) -> None:
        # scrypt releases the GIL: the scan and the handshakes go on meanwhile
        self.share_id, self.tag_key = await asyncio.to_thread(share_keys, self.secret)
        self.ready.set()
        early, self._early = list(self._early), deque()
        for data, ip in early:
            self._check(data, ip)

    def where(self) -> str:
        return ", ".join(f"{n} ({a})" for n, a in self.targets) or "no interface"

    def announce(self, announcement: dict) -> None:
        if self.transport is None or not self.ready.is_set():
            return
        packet = encode({"magic": MAGIC, "share": self.share_id, **announcement},
                        self.tag_key)
        for _, addr in self.targets:
            with contextlib.suppress(OSError):
                self.transport.sendto(packet, (addr, self.port))

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.ready.is_set():
            if len(data) <= MAX_PACKET:
                self._early.append((data, addr[0]))
            return
        self._check(data, addr[0])

    def _check(self, data: bytes, ip: str) -> None:
        msg = decode(data, self.share_id, self.tag_key)
        if msg is not None:
            self.on_heard(msg, ip)
        elif self.on_foreign is not None:
            device = foreign_device(data, self.share_id)
            if device is not None:
                self.on_foreign(device, ip)

    def error_received(self, exc: Exception) -> None:
        log.debug("discovery: %s", exc)

    def stop(self) -> None:
        if self._derive is not None:
            self._derive.cancel()  # the thread finishes on its own; its result is dropped
            self._derive = None
        if self.transport is not None:
            self.transport.close()
            self.transport = None


__all__ = ["Discovery", "broadcast_targets", "foreign_device", "interface_ipv4s", "share_keys"]
