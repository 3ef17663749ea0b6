"""Role election: one server per share, decided by rules every device applies alike.

A pure state machine (no sockets, no clock of its own: the caller passes `now`), so
it is tested with a fake clock. Its inputs are facts proven by an authenticated
connection: the hello and `role` messages of devices that completed the handshake
(TLS + SPAKE2 on the share key). A UDP announcement is never an input: anyone can
replay or forge one, so it is only a hint to dial (app.net.hints), and counts once
that connection says the same. The output is this device's role and, for a client,
which server to follow. See docs/election.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ELECTING = "electing"
SERVER = "server"
CLIENT = "client"

ELECTION_WINDOW = 1.5  # a new device listens this long for a server before deciding
REELECTION_WINDOW = 0.5  # survivors of a lost server already know each other
PEER_TIMEOUT = 2.5  # a device not heard from for this long is gone
ANNOUNCE_INTERVAL = 0.5
# An electing device waits this much longer past its window while a dial to an
# announced address is still in flight (what it finds may rank better); a dial that
# hangs (an attacker's listener) cannot hold the election longer than this.
VERIFY_GRACE = 2.0


@dataclass
class Heard:
    device: str
    role: str
    server: str  # the server it follows ("" unless a client)
    address: tuple[str, int] | None  # where it accepts connections, if it does
    name: str
    at: float  # when we last heard it (our monotonic clock)
    since: float = 0.0  # its own wall-clock time of start (electing) or of becoming server


def rank(since: float, device: str) -> tuple[float, str]:
    """Lower wins: the device up (or serving) longest, then the lower device ID.

    `since` is a number the device announces about itself, so every device compares
    the same values and reaches the same answer, whatever the clocks say.
    """
    return (since, device)


@dataclass
class Election:
    me: str
    started: float
    me_since: float = 0.0  # our announced wall-clock start / server time
    role: str = ELECTING
    server: str = ""  # device we follow while CLIENT
    window: float = ELECTION_WINDOW
    electing_since: float = field(init=False)
    heard: dict[str, Heard] = field(default_factory=dict)
    pinned: set[str] = field(default_factory=set)  # alive while a TCP link stands

    def __post_init__(self) -> None:
        self.electing_since = self.started
        self.started_since = self.me_since

    def my_rank(self) -> tuple[float, str]:
        return rank(self.me_since, self.me)

    # --- inputs ----------------------------------------------------------------------
    def hear(self, h: Heard) -> None:
        """What an authenticated connection said of its own device (hello or `role`)."""
        if h.device != self.me:
            self.heard[h.device] = h

    def link_up(self, device: str) -> None:
        self.pinned.add(device)

    def link_down(self, device: str, now: float) -> None:
        """A TCP link closed: if it was our server, it is gone right now."""
        self.pinned.discard(device)
        if device == self.server:
            self.heard.pop(device, None)

    def forget(self, device: str) -> None:
        self.heard.pop(device, None)
        self.pinned.discard(device)

    # --- the rules -------------------------------------------------------------------
    def alive(self, now: float) -> dict[str, Heard]:
        return {d: h for d, h in self.heard.items()
                if d in self.pinned or now - h.at <= PEER_TIMEOUT}

    def decide(self, now: float, verifying: bool = False) -> tuple[str, str]:
        """Apply the rules once; returns (role, server device or "").

        `verifying`: a dial to a device we were told of is in flight; an electing
        device then waits for it (at most VERIFY_GRACE past its window) before it
        makes itself server.
        """
        alive = self.alive(now)
        servers = sorted((d for d, h in alive.items() if h.role == SERVER),
                         key=lambda d: rank(alive[d].since, d))
        if self.role == SERVER:
            better = [d for d in servers if rank(alive[d].since, d) < self.my_rank()]
            if better:
                self._become(CLIENT, better[0], now)
        elif self.role == CLIENT:
            followed = alive.get(self.server)
            if followed is None or followed.role != SERVER:
                moved = followed.server if followed and followed.role == CLIENT else ""
                if moved and moved in alive and alive[moved].role == SERVER:
                    self._become(CLIENT, moved, now)
                elif servers:
                    self._become(CLIENT, servers[0], now)
                else:
                    self._become(ELECTING, "", now, window=REELECTION_WINDOW)
            # (a better server appearing: ours steps down by itself; we follow its word)
        if self.role == ELECTING:
            if servers:
                self._become(CLIENT, servers[0], now)
            elif self._window_over(now, verifying):
                candidates = [rank(h.since, d) for d, h in alive.items() if h.role == ELECTING]
                if all(self.my_rank() < c for c in candidates):
                    self._become(SERVER, "", now)
        return self.role, self.server

    def _window_over(self, now: float, verifying: bool) -> bool:
        waited = now - self.electing_since
        return waited >= self.window and (not verifying
                                          or waited >= self.window + VERIFY_GRACE)

    def _become(self, role: str, server: str, now: float, window: float = 0.0) -> None:
        if role == ELECTING and self.role != ELECTING:
            self.electing_since = now
            self.window = window or ELECTION_WINDOW
            self.me_since = self.started_since
        if role == SERVER and self.role != SERVER:
            self.me_since = self.started_since + (now - self.started)  # when we began serving
        self.role, self.server = role, server

    def server_address(self) -> tuple[str, int] | None:
        h = self.heard.get(self.server)
        return h.address if h else None
