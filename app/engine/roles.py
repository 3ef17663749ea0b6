"""Who is server: runs the election for a node and keeps its connections to match.

Only what an authenticated connection says counts: the hello and later `role`
messages of a peer that completed the handshake (TLS + SPAKE2 on the share key)
feed the pure `Election`. A LAN announcement (UDP) is a hint and nothing more:
it may make this node dial the address it came from (rate-limited by
`app.net.hints`), and what that connection proves is what counts. So a replayed
or forged announcement can change no role and hold up no sync; at worst it costs
one failed dial now and then (docs/election.md).

On the election's answer:

* a client keeps exactly one connection: to its server (dialled at the address the
  server gave over an authenticated connection); other links are closed once their
  role is known;
* a server keeps the links its clients make; it dials announced servers (and
  clients of other servers) to find out whether two groups must merge, and dials
  the `--peer` seeds now and then, so groups that cannot hear each other's
  broadcasts still merge;
* while electing, every announced address and seed is dialled to learn its role.

A server that must step down (a better-ranked server appeared) waits until its
puller is idle, so a role never changes in the middle of a transfer.

Addresses: a node tells (announcement, hello, `role`) the host it listens on when that
is one address rather than all of them, and LAN announcements go out only on the
interfaces that address is on. A peer is then dialled where it listens, never at the
source address of a connection it made (its outgoing port, or another interface of its
machine), which it may not accept connections on.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.aio import cancel_and_wait
from app.errors import RefusedError
from app.net.discovery import Discovery, interface_ipv4s
from app.net.election import (
    ANNOUNCE_INTERVAL,
    CLIENT,
    ELECTING,
    SERVER,
    Election,
    Heard,
    rank,
)
from app.net.hints import Address, Hint, HintBook

if TYPE_CHECKING:
    from app.engine.node import Node

log = logging.getLogger(__name__)

TICK = 0.1
FOREIGN_FOR = 5.0  # a device of another share counts as nearby this long after its last packet
FOREIGN_KEPT = 64  # devices of other shares remembered (the claims are unproven: bounded)
SEED_REDIAL = 5.0
STEP_DOWN_PATIENCE = 15.0  # longest a server waits for work in flight before stepping down
ONESHOT = "oneshot"  # role of a `sync` that joins for one exchange, outside the election
WILDCARD_HOSTS = ("", "0.0.0.0", "::")
FAILURES_KEPT = 64  # dial failures remembered for the window (seeds, servers, refusals)


@dataclass(frozen=True)
class DialFailure:
    """Why the last dial to one address failed, for the window and `status`."""

    text: str  # one sentence: the address and why
    refused: bool  # it answered, and refused our share key (or locked us out)
    at: float  # wall-clock time


def listening_host(listen_address: tuple[str, int] | None) -> str:
    """The one host a node listens on, or "" when it listens on every address."""
    if listen_address is None or listen_address[0] in WILDCARD_HOSTS:
        return ""
    return listen_address[0]


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _dial_host(announced: str, source: str) -> str:
    """Where to dial a device that says it listens on `announced` (and spoke from `source`).

    Its own word, when it names one address; the address it spoke from when it listens
    on all of them. A loopback address counts only from a device on this machine.
    """
    ip = _ip(announced) if announced not in WILDCARD_HOSTS else None
    if ip is None or (ip.is_loopback and not (_ip(source) or ip).is_loopback):
        return source
    return announced


def targets_for(targets: list[tuple[str, str]], host: str) -> list[tuple[str, str]]:
    """The broadcast targets (interface, address) through which `host` can be reached.

    Announcing on an interface the node does not listen on makes the devices there dial
    an address that refuses them: a loopback-only node announces on loopback only, a
    node bound to one LAN address only on that address's interface.
    """
    ip = _ip(host) if host else None
    if ip is None:
        return targets
    if ip.is_loopback:
        return [t for t in targets if (a := _ip(t[1])) is not None and a.is_loopback]
    lan = [t for t in targets if (a := _ip(t[1])) is not None and not a.is_loopback]
    mine = [t for t in lan if t[0] == "env" or host in interface_ipv4s(t[0])]
    return mine or lan


class Roles:
    def __init__(self, node: Node, *, discovery: bool, discovery_port: int,
                 seeds: list[tuple[str, int]]) -> None:
        self.node = node
        self.election = Election(node.device_id, time.monotonic(), me_since=time.time())
        self.discovery = (Discovery(discovery_port, node.opts.secret, self._heard_udp,
                                    self._heard_foreign) if discovery else None)
        self.seeds = list(seeds)
        self.hints = HintBook()  # addresses LAN announcements told us of, unverified
        self._dialing: set[tuple[str, int]] = set()
        self.dial_failures: dict[Address, DialFailure] = {}  # the last failure of each
        self._seed_dialed: dict[tuple[str, int], float] = {}
        self._step_down_since: float | None = None
        self._task: asyncio.Task | None = None
        # what we last told each connected peer over its link: (role, server, since)
        self._told: dict[str, tuple] = {}
        self._foreign: dict[str, float] = {}  # device of another share -> last heard
        self._foreign_said = 0

    # --- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        if self.discovery is not None:
            try:
                await self.discovery.start()
                self.discovery.targets = targets_for(
                    self.discovery.targets, listening_host(self.node.listen_address))
                log.info("LAN discovery on UDP port %d via %s", self.discovery.port,
                         self.discovery.where())
            except OSError as e:
                log.warning("%s; LAN discovery is off (use --peer)", e.strerror or e)
                self.discovery = None
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        if self.discovery is not None:
            self.discovery.stop()

    @property
    def role(self) -> str:
        return self.election.role

    def announcement(self) -> dict:
        e = self.election
        addr = e.server_address() if e.role == CLIENT else None
        return {"device": self.node.device_id, "name": self.node.opts.name,
                "port": self.node.listen_address[1] if self.node.listen_address else 0,
                "host": listening_host(self.node.listen_address),
                "role": e.role, "server": e.server if e.role == CLIENT else "",
                "since": e.me_since,
                "server_addr": list(addr) if addr else []}

    # --- what we hear ----------------------------------------------------------------
    def _heard_udp(self, msg: dict, ip: str) -> None:
        """A LAN announcement: a hint of where to dial, never a fact about anyone."""
        role = msg["role"]
        if msg["device"] == self.node.device_id or not msg["port"] \
                or role not in (ELECTING, SERVER, CLIENT):
            return
        host = msg.get("host")
        ip = _dial_host(host, ip) if isinstance(host, str) else ip
        self.hints.heard((ip, msg["port"]), msg["device"], role, msg["server"],
                         time.monotonic())

    def _heard_foreign(self, device: str, ip: str) -> None:
        """An announcement of another share (another key): counted, never dialled."""
        if device == self.node.device_id:
            return  # this device itself, sharing another folder
        self._foreign.pop(device, None)
        self._foreign[device] = time.monotonic()
        while len(self._foreign) > FOREIGN_KEPT:
            del self._foreign[next(iter(self._foreign))]

    def _say_foreign(self, now: float) -> None:
        """Log and emit `foreign_nearby` when the count of devices nearby that use another
        key changes: with a mistyped key, the only sign there is."""
        for device in [d for d, t in self._foreign.items() if now - t > FOREIGN_FOR]:
            del self._foreign[device]
        ours = self.election.heard.keys() | self.node.peers.keys()
        count = sum(1 for d in self._foreign if d not in ours)
        if count == self._foreign_said:
            return
        self._foreign_said = count
        text = foreign_text(count)
        log.log(logging.WARNING if count else logging.INFO, "%s", text)
        self.node.emit("foreign_nearby", {"count": count, "text": text})

    def hear(self, msg: dict, ip: str) -> None:
        """What an authenticated peer says of itself: its hello or a `role` message."""
        device, role = msg.get("device"), msg.get("role")
        if (not isinstance(device, str) or device == self.node.device_id
                or role not in (ELECTING, SERVER, CLIENT)):
            return
        port = msg.get("port") if isinstance(msg.get("port"), int) else 0
        host = msg.get("host")
        if isinstance(host, str):
            ip = _dial_host(host, ip)  # where it listens, maybe not where it connected from
        server = msg.get("server") if isinstance(msg.get("server"), str) else ""
        name = msg.get("name") if isinstance(msg.get("name"), str) else ""
        since = msg.get("since")
        since = float(since) if isinstance(since, int | float) and not isinstance(since, bool) \
            else 0.0
        self.election.hear(Heard(device, role, server, (ip, port) if port else None, name,
                                 time.monotonic(), since))
        addr = msg.get("server_addr")
        if (role == CLIENT and server and server != self.node.device_id
                and server not in self.election.heard
                and isinstance(addr, list) and len(addr) == 2):
            self._dial_soon((str(addr[0]), int(addr[1])))  # learn that server first-hand

    def link_up(self, device: str, info_extra: dict, ip: str) -> None:
        self.election.link_up(device)
        self.hear({**info_extra, "device": device}, ip)
        # Our hello was made before the handshake: if our role changed meanwhile, only a
        # `role` message tells this peer (no UDP packet counts). Soon = after `start`.
        self._told.pop(device, None)
        asyncio.get_running_loop().call_soon(self._tell_peers, self.announcement())

    def link_down(self, device: str) -> None:
        self._told.pop(device, None)
        self.election.link_down(device, time.monotonic())

    # --- the loop --------------------------------------------------------------------
    async def _loop(self) -> None:
        next_announce = 0.0
        while True:
            now = time.monotonic()
            self._decide(now)
            self._act(now)
            if now >= next_announce:
                self._announce()
                self._say_foreign(now)
                next_announce = now + ANNOUNCE_INTERVAL
            await asyncio.sleep(TICK)

    def _decide(self, now: float) -> None:
        e = self.election
        before = (e.role, e.server)
        if e.role == SERVER and self.node.busy():
            better = [d for d, h in e.alive(now).items()
                      if h.role == SERVER and rank(h.since, d) < e.my_rank()]
            if better:
                self._step_down_since = self._step_down_since or now
                if now - self._step_down_since < STEP_DOWN_PATIENCE:
                    return  # finish the work in flight first
        self._step_down_since = None
        role, server = e.decide(now, verifying=self.hints.verifying())
        if role == ELECTING and before[0] != ELECTING:
            self.hints.reconsider()  # the survivors may rank better: dial them at once
        if (role, server) != before:
            who = e.heard.get(server)
            log.info("role: %s%s", role,
                     f" of {who.name or server[:7]} ({server[:7]})" if server else "")
            self.node.emit("role", {"role": role, "server": server})
            self._announce()

    def _announce(self) -> None:
        msg = self.announcement()
        if self.discovery is not None:
            self.discovery.announce(msg)
        self._tell_peers(msg)

    def _tell_peers(self, msg: dict) -> None:
        """A `role` message to every linked peer that has not heard this one yet."""
        said = (msg["role"], msg["server"], msg["since"])
        for device, peer in list(self.node.peers.items()):
            if self._told.get(device) != said:
                self._told[device] = said
                peer.conn.send_nowait({"t": "role", **msg})

    def _act(self, now: float) -> None:
        e = self.election
        peers = self.node.peers
        if e.role == CLIENT:
            if e.server not in peers:
                addr = e.server_address()
                if addr:
                    self._dial_soon(addr)
            for device, peer in list(peers.items()):
                if device != e.server and self._role_of(peer) in (SERVER, CLIENT):
                    asyncio.create_task(peer.conn.close("not our server"))
        else:
            for seed in self.seeds:
                last = self._seed_dialed.get(seed, 0.0)
                due = e.role == ELECTING or now - last >= SEED_REDIAL
                if due and not self._connected_to(seed):
                    self._seed_dialed[seed] = now
                    self._dial_soon(seed)
            for addr in self.hints.due(now, self._worth_a_dial):
                self._dial_soon(addr, hint=True)

    def _worth_a_dial(self, addr: Address, h: Hint) -> bool:
        """Might dialling this announced address change what the election decides?"""
        if h.device in self.node.peers or addr in self._dialing or self._connected_to(addr):
            return False  # that device is proven already (or about to be)
        if self.election.role == ELECTING:
            return True  # every device around may rank better
        # a server: another server, or another server's client, may mean a merge;
        # an electing device dials us itself
        return h.role == SERVER or (h.role == CLIENT and h.server != self.node.device_id)

    def _role_of(self, peer) -> str:
        extra = peer.conn.info.extra
        if extra.get("role") == ONESHOT:
            return ONESHOT
        h = self.election.heard.get(peer.conn.device_id)
        return h.role if h else ""

    def _connected_to(self, addr: tuple[str, int]) -> bool:
        return any(p.conn.address == f"{addr[0]}:{addr[1]}" for p in self.node.peers.values())

    def dialing(self, addr: Address) -> bool:
        """Whether a dial to this address is in flight now."""
        return addr in self._dialing

    def _dial_soon(self, addr: tuple[str, int], *, hint: bool = False) -> None:
        if addr in self._dialing or self._connected_to(addr):
            return
        self._dialing.add(addr)
        if hint:
            self.hints.started(addr, time.monotonic())
        asyncio.create_task(self._dial(addr, hint))

    async def _dial(self, addr: tuple[str, int], hint: bool) -> None:
        from app.engine.node import ConnectFailure

        try:
            await self.node.connect(*addr)
            self.dial_failures.pop(addr, None)
            if hint:
                self.hints.succeeded(addr, time.monotonic())
        except (ConnectFailure, RefusedError) as e:
            refused = isinstance(e, RefusedError)
            if hint:
                self._hint_failed(addr, e)
                if refused:
                    self._failed(addr, DialFailure(str(e), True, time.time()))
                return
            said = self.dial_failures.get(addr)
            self._failed(addr, DialFailure(str(e), refused, time.time()))
            if said is None or said.text != str(e):
                log.warning("cannot reach %s (will retry)", e)
            await asyncio.sleep(0.5)
        finally:
            self._dialing.discard(addr)
            if hint:
                self.hints.in_flight.discard(addr)  # also when cancelled

    def _failed(self, addr: Address, failure: DialFailure) -> None:
        self.dial_failures.pop(addr, None)
        self.dial_failures[addr] = failure  # the latest last
        while len(self.dial_failures) > FAILURES_KEPT:
            del self.dial_failures[next(iter(self.dial_failures))]

    def _hint_failed(self, addr: tuple[str, int], e: Exception) -> None:
        refused = isinstance(e, RefusedError)
        wait = self.hints.failed(addr, time.monotonic(), refused=refused)
        if refused:  # someone there does not know the key: worth telling the user
            log.warning("%s:%d was announced on the LAN as a device of this share but does "
                        "not know the share key (a replayed or forged announcement?); "
                        "ignored, not dialled again for %d s", *addr, wait)
        else:  # a device that just left, or a replayed packet of one: nothing to say
            log.debug("announced address not reachable, ignored for %d s: %s", wait, e)


def foreign_text(count: int) -> str:
    """The sentence for `count` devices nearby whose announcements are of another share."""
    if not count:
        return "no device nearby uses a different key any more"
    many = count != 1
    return (f"{count} device{'s' if many else ''} nearby use{'' if many else 's'} a different "
            "key: if one of them should be in this share, its key is mistyped (or pair it "
            "with an invitation)")
