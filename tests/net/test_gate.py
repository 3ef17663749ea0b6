"""The gate's policy, on a clock the test drives: caps, lockouts, reports.

The same rules over real sockets and processes: tests/integration/test_hostile_gate.py.
"""

from __future__ import annotations

from app.engine.node import REDIAL_REFUSED, REDIAL_REFUSED_MAX
from app.net import gate as g

A, B = "10.0.0.5", "10.0.0.6"


def admitted(gate: g.Gate, host: str, now: float) -> g.Slot:
    verdict = gate.admit(host, now)
    assert verdict.slot is not None, verdict.reason
    return verdict.slot


def guess(gate: g.Gate, host: str, now: float) -> g.Admission:
    """One connection that, if let in, ends with a wrong key."""
    verdict = gate.admit(host, now)
    if verdict.slot is not None:
        gate.finish(verdict.slot, g.WRONG_KEY, now)
    return verdict


def tries_between(gate: g.Gate, host: str, start: float, end: float, step: float = 1.0) -> int:
    """How many wrong keys a source gets through trying every `step` s."""
    n, t = 0, start
    while t < end:
        n += guess(gate, host, t).slot is not None
        t += step
    return n


def test_per_source_and_total_caps():
    gate = g.Gate(max_pending=6, max_per_source=4)
    for _ in range(4):
        admitted(gate, A, 0.0)
    refused = gate.admit(A, 0.0)
    assert refused.slot is None and refused.reason == g.BUSY
    assert refused.notice is not None and refused.notice.source == A
    admitted(gate, B, 0.0)
    admitted(gate, B, 0.0)
    assert len(gate.pending) == 6
    # full: a newcomer is let in, and the handshake stalled the longest makes room
    newcomer = gate.admit("10.0.0.7", 1.0)
    assert newcomer.slot is not None and newcomer.victim is not None
    assert newcomer.victim.source == A and len(gate.pending) == 6


def test_a_handshake_that_moves_on_is_not_the_one_evicted():
    gate = g.Gate(max_pending=3, max_per_source=4)
    stalled = [admitted(gate, A, 0.0), admitted(gate, B, 0.5)]
    for s in stalled:
        s.advance(g.HANDSHAKE, s.since + 0.01)  # TLS done, then nothing
    honest = admitted(gate, "10.0.0.9", 3.0)
    honest.advance(g.TLS, 3.01)
    honest.advance(g.HANDSHAKE, 3.02)
    victims = [gate.admit(f"10.0.1.{i}", 3.2 + i / 100).victim for i in range(2)]
    assert victims == stalled
    assert honest in gate.pending
    # a flood of connections that never send a byte churns among itself
    for i in range(50):
        verdict = gate.admit(f"10.0.2.{i}", 3.3 + i / 1000)
        assert verdict.victim is not honest
    assert honest in gate.pending


def test_wrong_keys_lock_the_source_out_with_a_doubling_backoff():
    gate = g.Gate()
    assert [guess(gate, A, 0.0).slot is not None for _ in range(6)] == [True] * 5 + [False]
    assert gate.admit(A, 1.0).reason == g.THROTTLED
    assert 58 < gate.locked_for(A, 1.0) <= 60
    assert guess(gate, B, 1.0).slot is not None  # another address is not affected
    # 5 more after the first minute, then 120 s; then 240 s ...
    assert tries_between(gate, A, 60.0, 180.0) == 5
    assert 110 < gate.locked_for(A, 65.0) <= 120
    # at full speed: 5 in the first minute, 35 in the first hour, then 5 an hour
    gate = g.Gate()
    first_minute = tries_between(gate, A, 0.0, 60.0, 0.01)
    first_hour = first_minute + tries_between(gate, A, 60.0, 3600.0, 0.5)
    next_hours = tries_between(gate, A, 3600.0, 3 * 3600.0, 0.5)
    assert (first_minute, first_hour, next_hours) == (5, 30, 10)


def test_parallel_guesses_get_no_more_tries():
    gate = g.Gate()
    tried, t = 0, 0.0
    while t < 59.0:
        slots = [v.slot for v in (gate.admit(A, t) for _ in range(4)) if v.slot is not None]
        for slot in slots:  # all four in flight, then all four wrong
            gate.finish(slot, g.WRONG_KEY, t + 0.01)
        tried += len(slots)
        t += 0.05
    assert tried == g.TRIES_PER_LOCKOUT


def test_a_slow_guesser_gets_no_more_than_a_fast_one():
    gate = g.Gate()
    assert tries_between(gate, A, 0.0, 3600.0, 15.0) <= 30


def test_an_honest_mistake_costs_nothing_once_the_key_is_right():
    gate = g.Gate()
    for t in (0.0, 5.0, 10.0, 15.0):  # four typos in a row
        assert guess(gate, A, t).slot is not None
    slot = admitted(gate, A, 20.0)  # the key was fixed: in at the first try
    gate.finish(slot, g.OK, 20.0)
    assert tries_between(gate, A, 21.0, 30.0) == 5  # the count started again


def test_a_device_left_running_with_a_wrong_key_is_never_locked_out():
    """Our dialer's pacing after a refusal (Node.connect) against the gate: a whole day."""
    t, wait = 0.0, REDIAL_REFUSED
    gate = g.Gate()
    while t < 24 * 3600:
        assert guess(gate, A, t).slot is not None, f"locked out at {t:.0f} s"
        t += wait
        wait = min(wait * 2, REDIAL_REFUSED_MAX)
    slot = admitted(gate, A, t)  # its key fixed: in at once
    gate.finish(slot, g.OK, t)


def test_junk_has_its_own_budget():
    gate = g.Gate()
    for i in range(g.JUNK_PER_MINUTE):
        gate.finish(admitted(gate, A, i * 0.01), g.TIMEOUT, i * 0.01)
    assert gate.admit(A, 1.0).reason == g.THROTTLED
    # evictions count as junk for the source that stalled
    for i in range(g.JUNK_PER_MINUTE):
        gate.finish(admitted(gate, B, i * 0.01), g.EVICTED, i * 0.01)
    assert gate.admit(B, 1.0).reason == g.THROTTLED


def test_refusals_are_reported_once_a_minute_per_source_with_a_count():
    gate = g.Gate()
    first = guess(gate, A, 0.0)  # admitted: its wrong key is reported by finish
    assert first.notice is None
    notices = []
    for t in range(1, 60):
        verdict = gate.admit(A, float(t))
        if verdict.slot is not None:
            notices.append(gate.finish(verdict.slot, g.WRONG_KEY, float(t)))
        else:
            notices.append(verdict.notice)
    # the first went out with finish; the lockout (after the 5th wrong key) at once
    (locked,) = [n for n in notices if n is not None]
    assert locked.reasons == {g.WRONG_KEY: 4} and locked.locked_for == 60
    assert locked.text() == ("refused 4 more connection(s) from 10.0.0.5 in the last minute "
                             "(wrong share key x4); its connections are refused for the "
                             "next 60 s")
    assert gate.due(30.0) == []
    (summary,) = gate.due(64.0)
    assert summary.source == A and summary.count == 55 and not summary.first
    assert summary.reasons == {g.THROTTLED: 55}
    assert "refused 55 more connection(s) from 10.0.0.5" in summary.text()
    event = summary.event()
    assert (event["address"], event["count"], event["reason"]) == (A, 55, g.THROTTLED)
    assert gate.due(65.0) == []


def test_the_first_refusal_of_a_source_is_reported_at_once():
    gate = g.Gate()
    slot = admitted(gate, A, 0.0)
    notice = gate.finish(slot, g.WRONG_KEY, 0.0)
    assert notice is not None and notice.first and notice.count == 1
    assert notice.text("10.0.0.5:40000", "the peer does not know this share key") == (
        "refused a connection from 10.0.0.5:40000: the peer does not know this share key")
    assert notice.event()["text"] == "refused a connection from 10.0.0.5: wrong share key"
    (row,) = gate.recent(1.0)
    assert row["address"] == A and row["count"] == 1 and "wrong share key" in row["text"]


def test_success_is_not_reported_and_frees_the_slot():
    gate = g.Gate()
    slot = admitted(gate, A, 0.0)
    assert gate.finish(slot, g.OK, 0.1) is None
    assert gate.pending == [] and gate.recent(0.2) == []


def test_an_ipv6_device_has_one_budget_for_its_whole_prefix():
    assert g.source_of("fe80::1%eth0") == g.source_of("fe80::2") == "fe80::/64"
    assert g.source_of("::ffff:10.0.0.5") == "10.0.0.5"
    gate = g.Gate()
    for i in range(5):
        guess(gate, f"2001:db8::{i + 1}", 0.0)
    assert gate.admit("2001:db8::99", 1.0).reason == g.THROTTLED
    assert gate.admit("2001:db8:0:1::1", 1.0).slot is not None


def test_the_table_of_sources_stays_bounded():
    gate = g.Gate()
    guess(gate, A, 0.0)
    for i in range(3 * g.MAX_SOURCES):
        slot = admitted(gate, f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 1.0 + i * 1e-4)
        gate.finish(slot, g.OK, 1.0 + i * 1e-4)
    assert len(gate._sources) <= g.MAX_SOURCES
