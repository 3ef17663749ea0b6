"""The handshake over real TLS on 127.0.0.1: success, wrong key, impostors, bad peers."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from app.net.framing import read_message, write_message
from app.net.handshake import (
    MAGIC,
    PROTOCOL_VERSION,
    HandshakeError,
    PeerInfo,
    handshake,
)
from app.net.identity import Identity, client_context, load_or_create, server_context

SECRET = "correct horse battery staple"
Side = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[Any]]


@pytest.fixture
def alice(tmp_path: Path) -> Identity:
    return load_or_create(tmp_path / "alice")


@pytest.fixture
def bob(tmp_path: Path) -> Identity:
    return load_or_create(tmp_path / "bob")


@pytest.fixture
def mallory(tmp_path: Path) -> Identity:
    return load_or_create(tmp_path / "mallory")


async def _outcome(side: Side, reader, writer) -> Any:
    """What a side returned, or the HandshakeError it raised."""
    try:
        return await side(reader, writer)
    except HandshakeError as e:
        return e
    finally:
        writer.close()


def run_pair(server_tls: Identity, server: Side, client: Side) -> tuple[Any, Any]:
    """Connect `client` to `server` over TLS (server presents `server_tls`'s certificate)."""

    async def go() -> tuple[Any, Any]:
        done: asyncio.Future = asyncio.get_running_loop().create_future()

        async def on_connect(reader, writer) -> None:
            done.set_result(await _outcome(server, reader, writer))

        srv = await asyncio.start_server(
            on_connect, "127.0.0.1", 0, ssl=server_context(server_tls)
        )
        port = srv.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(server_tls)
        )
        async with srv:
            client_result = await _outcome(client, reader, writer)
            server_result = await asyncio.wait_for(done, 5)
        return server_result, client_result

    return asyncio.run(go())


def side(identity: Identity, *, initiator: bool, secret: str = SECRET, name: str = "",
         extra: dict | None = None, timeout: float = 5.0) -> Side:
    """A real handshake side."""

    async def run(reader, writer) -> PeerInfo:
        return await handshake(reader, writer, identity, secret, name or identity.device_id[:7],
                               initiator=initiator, extra=extra, timeout=timeout)

    return run


def codes(*results: Any) -> list[str]:
    return [r.code if isinstance(r, HandshakeError) else type(r).__name__ for r in results]


def test_success(alice: Identity, bob: Identity) -> None:
    server, client = run_pair(
        alice,
        side(alice, initiator=False, name="alice-laptop", extra={"listen": 22000}),
        side(bob, initiator=True, name="bob-desk", extra={"role": "sync", "n": [1, b"x"]}),
    )
    assert server == PeerInfo(bob.device_id, "bob-desk", bob.cert_der,
                              {"role": "sync", "n": [1, b"x"]})
    assert client == PeerInfo(alice.device_id, "alice-laptop", alice.cert_der, {"listen": 22000})


def test_wrong_secret(alice: Identity, bob: Identity) -> None:
    server, client = run_pair(
        alice,
        side(alice, initiator=False, secret="one"),
        side(bob, initiator=True, secret="two"),
    )
    assert codes(server, client) == ["auth", "auth"]
    assert "wrong --secret" in str(server) and "wrong --secret" in str(client)


def test_impostor_client_claims_another_device(alice, bob, mallory) -> None:
    """Mallory knows the share key and sends Bob's ID and certificate, but not Bob's key."""
    fake_bob = dataclasses.replace(bob, key_path=mallory.key_path)
    # a client of her own making: ours refuses to sign with a key not its certificate's
    object.__setattr__(fake_bob, "_key", mallory._private_key())

    server, client = run_pair(alice, side(alice, initiator=False), side(fake_bob, initiator=True))
    assert codes(server) == ["identity"]
    assert "signature" in str(server)
    # the server checks the client's proof and signature before it sends its own proof:
    # the impostor gets the server's verdict instead
    assert codes(client) == ["identity"]
    assert "rejected our identity" in str(client)


def test_impostor_server_claims_another_device(alice, bob, mallory) -> None:
    """Mallory's TLS certificate is her own: she cannot present Alice's without its key."""
    fake_alice = dataclasses.replace(alice, key_path=mallory.key_path)
    server, client = run_pair(
        mallory, side(fake_alice, initiator=False), side(bob, initiator=True)
    )
    assert codes(client) == ["identity"]
    assert "TLS" in str(client)
    assert isinstance(server, HandshakeError)


def test_device_id_not_matching_certificate(alice, bob, mallory) -> None:
    liar = dataclasses.replace(mallory, device_id=bob.device_id)
    server, _ = run_pair(alice, side(alice, initiator=False), side(liar, initiator=True))
    assert codes(server) == ["identity"]
    assert "device ID" in str(server)


def raw_client(messages: list[dict], *, read: int = 1) -> Side:
    """A hand-written peer: sends `messages`, then reads `read` messages back."""

    async def run(reader, writer) -> list[dict]:
        for msg in messages:
            await write_message(writer, msg)
        return [await read_message(reader) for _ in range(read)]

    return run


def hello(identity: Identity, **changes: Any) -> dict:
    from spake2 import SPAKE2_A

    msg = {"t": "hello", "magic": MAGIC, "v": PROTOCOL_VERSION, "device": identity.device_id,
           "name": "raw", "cert": identity.cert_der, "spake": SPAKE2_A(SECRET.encode()).start()}
    msg.update(changes)
    return msg


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"magic": "rsync"}, "magic"),
        ({"v": 2}, "version 2"),
        ({"v": True}, "version True"),
        ({"cert": "not bytes"}, "malformed hello"),
        ({"spake": b"garbage"}, "SPAKE2"),
        ({"t": "auth"}, "'auth' instead of 'hello'"),
    ],
)
def test_bad_hello_is_protocol(alice, bob, changes: dict, words: str) -> None:
    server, client = run_pair(
        alice, side(alice, initiator=False), raw_client([hello(bob, **changes)], read=2)
    )
    assert codes(server) == ["protocol"]
    assert words in str(server)
    # the raw peer got the server's hello, then the server's reason for closing
    assert [m["t"] for m in client] == ["hello", "error"]
    assert client[1]["code"] == "protocol"


def test_wrong_magic_seen_by_initiator(alice, bob) -> None:
    async def bad_server(reader, writer) -> list[dict]:
        await write_message(writer, hello(alice, magic="nope"))
        return [await read_message(reader)]

    _, client = run_pair(alice, bad_server, side(bob, initiator=True))
    assert codes(client) == ["protocol"]


def test_peer_refuses_our_key(alice, bob) -> None:
    server, _ = run_pair(
        alice,
        side(alice, initiator=False),
        raw_client([hello(bob), {"t": "error", "code": "auth", "msg": "nope"}], read=1),
    )
    assert codes(server) == ["auth"]
    assert str(server) == "the peer refused our share key (wrong --secret)"


def test_wrong_key_gets_no_proof_back(alice, bob) -> None:
    """A guess at the key is answered with a refusal, never with the server's own proof."""
    from spake2 import SPAKE2_A

    wrong = hello(bob, spake=SPAKE2_A(b"a guess").start())
    bogus_auth = {"t": "auth", "proof": b"\0" * 32, "sig": b"\0" * 64}
    server, client = run_pair(alice, side(alice, initiator=False),
                              raw_client([wrong, bogus_auth], read=2))
    assert codes(server) == ["auth"]
    assert [m["t"] for m in client] == ["hello", "error"]
    assert client[1]["code"] == "auth"


def test_garbage_frame_is_protocol(alice) -> None:
    async def garbage(reader, writer) -> None:
        writer.write(b"\x00\x00\x00\x02\xc1\xc1")
        await writer.drain()
        await reader.read()

    server, _ = run_pair(alice, side(alice, initiator=False), garbage)
    assert codes(server) == ["protocol"]
    assert "malformed frame" in str(server)


def test_oversized_frame_is_protocol(alice) -> None:
    async def huge(reader, writer) -> None:
        writer.write(b"\x01\x00\x00\x00")  # 16 MiB: fine for READY, too big for a hello
        await writer.drain()
        await reader.read()

    server, _ = run_pair(alice, side(alice, initiator=False), huge)
    assert codes(server) == ["protocol"]
    assert "too large" in str(server)


def test_silent_peer_times_out(alice) -> None:
    async def silent(reader, writer) -> None:
        await reader.read()  # until the server gives up and closes

    server, _ = run_pair(alice, side(alice, initiator=False, timeout=0.5), silent)
    assert codes(server) == ["timeout"]
    assert "0.5 s" in str(server)


def test_peer_hangs_up(alice) -> None:
    async def hang_up(reader, writer) -> None:
        await read_message(reader)  # the server's hello, then close

    server, _ = run_pair(alice, side(alice, initiator=False), hang_up)
    assert codes(server) == ["closed"]


def test_extra_cannot_override_standard_keys(alice) -> None:
    async def go() -> None:
        reader = asyncio.StreamReader()
        await handshake(reader, None, alice, SECRET, "x", initiator=False,  # type: ignore[arg-type]
                        extra={"cert": b"forged"})

    with pytest.raises(ValueError, match="cert"):
        asyncio.run(go())



def test_a_peers_name_is_shown_printable_and_short(alice: Identity, bob: Identity) -> None:
    """A member's name with a newline forged a line in this device's log, with a
    terminal's escape codes it moved the cursor, and a megabyte of it filled windows."""
    server, _ = run_pair(
        alice,
        side(alice, initiator=False, name="alice"),
        side(bob, initiator=True, name="bob\n2026-12-04 p2psync: in sync\x1b[2J" + "x" * 1000),
    )
    assert isinstance(server, PeerInfo), server
    assert server.name.isprintable() and len(server.name) == 64, server.name
    assert server.name.startswith("bob?2026-12-04 p2psync: in sync?[2J")
