"""Sync now: reach the given peers, then wait until both sides hold the same state.

Used by `p2psync sync` and by the GUI's "Sync now" button: connection failures
become the contract's errors (unreachable: exit 3 with each address and why;
refused: exit 4), and "done" means every connected peer said it has our whole
index and needs nothing more from us, and we need nothing from it. Deletions the
mass-deletion guard holds back count as settled: once all else agrees they end the
sync with HeldBackError (exit 6); a folder that looks unmounted ends it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from app.engine.node import ConnectFailure, Node
from app.engine.preview import PreviewNode
from app.errors import HeldBackError, IncompleteError, P2PError, RefusedError, UnreachableError

log = logging.getLogger(__name__)

MAX_DISCOVERY_DIALS = 8  # announced addresses a sync dials at once (the others queue)
MAX_DISCOVERY_ADDRESSES = 256  # announced addresses a sync tries at most (spoofed ones too)
DISCOVERY_DIAL_WAIT = 6.0  # how long dials to non-server devices may take, at most


async def sync_once(node: Node, addresses: list[tuple[str, int]], timeout: float) -> list[str]:
    """Returns the device IDs the folder is now in sync with."""
    devices = await _connect_all(node, addresses)
    await _wait_until_agreed(node, devices, timeout)
    for d in devices:
        conn = node.peers[d].conn
        log.info("traffic with %s: %d block bytes received, %d bytes sent",
                 conn.info.name, conn.bytes_in, conn.bytes_out)
    return devices


async def preview_once(node: PreviewNode, addresses: list[tuple[str, int]], timeout: float
                       ) -> list[str]:
    """`sync --dry-run`: reach the peers and wait until we hold their whole indexes (ours
    is not sent: see app/engine/preview.py). Returns the device IDs reached."""
    devices = await _connect_all(node, addresses)
    deadline = time.monotonic() + timeout
    while not node.exchanged(devices):
        if node.unmounted is not None:
            break  # nothing would be synced: the preview says so
        if node.first_scan_error is not None:
            raise node.first_scan_error
        if not any(d in node.peers for d in devices):
            raise P2PError("lost the connection to the peer before the preview was ready")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise P2PError(f"timed out after {timeout:g} s waiting for the peers' indexes")
        node.changed.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(node.changed.wait(), min(0.2, remaining))
    return [d for d in devices if d in node.peers]


async def discover_server(node: Node, port: int, wait: float = 3.0) -> list[tuple[str, int]]:
    """The address of this share's server, found by LAN discovery and proven by a handshake.

    An announcement is only a hint (anyone can replay one from any address): every
    address that claims to be the server is dialled as it is heard (a few at once),
    and the first whose
    authenticated hello says "server" is the answer; its connection stays open for
    `sync_once`. Addresses that claim another role are dialled only when no server
    proved itself within `wait` s; then every one that authenticated is returned.
    What cannot be proven is never returned, so a replayed packet of a departed
    server costs one failed dial, not the sync.
    """
    from app.net.discovery import Discovery

    tried: dict[tuple[str, int], asyncio.Task] = {}
    others: dict[tuple[str, int], None] = {}  # non-server claims, in the order heard
    proven: dict[tuple[str, int], str] = {}  # address -> role its hello gave
    why: dict[tuple[str, int], BaseException] = {}
    found = asyncio.Event()
    slots = asyncio.Semaphore(MAX_DISCOVERY_DIALS)

    async def prove(addr: tuple[str, int]) -> None:
        try:
            async with slots:
                if found.is_set():
                    return  # the server proved itself while this one queued
                peer = await node.connect(*addr)
        except (ConnectFailure, RefusedError) as e:
            why[addr] = e
            return
        extra = peer.conn.info.extra
        proven[addr] = extra.get("role", "")
        if proven[addr] == "server":
            found.set()
        server_addr = extra.get("server_addr")
        if (extra.get("role") == "client" and isinstance(server_addr, list)
                and len(server_addr) == 2 and isinstance(server_addr[1], int)):
            dial((str(server_addr[0]), server_addr[1]))  # its word, proven by the handshake

    def dial(addr: tuple[str, int]) -> None:
        if addr not in tried and len(tried) < MAX_DISCOVERY_ADDRESSES:
            tried[addr] = asyncio.create_task(prove(addr))

    def on_heard(msg: dict, ip: str) -> None:
        if msg["port"] and msg["device"] != node.device_id:
            addr = (ip, msg["port"])
            if msg["role"] == "server":
                dial(addr)
            elif len(others) < MAX_DISCOVERY_ADDRESSES:
                others[addr] = None

    disc = Discovery(port, node.opts.secret, on_heard)
    try:
        await disc.start()
    except OSError as e:
        raise UnreachableError(f"{e.strerror}; pass --peer HOST:PORT instead") from e
    try:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(found.wait(), wait)
        if not found.is_set():  # no server proved itself: any device of the share will do
            for addr in others:
                dial(addr)
            pending = [t for t in tried.values() if not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=DISCOVERY_DIAL_WAIT)
    finally:
        disc.stop()
    servers = [a for a, role in proven.items() if role == "server"]
    chosen = servers[:1] or list(proven)
    for addr, task in tried.items():
        if addr not in chosen:  # a late or surplus connection is not part of this sync
            task.add_done_callback(lambda _t, a=addr: _drop(node, a))
    if chosen:
        return chosen
    if why:
        if all(isinstance(e, RefusedError) for e in why.values()):
            raise RefusedError("refused: " + "; ".join(str(e) for e in why.values()))
        raise UnreachableError("announced on LAN discovery but could not be reached: "
                               + "; ".join(str(e) for e in why.values()))
    where = disc.where()
    raise UnreachableError(
        f"no device of this share answered LAN discovery on UDP port {port} via {where} "
        f"within {wait:g} s (is p2psync running there with the same key? is UDP port "
        f"{port} open in the firewall?); or pass --peer HOST:PORT")


def _drop(node: Node, addr: tuple[str, int]) -> None:
    """Close our connection to `addr`, if one was made: the sync goes on without it."""
    for peer in list(node.peers.values()):
        if peer.conn.outgoing and peer.conn.address == f"{addr[0]}:{addr[1]}":
            asyncio.create_task(peer.conn.close("not needed for this sync"))


async def _connect_all(node: Node, addresses: list[tuple[str, int]]) -> list[str]:
    results = await asyncio.gather(*(node.connect(h, p) for h, p in addresses),
                                   return_exceptions=True)
    connected, unreachable, refused = [], [], []
    for r in results:
        if isinstance(r, RefusedError):
            refused.append(str(r))
        elif isinstance(r, ConnectFailure):
            unreachable.append(str(r))
        elif isinstance(r, BaseException):
            unreachable.append(str(r) or type(r).__name__)
        else:
            connected.append(r.conn.device_id)
    if connected:
        for reason in unreachable + refused:  # the sync goes on; say what was missed
            log.warning("%s", reason)
        return connected
    if refused:
        raise RefusedError("refused: " + "; ".join(refused))
    raise UnreachableError("could not reach any peer: " + "; ".join(unreachable))


async def _wait_until_agreed(node: Node, devices: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if node.unmounted is not None:  # nothing can be synced into that folder
            raise HeldBackError(node.held_message(node.unmounted))
        if node.first_scan_error is not None:
            raise node.first_scan_error
        live = [d for d in devices if d in node.peers]
        if not live:
            raise P2PError("lost the connection before the folders agreed: " + "; ".join(
                f"{node.names.get(d, d[:7])}: {node.left_because.get(d) or 'gone'}"
                for d in devices))
        if all(node.in_sync_with(d) for d in live):
            await node.wait_idle()
            if all(node.in_sync_with(d) for d in live):
                held = node.held_back()
                if held is not None:
                    raise HeldBackError(node.held_message(held))
                names = ", ".join(node.peers[d].conn.info.name for d in live)
                problems = node.problems(live)
                if problems:
                    raise IncompleteError(f"in sync with {names}, except "
                                          f"{len(problems)} file(s) that could not be "
                                          "synced:\n" + "\n".join(problems))
                log.info("in sync with %s", names)
                return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            left = "; ".join(f"{node.peers[d].conn.info.name}: {node.progress_text(d)}"
                             for d in live)
            why = f" (here: {node.trouble})" if node.trouble else ""
            raise P2PError(f"sync timed out after {timeout:g} s: {left}{why}")
        node.changed.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(node.changed.wait(), min(0.2, remaining))
