"""Which announced addresses to dial, and when: trusting no announcement, cheaply.

A discovery packet only says "something at IP:PORT claims to be device D of this
share, in role R". Anyone can replay a real packet from any address, at any time,
so the only way to know is to dial it and complete the handshake (TLS + SPAKE2):
a device counts as present once that succeeds (see docs/election.md). But dialling
is not free either: each dial to an address an attacker listens on gives it one
online guess of the share key against our SPAKE2 message, and a stream of spoofed
addresses could keep us dialling forever. So this book of hints rate-limits:

* per address, after a dial that failed: wait 5 s, doubling up to 5 min; after one
  that reached something that does not know the key: 60 s, doubling up to 1 h;
* per address, after a dial that succeeded: 5 s before the next (a client of
  another server hangs up as soon as it knows our role), unless what it claims
  changes or we start electing (`reconsider`); never more than one dial a second;
* in all: at most `MAX_IN_FLIGHT` dials at once, and at most `REFUSALS_PER_MINUTE`
  refused ones a minute, after which addresses not yet verified wait;
* at most `MAX_HINTS` addresses remembered (the oldest heard are forgotten).

A pure bookkeeper with no sockets and no clock of its own (the caller passes
`now`), so its rules are tested with a fake clock.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

Address = tuple[str, int]

FRESH = 2.5  # a hint older than this is stale (five missed announcements)
RETRY_FIRST, RETRY_MAX = 5.0, 300.0
REFUSED_FIRST, REFUSED_MAX = 60.0, 3600.0
AFTER_SUCCESS = 5.0
MIN_SPACING = 1.0  # dials to one address, at most one per this many seconds
MAX_IN_FLIGHT = 8
REFUSALS_PER_MINUTE = 6
MAX_HINTS = 256


@dataclass
class Hint:
    """What one address last claimed (unverified), and our dialling record for it."""

    device: str
    role: str
    server: str  # the server it claims to follow ("" unless a client)
    at: float  # when we last heard it
    next_try: float = 0.0
    dialed_at: float = float("-inf")
    failures: int = 0
    refusals: int = 0
    verified: bool = False  # a dial to it authenticated at least once


class HintBook:
    def __init__(self) -> None:
        self.hints: OrderedDict[Address, Hint] = OrderedDict()
        self.in_flight: set[Address] = set()
        self._refused_at: deque[float] = deque()

    # --- inputs ----------------------------------------------------------------------
    def heard(self, addr: Address, device: str, role: str, server: str, now: float) -> None:
        h = self.hints.pop(addr, None)
        if h is None:
            h = Hint(device, role, server, now)
        else:
            if (device, role, server) != (h.device, h.role, h.server):
                self._lift_success_wait(h)  # news: what it proved may have changed
            h.device, h.role, h.server, h.at = device, role, server, now
        self.hints[addr] = h  # most recently heard last
        while len(self.hints) > MAX_HINTS:
            old = next((a for a in self.hints if a not in self.in_flight), None)
            if old is None:
                break
            del self.hints[old]

    def started(self, addr: Address, now: float) -> None:
        self.in_flight.add(addr)
        h = self.hints.get(addr)
        if h is not None:
            h.dialed_at = now

    def reconsider(self) -> None:
        """We start electing: every device that proved itself may matter again, now."""
        for h in self.hints.values():
            self._lift_success_wait(h)

    @staticmethod
    def _lift_success_wait(h: Hint) -> None:
        if h.verified and not (h.failures or h.refusals):
            h.next_try = 0.0

    def succeeded(self, addr: Address, now: float) -> None:
        self.in_flight.discard(addr)
        h = self.hints.get(addr)
        if h is not None:
            h.failures = h.refusals = 0
            h.verified = True
            h.next_try = now + AFTER_SUCCESS

    def failed(self, addr: Address, now: float, *, refused: bool) -> float:
        """Record a failed dial; returns how long until that address is tried again."""
        self.in_flight.discard(addr)
        if refused:
            self._refused_at.append(now)
        h = self.hints.get(addr)
        if h is None:
            return 0.0
        if refused:
            wait = min(REFUSED_FIRST * 2 ** h.refusals, REFUSED_MAX)
            h.refusals += 1
        else:
            wait = min(RETRY_FIRST * 2 ** h.failures, RETRY_MAX)
            h.failures += 1
        h.next_try = now + wait
        return wait

    # --- outputs ---------------------------------------------------------------------
    def fresh(self, now: float) -> dict[Address, Hint]:
        return {a: h for a, h in self.hints.items() if now - h.at <= FRESH}

    def due(self, now: float, wanted: Callable[[Address, Hint], bool]) -> list[Address]:
        """Fresh hints worth a dial now (by `wanted`), within every limit above."""
        while self._refused_at and now - self._refused_at[0] > 60.0:
            self._refused_at.popleft()
        budget_left = len(self._refused_at) < REFUSALS_PER_MINUTE
        room = MAX_IN_FLIGHT - len(self.in_flight)
        out: list[Address] = []
        for addr, h in reversed(self.hints.items()):  # most recently heard first
            if room <= 0:
                break
            if now - h.at > FRESH:
                continue
            if addr in self.in_flight or now < max(h.next_try, h.dialed_at + MIN_SPACING):
                continue
            if not (h.verified or budget_left) or not wanted(addr, h):
                continue
            out.append(addr)
            room -= 1
        return out

    def verifying(self) -> bool:
        """A dial is in flight: what it finds may change what the election decides."""
        return bool(self.in_flight)
