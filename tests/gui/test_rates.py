"""Speeds averaged over a few seconds, and exactly zero once nothing moves (fake clock)."""

from __future__ import annotations

from app.gui.rates import IDLE_BELOW, WINDOW, RateMeter


def test_a_steady_transfer_reads_steady_and_drops_to_zero_after_it():
    m = RateMeter()
    t, received = 0.0, 0
    for _ in range(40):  # 10 s at 4 MB/s, sampled every 0.25 s
        m.sample("nas", t, received, 0)
        t += 0.25
        received += 1_000_000
    m.sample("nas", t, received, 0)
    assert abs(m.rate("nas", t)[0] - 4_000_000) < 1
    for _ in range(int(WINDOW / 0.25)):  # the transfer ended: counters stand still
        t += 0.25
        m.sample("nas", t, received, 0)
    assert m.rate("nas", t) == (0.0, 0.0)


def test_keepalives_are_no_transfer_and_a_gone_device_is_forgotten():
    m = RateMeter()
    for i in range(20):
        m.sample("desktop", i * 0.25, 0, i * 5)  # 20 B/s of pings
    assert m.rate("desktop", 19 * 0.25)[1] == 0.0 < IDLE_BELOW
    m.keep_only(set())
    assert m.rate("desktop", 5.0) == (0.0, 0.0)
