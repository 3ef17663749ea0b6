"""Who may start a handshake, and who has tried too often: the policy before authentication.

A stranger on the LAN can open connections without knowing the share key. Each one
it keeps unfinished costs us a descriptor and memory, and each finished handshake
with a wrong key is one online guess at the key (SPAKE2 allows no more than one per
handshake, and nothing to test offline). So, per source address:

- at most MAX_PENDING handshakes in progress in total and MAX_PER_SOURCE per source; a
  connection beyond the per-source cap is refused at once, before any TLS work; when
  the total is full, the handshake that has made no progress for the longest time
  (past a grace that grows with how far it got) makes room, and its source is charged
  as for junk: a flood of connections that stall, from however many addresses, cannot
  keep out an honest peer whose handshake moves on every few milliseconds;
- wrong keys are counted in a bucket that drains TRIES_PER_LOCKOUT an hour; each time
  it holds TRIES_PER_LOCKOUT, the source is locked out for BACKOFF_FIRST seconds,
  doubled on each lockout up to BACKOFF_MAX (an hour without a lockout undoes one
  doubling); handshakes that end any other way short of success (timeouts, garbage,
  hang-ups, evictions) have a budget of JUNK_PER_MINUTE before the same lockout.
  While locked out, a source's connections are refused before any TLS work. So a
  source gets 5 guesses in its first minute, about 30 in its first hour, then about 5
  an hour, however it paces them. A success empties its bucket (not a running lockout).
  An honest device that got the key wrong once still has tries left and gets in as
  soon as it has the right key; our own dialer waits longer after each refusal (see
  Node.connect), fewer tries than the bucket drains, so a device left running with a
  wrong key is never locked out and gets in at its first try once the key is right.

Every refusal is reported (to the log and as an engine event) with the address:
the first one of a source at once, later ones as a count once a minute, so a flood
makes a few lines, not thousands. Everything here is plain bookkeeping over a clock
the caller passes in: no I/O, no asyncio.
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from dataclasses import dataclass, field

MAX_PENDING = 32
MAX_PER_SOURCE = 4
HANDSHAKE_TIMEOUT = 5.0  # from accept to authenticated, TLS included
TRIES_PER_LOCKOUT = 5
JUNK_PER_MINUTE = 20
BACKOFF_FIRST = 60.0
BACKOFF_MAX = 3600.0
REPORT_EVERY = 60.0  # at most one line per source per minute, plus a count
RECENT_FOR = 600.0  # how long a refused source stays in `recent()` (the peers view)
MAX_SOURCES = 4096  # sources remembered; the quiet ones are forgotten first

# stages of a pending handshake, least advanced first
WAITING, TLS, HANDSHAKE = 0, 1, 2
# how long a stage may take before its handshake counts as stalled: an honest client
# sends its ClientHello at once, then TLS and the handshake each take round trips and
# some crypto; so when room is needed, a connection that never sent a byte goes first
GRACE = (0.0, 0.5, 1.0)

# outcomes of a handshake and refusals, as `reason` in reports and events
OK = "ok"
WRONG_KEY = "wrong_key"  # a wrong share-key proof: one online guess
THROTTLED = "throttled"  # refused before TLS: the source is locked out
BUSY = "busy"  # refused before TLS: too many handshakes from the source at once
EVICTED = "evicted"  # closed to make room for a newer handshake
TIMEOUT = "timeout"
PROTOCOL = "protocol"  # garbage, a wrong magic or version, a bad certificate...
CLOSED = "closed"  # the peer hung up mid-handshake

JUNK = frozenset({TIMEOUT, PROTOCOL, CLOSED, EVICTED})
REASON_TEXT = {
    WRONG_KEY: "wrong share key",
    THROTTLED: "locked out after too many failed attempts",
    BUSY: "too many unfinished connections at once",
    EVICTED: "unfinished connection closed to make room",
    TIMEOUT: "did not finish the handshake in time",
    PROTOCOL: "not a p2psync handshake",
    CLOSED: "hung up during the handshake",
}


def source_of(host: str) -> str:
    """The address a budget belongs to: an IPv4 address, or an IPv6 /64.

    One device owns a whole IPv6 /64 (it can pick any address in it), so counting
    per address would give it 2**64 budgets.
    """
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass
class Slot:
    """One handshake in progress; `cancel` is set by whoever runs it."""

    source: str
    since: float  # when it last made progress (was admitted, or reached its stage)
    stage: int = WAITING
    cancel: object = None  # a callable that ends the handshake (evicted)
    peer: str = ""  # host:port, for the report
    done: bool = False
    evicted: bool = False  # ended to make room

    def advance(self, stage: int, now: float) -> None:
        self.stage, self.since = stage, now


@dataclass(frozen=True)
class Notice:
    """What to tell the user about refusals from one source."""

    source: str
    reason: str  # the latest reason (see REASON_TEXT)
    count: int  # refusals this notice stands for
    reasons: dict[str, int]  # reason -> how many of `count`
    locked_for: float  # seconds of lockout left (0: none)
    first: bool  # the first of this source in this minute (not a summary)

    def text(self, peer: str = "", detail: str = "", name: str = "") -> str:
        """One log line. `peer` (host:port), `detail` (the handshake's own sentence) and
        `name` (the device name its hello claimed) make the first line of a source more
        precise than its summary can be."""
        if self.first and self.count == 1:
            where = peer or self.source
            line = (f"refused a connection from {f'{name} at {where}' if name else where}: "
                    f"{detail or REASON_TEXT[self.reason]}")
        else:
            parts = ", ".join(f"{REASON_TEXT[r]} x{n}" for r, n in
                              sorted(self.reasons.items(), key=lambda kv: -kv[1]))
            line = (f"refused {self.count} {'more ' if not self.first else ''}"
                    f"connection(s) from {self.source} in the last minute ({parts})")
        if self.locked_for >= 1:
            line += f"; its connections are refused for the next {self.locked_for:.0f} s"
        return line

    def event(self, name: str = "") -> dict:
        """The `auth_refused` engine event: `text` is the sentence to show; `name` is what
        the refused device called itself (unproven), when its hello got that far."""
        return {"address": self.source, "reason": self.reason, "count": self.count,
                "locked_for": round(self.locked_for), "name": name,
                "text": self.text(name=name)}


@dataclass
class Admission:
    slot: Slot | None  # None: refused (see notice)
    victim: Slot | None = None  # a pending handshake to end to make room
    notice: Notice | None = None  # to report now (None: counted for the next summary)
    reason: str = ""  # why refused


@dataclass
class _Source:
    seen: float
    stamp: float  # when the buckets were last refilled
    fails: float = 0.0  # wrong keys, draining TRIES_PER_LOCKOUT an hour (see refill)
    junk: float = JUNK_PER_MINUTE
    pending: int = 0
    locked_until: float = 0.0
    lockouts: int = 0  # doublings of the next lockout
    locked_at: float = float("-inf")  # when the last lockout began
    # reporting
    reported: float = float("-inf")  # when the last line about it went out
    unreported: Counter = field(default_factory=Counter)
    last_reason: str = ""
    cause: str = ""  # the last reason that was not the lockout itself
    last_refused: float = float("-inf")
    refused_total: int = 0

    def refill(self, now: float) -> None:
        dt = max(0.0, now - self.stamp)
        self.stamp = now
        self.junk = min(JUNK_PER_MINUTE, self.junk + dt * JUNK_PER_MINUTE / 60.0)
        self.fails = max(0.0, self.fails - dt * TRIES_PER_LOCKOUT / 3600.0)

    def tries_left(self) -> int:
        """Wrong keys that may still come before the next lockout."""
        return max(1, math.floor(TRIES_PER_LOCKOUT - 1 - self.fails) + 1)

    def quiet(self, now: float) -> bool:
        """Nothing to remember: no handshake, no lockout, full budgets, nothing unsaid."""
        self.refill(now)
        return (self.pending == 0 and now >= self.locked_until and not self.unreported
                and self.fails < 0.01 and self.junk >= JUNK_PER_MINUTE
                and now - self.last_refused > RECENT_FOR)


class Gate:
    def __init__(self, *, max_pending: int = MAX_PENDING,
                 max_per_source: int = MAX_PER_SOURCE) -> None:
        self.max_pending = max_pending
        self.max_per_source = max_per_source
        self.pending: list[Slot] = []
        self._sources: dict[str, _Source] = {}
        self.refused_total = 0

    # --- admission ---------------------------------------------------------------------
    def admit(self, host: str, now: float) -> Admission:
        """May a new connection from `host` start a handshake? Decided before any TLS."""
        src_key = source_of(host)
        src = self._source(src_key, now)
        if now < src.locked_until:
            return Admission(None, notice=self._refused(src_key, src, THROTTLED, now),
                             reason=THROTTLED)
        # each handshake in flight may be one more wrong key: never more of them than
        # the tries left before the next lockout, so parallel guessers get no extra
        src.refill(now)
        if src.pending >= min(self.max_per_source, src.tries_left()):
            return Admission(None, notice=self._refused(src_key, src, BUSY, now), reason=BUSY)
        victim = self.stalled(now) if len(self.pending) >= self.max_pending else None
        if victim is not None:
            self.evict(victim)
        slot = Slot(src_key, now)
        self.pending.append(slot)
        src.pending += 1
        return Admission(slot, victim=victim)

    def stalled(self, now: float) -> Slot | None:
        """The pending handshake stalled the longest, past the grace of its stage."""
        if not self.pending:
            return None
        return max(self.pending, key=lambda s: (now - s.since - GRACE[s.stage], -s.stage))

    def release(self, slot: Slot) -> None:
        """Free a slot without a verdict (the node stops, or it made room)."""
        if slot.done:
            return
        slot.done = True
        self.pending.remove(slot)
        src = self._sources.get(slot.source)
        if src is not None:
            src.pending -= 1

    def evict(self, slot: Slot) -> None:
        """Take a pending handshake out to make room; the caller ends it, then charges it
        with finish(slot, EVICTED)."""
        slot.evicted = True
        self.release(slot)

    def finish(self, slot: Slot, outcome: str, now: float) -> Notice | None:
        """A pending handshake ended; charge its source. Returns what to report now.

        A lockout that starts is reported at once (with the count so far): it is the
        news, and it happens at most once per lockout, so at most once a minute.
        """
        self.release(slot)
        src = self._source(slot.source, now)
        if outcome == OK:
            src.fails, src.lockouts = 0.0, 0
            return None
        locked = False
        if outcome == WRONG_KEY:
            src.refill(now)
            src.fails += 1
            if src.fails > TRIES_PER_LOCKOUT - 1:  # the 5th since the bucket was empty
                src.fails = max(0.0, src.fails - TRIES_PER_LOCKOUT)
                locked = self._lock(src, now)
        elif outcome in JUNK:
            src.refill(now)
            src.junk -= 1
            if src.junk < 1:
                locked = self._lock(src, now)
        notice = self._refused(slot.source, src, outcome, now)
        if locked and notice is None:
            notice = self._notice(slot.source, src, now, first=False)
        return notice

    def _lock(self, src: _Source, now: float) -> bool:
        """Start a lockout (False if one runs already)."""
        if now < src.locked_until:
            return False
        calm_hours = int((now - src.locked_at) // 3600) if src.lockouts else 0
        src.lockouts = max(0, src.lockouts - calm_hours)
        src.locked_until = now + min(BACKOFF_FIRST * 2 ** src.lockouts, BACKOFF_MAX)
        src.lockouts += 1
        src.locked_at = now
        return True

    def locked_for(self, host: str, now: float) -> float:
        src = self._sources.get(source_of(host))
        return max(0.0, src.locked_until - now) if src is not None else 0.0

    # --- reporting ----------------------------------------------------------------------
    def _refused(self, key: str, src: _Source, reason: str, now: float) -> Notice | None:
        self.refused_total += 1
        src.refused_total += 1
        src.last_reason = reason
        if reason != THROTTLED:
            src.cause = reason
        src.last_refused = now
        src.unreported[reason] += 1
        if now - src.reported >= REPORT_EVERY and sum(src.unreported.values()) == 1:
            return self._notice(key, src, now, first=True)
        return None

    def _notice(self, key: str, src: _Source, now: float, *, first: bool) -> Notice:
        reasons = dict(src.unreported)
        src.unreported.clear()
        src.reported = now
        return Notice(key, src.last_reason, sum(reasons.values()), reasons,
                      max(0.0, src.locked_until - now), first)

    def due(self, now: float) -> list[Notice]:
        """Summaries of refusals not reported yet, for sources last reported a minute ago."""
        out = []
        for key, src in list(self._sources.items()):
            if src.unreported and now - src.reported >= REPORT_EVERY:
                out.append(self._notice(key, src, now, first=False))
        return out

    def recent(self, now: float) -> list[dict]:
        """Sources refused in the last RECENT_FOR seconds, for the peers view.

        `text` says why in a few words: the last reason, how many refusals, the lockout.
        """
        out = []
        for key, src in self._sources.items():
            if now - src.last_refused > RECENT_FOR:
                continue
            locked = max(0.0, src.locked_until - now)
            if locked >= 1:
                text = (f"{REASON_TEXT[src.cause or src.last_reason]}: locked out for "
                        f"{locked:.0f} s ({src.refused_total} refused)")
            else:
                text = f"{REASON_TEXT[src.last_reason]} ({src.refused_total} refused)"
            out.append({"address": key, "reason": src.last_reason, "count": src.refused_total,
                        "locked_for": locked, "text": text})
        return out

    # --- memory -------------------------------------------------------------------------
    def _source(self, key: str, now: float) -> _Source:
        src = self._sources.get(key)
        if src is None:
            if len(self._sources) >= MAX_SOURCES:
                self._forget(now)
            src = self._sources[key] = _Source(seen=now, stamp=now)
        src.seen = now
        return src

    def _forget(self, now: float) -> None:
        """Make room: drop quiet sources, then (still too many) the longest unseen idle ones.

        An attacker with thousands of addresses can push out what we know of some: they
        start again with a fresh budget, which those addresses would have had anyway.
        """
        for key in [k for k, s in self._sources.items() if s.quiet(now)]:
            del self._sources[key]
        if len(self._sources) >= MAX_SOURCES * 3 // 4:
            idle = sorted((s.seen, k) for k, s in self._sources.items() if s.pending == 0)
            for _, key in idle[: len(self._sources) - MAX_SOURCES // 2]:
                del self._sources[key]
