"""Pairing by code over the real listener (TLS, gate) of a real node on 127.0.0.1.

The inviting side is a Node with an open invitation; the joining side is
`pairing.join`, or a raw TLS client for messages out of turn.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from app.engine.config import Config
from app.engine.node import Node, NodeOptions
from app.net import beacon, pairing
from app.net.framing import read_message, write_message
from app.net.identity import client_context, load_or_create

KEY = "PAIRS-SHARE-KEY-OF-TEST"


@contextlib.asynccontextmanager
async def inviting(tmp_path: Path, answer: bool | None = True, lifetime: float | None = None,
                   discovery_port: int = 0):
    """A node of share KEY with an open invitation; its person answers `answer` (None:
    never answers)."""
    folder = tmp_path / "inviter"
    folder.mkdir(exist_ok=True)
    node = Node(NodeOptions(folder=folder, config=Config(tmp_path / "cfg-inviter"),
                            secret=KEY, name="alpha", listen=("127.0.0.1", 0),
                            discovery=bool(discovery_port), discovery_port=discovery_port))
    await node.start()
    states: list[str] = []

    def changed(inv: pairing.Invitation) -> None:
        states.append(inv.state)
        if inv.state == pairing.ASKING and answer is not None:
            inv.decide(answer)

    inv = node.invite(on_change=changed, lifetime=lifetime)
    inv.states = states
    try:
        yield node, inv
    finally:
        if not node._stopping:
            await node.stop()


def joiner(tmp_path: Path, name: str = "beta"):
    return load_or_create(tmp_path / f"cfg-{name}")


async def yes(peer: pairing.Peer) -> bool:
    return True


async def no(peer: pairing.Peer) -> bool:
    return False


async def try_join(node: Node, code: str, ident, decide=yes, name: str = "beta"):
    try:
        return await pairing.join("127.0.0.1", node.listen_address[1], code, ident, name,
                                  decide)
    except pairing.PairingError as e:
        return e


def wrong(code: str) -> str:
    number, first, second = code.split("-")
    return f"{number}-{first}-{'zebra' if second != 'zebra' else 'apple'}"


def test_the_right_code_gives_the_share_key_and_the_same_words_on_both_sides(tmp_path):
    async def go():
        async with inviting(tmp_path) as (node, inv):
            ident = joiner(tmp_path)
            seen: list[pairing.Peer] = []

            async def look(peer):
                seen.append(peer)
                return True

            joined = await try_join(node, inv.code, ident, look)
            assert await asyncio.wait_for(inv.outcome, 5) == pairing.PAIRED
            return joined, seen, inv, node, ident

    joined, seen, inv, node, ident = asyncio.run(go())
    assert isinstance(joined, pairing.Joined), joined
    assert joined.share_key == KEY
    assert seen == [joined.peer]
    assert joined.peer.name == "alpha" and joined.peer.device_id == node.device_id
    # the inviter knows who joined: its device ID is proven by its signature
    assert inv.peer.device_id == ident.device_id and inv.peer.name == "beta"
    assert inv.peer.words == joined.peer.words and len(joined.peer.words.split()) == 3
    assert inv.states == [pairing.ASKING, pairing.PAIRED]


def test_a_wrong_code_burns_the_invitation_on_both_sides_at_once(tmp_path):
    async def go():
        async with inviting(tmp_path) as (node, inv):
            ident = joiner(tmp_path)
            first = await try_join(node, wrong(inv.code), ident)
            state = inv.state
            second = await try_join(node, inv.code, ident)  # the right code, too late
            return first, state, inv.why, second

    first, state, why, second = asyncio.run(go())
    assert isinstance(first, pairing.PairingError) and first.code == "code"
    assert str(first) == ("wrong code: alpha's invitation is over now (one try per code); "
                          "ask for a new code")
    assert state == pairing.BURNED
    assert why.startswith("beta at 127.0.0.1 tried a wrong code")
    assert isinstance(second, pairing.PairingError) and second.code == "none"
    assert "alpha at 127.0.0.1:" in str(second) and "has no open invitation" in str(second)


def test_a_wrong_number_finds_no_invitation_and_costs_no_try(tmp_path):
    async def go():
        async with inviting(tmp_path) as (node, inv):
            number, rest = inv.code.split("-", 1)
            other = f"{int(number) % 99 + 1}-{rest}"
            miss = await try_join(node, other, joiner(tmp_path))
            hit = await try_join(node, inv.code, joiner(tmp_path))
            return miss, hit

    miss, hit = asyncio.run(go())
    assert isinstance(miss, pairing.PairingError) and miss.code == "none"
    assert "no invitation numbered" in str(miss)
    assert isinstance(hit, pairing.Joined) and hit.share_key == KEY


@pytest.mark.parametrize("who", ["joiner", "inviter"])
def test_a_no_on_either_side_ends_it_on_both(tmp_path, who):
    async def go():
        async with inviting(tmp_path, answer=who != "inviter") as (node, inv):
            result = await try_join(node, inv.code, joiner(tmp_path),
                                    no if who == "joiner" else yes)
            return result, await asyncio.wait_for(inv.outcome, 5), inv.why

    result, state, why = asyncio.run(go())
    assert isinstance(result, pairing.PairingError) and result.code == "declined"
    assert state == pairing.DECLINED
    if who == "joiner":
        assert str(result) == "you declined to pair with alpha"
        assert why == "beta declined the pairing"
    else:
        assert str(result) == "alpha declined the pairing"
        assert why == "you declined to pair with beta"


def test_an_invitation_expires_and_its_beacon_stops(tmp_path):
    port = 24000 + (hash(str(tmp_path)) % 900)

    async def go():
        async with inviting(tmp_path, lifetime=1.5, discovery_port=port) as (node, inv):
            heard = await beacon.find(inv.nameplate, port, wait=3)
            state = await asyncio.wait_for(inv.outcome, 5)
            silent = await beacon.find(inv.nameplate, port, wait=2)
            late = await try_join(node, inv.code, joiner(tmp_path))
            return heard, state, inv.why, silent, late, node

    heard, state, why, silent, late, node = asyncio.run(go())
    assert [(h.host, h.port, h.name) for h in heard] == \
        [("127.0.0.1", node.listen_address[1], "alpha")]
    assert state == pairing.EXPIRED and why.endswith("expired after 1.5 s")
    assert silent == []
    assert isinstance(late, pairing.PairingError) and late.code == "none"


def test_expiry_while_the_people_decide_ends_it_on_both_sides(tmp_path):
    async def go():
        async with inviting(tmp_path, answer=None, lifetime=1.5) as (node, inv):
            result = await try_join(node, inv.code, joiner(tmp_path))
            return result, inv.state

    result, state = asyncio.run(go())
    assert state == pairing.EXPIRED
    assert isinstance(result, pairing.PairingError) and result.code == "expired"
    assert "expired after 1.5 s" in str(result)


async def raw(node: Node, ident):
    return await asyncio.open_connection("127.0.0.1", node.listen_address[1],
                                         ssl=client_context(ident), server_hostname=None)


def hello(inv: pairing.Invitation, ident) -> dict:
    from spake2 import SPAKE2_A

    spake = SPAKE2_A(inv.code.encode(), idA=pairing._ID_JOINER, idB=pairing._ID_INVITER)
    return {"t": "pair", "magic": pairing.MAGIC, "v": pairing.VERSION,
            "nameplate": inv.nameplate, "device": ident.device_id, "name": "raw",
            "cert": ident.cert_der, "spake": spake.start()}


def test_the_inviter_refuses_a_message_out_of_turn_and_that_costs_no_try(tmp_path):
    async def go():
        async with inviting(tmp_path) as (node, inv):
            ident = joiner(tmp_path)
            reader, writer = await raw(node, ident)
            await write_message(writer, hello(inv, ident))
            answer = await read_message(reader, 1 << 16)
            await write_message(writer, {"t": "confirm"})  # before any proof
            error = await read_message(reader, 1 << 16)
            writer.close()
            await asyncio.sleep(0.1)
            state = inv.state
            joined = await try_join(node, inv.code, ident)
            return answer, error, state, joined

    answer, error, state, joined = asyncio.run(go())
    assert answer["t"] == "pair"
    assert error["t"] == "error" and error["code"] == "protocol"
    assert "'confirm' out of turn (waiting for proof)" in error["msg"]
    assert state == pairing.OPEN  # no proof, no guess: the invitation waits on
    assert isinstance(joined, pairing.Joined)


def test_a_second_device_is_told_busy_while_one_is_proving(tmp_path):
    async def go():
        async with inviting(tmp_path) as (node, inv):
            ident = joiner(tmp_path)
            reader, writer = await raw(node, ident)
            await write_message(writer, hello(inv, ident))
            await read_message(reader, 1 << 16)  # it holds the invitation now
            busy = await try_join(node, inv.code, joiner(tmp_path, "gamma"), name="gamma")
            writer.close()
            return busy, inv.state

    busy, state = asyncio.run(go())
    assert isinstance(busy, pairing.PairingError) and busy.code == "busy"
    assert state == pairing.OPEN


def test_the_joiner_refuses_a_key_before_its_person_said_yes():
    """The joining side's turns, alone: a `key` while the people decide is out of turn."""
    turns = pairing._JoinerTurns.__new__(pairing._JoinerTurns)
    turns.state = "decide"
    with pytest.raises(pairing.PairingError) as e:
        turns.key({"t": "key", "nonce": b"0" * 12, "box": b""})
    assert e.value.code == "protocol" and "'key' out of turn" in str(e.value)
    with pytest.raises(pairing.PairingError) as e:
        turns.key({"t": "error", "code": "declined", "msg": "alpha declined the pairing"})
    assert e.value.code == "declined" and str(e.value) == "alpha declined the pairing"


def test_stopping_the_inviting_node_while_asking_tells_the_joiner(tmp_path):
    async def go():
        async with inviting(tmp_path, answer=None) as (node, inv):
            asked = asyncio.Event()

            async def wait(peer):
                asked.set()
                await asyncio.sleep(30)
                return True

            task = asyncio.ensure_future(try_join(node, inv.code, joiner(tmp_path), wait))
            await asked.wait()
            await node.stop()
            return await asyncio.wait_for(task, 5)

    result = asyncio.run(go())
    assert isinstance(result, pairing.PairingError) and result.code == "declined"


def test_a_beacons_name_is_shown_printable_and_short():
    """A stranger's beacon names the inviting device: no newline or escape code of it
    reaches the joiner's terminal, and no more than 64 characters."""
    import msgpack

    packet = beacon.MAGIC + msgpack.packb({"n": 7, "port": 22100, "device": "X",
                                           "name": "ev\nil\x1b[2J" + "y" * 300})
    msg = beacon.decode(packet)
    assert msg is not None and msg["name"].isprintable() and len(msg["name"]) == 64
    assert msg["name"].startswith("ev?il?[2J")
