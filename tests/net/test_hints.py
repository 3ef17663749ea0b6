"""The rate limits on dialling announced addresses, with a fake clock."""

from __future__ import annotations

from app.net import hints
from app.net.hints import HintBook

A = ("127.0.0.2", 22100)
B = ("127.0.0.3", 22100)


def anyone(_addr, _h) -> bool:
    return True


def test_a_fresh_hint_is_due_once_and_a_stale_one_never():
    book = HintBook()
    book.heard(A, "DEV", "server", "", now=0.0)
    assert book.due(0.1, anyone) == [A]
    book.started(A, 0.0)
    assert book.due(0.2, anyone) == [] and book.verifying()
    assert book.due(hints.FRESH + 1, anyone) == []  # not heard again: stale


def test_failures_back_off_doubling_and_refusals_back_off_longer():
    book = HintBook()
    now = 0.0
    waits = []
    for _ in range(8):
        book.heard(A, "DEV", "server", "", now)
        book.started(A, now)
        waits.append(book.failed(A, now, refused=False))
        now += waits[-1]
    assert waits[:3] == [5.0, 10.0, 20.0] and waits[-1] == hints.RETRY_MAX
    book.heard(B, "DEV", "server", "", 0.0)
    book.started(B, 0.0)
    assert book.failed(B, 0.0, refused=True) == hints.REFUSED_FIRST
    book.heard(B, "DEV", "server", "", 30.0)
    assert B not in book.due(30.0, anyone)  # still waiting
    book.heard(B, "DEV", "server", "", 60.0)
    assert B in book.due(60.0, anyone)


def test_a_replay_heard_ten_times_a_second_is_dialled_a_handful_of_times_in_ten_minutes():
    book = HintBook()
    dials = 0
    for tick in range(6000):  # 600 s, a packet every 0.1 s
        now = tick / 10
        book.heard(A, "DEPARTED", "server", "", now)
        for addr in book.due(now, anyone):
            book.started(addr, now)
            dials += 1
            book.failed(addr, now, refused=True)
    assert dials <= 5  # 0, 60, 180, 420 s


def test_refused_dials_are_limited_in_all_whatever_the_number_of_addresses():
    book = HintBook()
    dialled = 0
    for i in range(100):  # spoofed sources, each with a wrong-key listener
        addr = (f"127.0.1.{i}", 4000)
        book.heard(addr, f"DEV{i}", "server", "", 1.0)
        for a in book.due(1.0, anyone):
            book.started(a, 1.0)
            dialled += 1
            book.failed(a, 1.0, refused=True)
    assert dialled == hints.REFUSALS_PER_MINUTE
    # an address that once proved itself is not held back by strangers' refusals
    book.heard(A, "REAL", "server", "", 1.0)
    book.hints[A].verified = True
    assert book.due(1.0, anyone) == [A]


def test_dials_in_flight_and_addresses_remembered_are_bounded():
    book = HintBook()
    for i in range(hints.MAX_HINTS + 50):
        book.heard((f"127.0.2.{i % 250}", 1000 + i), f"DEV{i}", "electing", "", 0.0)
    assert len(book.hints) == hints.MAX_HINTS
    due = book.due(0.0, anyone)
    assert len(due) == hints.MAX_IN_FLIGHT
    for a in due:
        book.started(a, 0.0)
    assert book.due(0.0, anyone) == []


def test_after_a_success_the_same_address_waits_a_little():
    book = HintBook()
    book.heard(A, "DEV", "client", "OTHER", 0.0)
    book.started(A, 0.0)
    book.succeeded(A, 0.0)
    book.heard(A, "DEV", "client", "OTHER", 1.0)
    assert book.due(1.0, anyone) == []
    book.heard(A, "DEV", "client", "OTHER", hints.AFTER_SUCCESS)
    assert book.due(hints.AFTER_SUCCESS, anyone) == [A]


def test_wanted_decides_which_hints_are_worth_a_dial():
    book = HintBook()
    book.heard(A, "DEV", "client", "ME", 0.0)
    book.heard(B, "DEV2", "server", "", 0.0)
    assert book.due(0.0, lambda _a, h: h.role == "server") == [B]


def test_news_or_a_new_election_lifts_the_wait_after_a_success_but_not_the_spacing():
    book = HintBook()
    book.heard(A, "DEV", "client", "OTHER", 0.0)
    book.started(A, 0.0)
    book.succeeded(A, 0.0)
    book.heard(A, "DEV", "server", "", 0.5)  # it says something new
    assert book.due(0.5, anyone) == []  # one dial a second per address, at most
    assert book.due(hints.MIN_SPACING, anyone) == [A]
    book.started(A, 1.0)
    book.succeeded(A, 1.0)
    book.heard(A, "DEV", "server", "", 2.5)
    assert book.due(2.5, anyone) == []
    book.reconsider()  # we lost our server: who is around matters right now
    assert book.due(2.5, anyone) == [A]


def test_a_refusal_is_not_lifted_by_news_nor_by_a_new_election():
    book = HintBook()
    book.heard(A, "DEV", "server", "", 0.0)
    book.started(A, 0.0)
    book.failed(A, 0.0, refused=True)
    book.heard(A, "OTHER", "electing", "", 1.0)
    book.reconsider()
    assert book.due(1.0, anyone) == []
