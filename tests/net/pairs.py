"""Two PeerConnections joined by a real TCP connection on loopback (no handshake), with
TLS (`connected_tls_pair`) or without."""

from __future__ import annotations

import asyncio

from app.net.connection import PeerConnection
from app.net.handshake import PeerInfo
from app.net.identity import Identity, client_context, server_context


async def connected_pair() -> tuple[PeerConnection, PeerConnection]:
    """(ours, theirs): the one that dialled, and the one that accepted."""
    return await _pair(None)


async def connected_tls_pair(identity: Identity) -> tuple[PeerConnection, PeerConnection]:
    """As `connected_pair`, over TLS (the accepting side presents identity's certificate)."""
    return await _pair(identity)


async def _pair(tls: Identity | None) -> tuple[PeerConnection, PeerConnection]:
    accepted: asyncio.Future = asyncio.get_running_loop().create_future()

    async def on_client(reader, writer):
        accepted.set_result((reader, writer))

    server = await asyncio.start_server(on_client, "127.0.0.1", 0,
                                        ssl=tls and server_context(tls))
    port = server.sockets[0].getsockname()[1]
    r1, w1 = await asyncio.open_connection("127.0.0.1", port, ssl=tls and client_context(tls))
    r2, w2 = await accepted
    server.close()
    info = PeerInfo("PEER", "peer", b"", {})
    return (PeerConnection(r1, w1, info, outgoing=True, address="a"),
            PeerConnection(r2, w2, info, outgoing=False, address="b"))
