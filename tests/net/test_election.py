"""The election state machine with a fake clock: no sockets, no sleeps."""

from __future__ import annotations

from app.net.election import (
    CLIENT,
    ELECTING,
    ELECTION_WINDOW,
    PEER_TIMEOUT,
    SERVER,
    Election,
    Heard,
)


class Net:
    """Devices that all hear each other's announcements (unless cut off)."""

    def __init__(self, ids: list[str], starts: list[float] | None = None) -> None:
        starts = starts or [0.0] * len(ids)
        # wall clocks: each device's start time as it announces it (1000 s after its epoch)
        self.nodes = {d: Election(d, t, me_since=1000.0 + t)
                      for d, t in zip(ids, starts, strict=True)}
        self.now = 0.0
        self.cut: set[frozenset] = set()
        self.down: set[str] = set()

    def step(self, dt: float = 0.1) -> None:
        self.now += dt
        for a, ea in self.nodes.items():
            if a in self.down or ea.started > self.now:
                continue
            for b, eb in self.nodes.items():
                if b == a or b in self.down or eb.started > self.now:
                    continue
                if frozenset((a, b)) in self.cut:
                    continue
                eb.hear(Heard(a, ea.role, ea.server, ("10.0.0.1", 22100), a, self.now,
                              ea.me_since))
        for d, e in self.nodes.items():
            if d not in self.down and e.started <= self.now:
                e.decide(self.now)

    def run(self, seconds: float) -> None:
        for _ in range(int(seconds / 0.1)):
            self.step()

    def roles(self) -> dict[str, tuple[str, str]]:
        return {d: (e.role, e.server) for d, e in self.nodes.items() if d not in self.down}

    def servers(self) -> list[str]:
        return sorted(d for d, (r, _) in self.roles().items() if r == SERVER)


def test_a_lone_device_becomes_server_after_the_window():
    e = Election("B", 0.0)
    assert e.decide(ELECTION_WINDOW / 2) == (ELECTING, "")
    assert e.decide(ELECTION_WINDOW + 0.01) == (SERVER, "")


def test_devices_starting_together_elect_exactly_one_server():
    net = Net(["C", "A", "B"])
    net.run(3)
    assert net.servers() == ["A"]
    assert net.roles()["B"] == (CLIENT, "A") and net.roles()["C"] == (CLIENT, "A")


def test_the_first_device_up_stays_server_when_a_lower_id_joins_later():
    net = Net(["Z", "A"], starts=[0.0, 5.0])
    net.run(4)
    assert net.servers() == ["Z"]
    net.run(4)
    assert net.servers() == ["Z"], "a late joiner must join as a client, whatever its ID"
    assert net.roles()["A"] == (CLIENT, "Z")


def test_server_loss_elects_one_new_server_among_survivors():
    net = Net(["A", "B", "C", "D"])
    net.run(3)
    assert net.servers() == ["A"]
    net.down.add("A")
    net.run(PEER_TIMEOUT + 2)
    assert net.servers() == ["B"]
    assert net.roles()["C"] == (CLIENT, "B") and net.roles()["D"] == (CLIENT, "B")


def test_a_closed_link_to_the_server_is_noticed_at_once():
    e = Election("B", 0.0)
    e.hear(Heard("A", SERVER, "", ("h", 1), "A", 0.0))
    e.link_up("A")
    assert e.decide(0.1) == (CLIENT, "A")
    e.link_down("A", 0.2)
    assert e.decide(0.3) == (ELECTING, "")


def test_two_groups_merge_into_one_server_when_they_meet():
    net = Net(["A", "B", "C", "D"])
    for x in ("A", "B"):
        for y in ("C", "D"):
            net.cut.add(frozenset((x, y)))
    net.run(3)
    assert net.servers() == ["A", "C"]
    net.cut.clear()
    net.run(2)
    assert net.servers() == ["A"]
    assert {r for d, r in net.roles().items() if d != "A"} == {(CLIENT, "A")}


def test_clients_follow_their_server_when_it_steps_down():
    e = Election("D", 0.0)
    e.hear(Heard("C", SERVER, "", ("h", 1), "C", 0.0))
    assert e.decide(0.1) == (CLIENT, "C")
    e.hear(Heard("C", CLIENT, "A", ("h", 1), "C", 0.2))
    e.hear(Heard("A", SERVER, "", ("h", 2), "A", 0.2))
    assert e.decide(0.3) == (CLIENT, "A")


def test_never_two_servers_once_everyone_hears_everyone():
    import random

    rng = random.Random(7)
    for trial in range(30):
        ids = [f"D{rng.randrange(1000):03d}-{i}" for i in range(rng.randrange(2, 8))]
        net = Net(ids, starts=[rng.uniform(0, 3) for _ in ids])
        net.run(3 + ELECTION_WINDOW + 1)
        assert len(net.servers()) == 1, (trial, net.roles())
        if rng.random() < 0.5:
            net.down.add(net.servers()[0])
        net.run(PEER_TIMEOUT + 3)
        assert len(net.servers()) == 1, (trial, net.roles())
        server = net.servers()[0]
        assert all(r == (CLIENT, server) for d, r in net.roles().items() if d != server)


def test_the_first_device_up_wins_even_within_one_election_window():
    net = Net(["A", "Z"], starts=[0.5, 0.0])  # Z started half a second before A
    net.run(3)
    assert net.servers() == ["Z"]
    assert net.roles()["A"] == (CLIENT, "Z")


def test_the_older_server_stays_when_two_groups_merge():
    net = Net(["A", "B", "Y", "Z"], starts=[2.0, 2.0, 0.0, 0.0])
    for x in ("A", "B"):
        for y in ("Y", "Z"):
            net.cut.add(frozenset((x, y)))
    net.run(5)
    assert net.servers() == ["A", "Y"]
    net.cut.clear()
    net.run(2)
    assert net.servers() == ["Y"], "the server that has served longest keeps the role"


def test_an_electing_device_waits_for_a_dial_in_flight_but_not_forever():
    from app.net.election import VERIFY_GRACE

    e = Election("B", 0.0)
    assert e.decide(ELECTION_WINDOW + 0.1, verifying=True) == (ELECTING, "")
    # the dial proved a server: follow it
    e.hear(Heard("A", SERVER, "", ("127.0.0.1", 1), "A", ELECTION_WINDOW + 0.2, 5.0))
    assert e.decide(ELECTION_WINDOW + 0.3, verifying=False) == (CLIENT, "A")
    # a dial that hangs (an attacker's listener) holds the election VERIFY_GRACE at most
    lone = Election("C", 0.0)
    assert lone.decide(ELECTION_WINDOW + VERIFY_GRACE - 0.1, verifying=True) == (ELECTING, "")
    assert lone.decide(ELECTION_WINDOW + VERIFY_GRACE + 0.01, verifying=True) == (SERVER, "")
