"""A node's invitations: one code at a time, served on the node's own listening port.

`Node.invite` opens one (app/net/pairing.py; a new one ends the last); while it is open,
a beacon tells the LAN its number and port (app/net/beacon.py), and the listener's
accepted connections are read one message ahead: `pair` starts a pairing, anything else
is the usual handshake. The PAKE part of a pairing runs inside the listener's handshake
time limit and is charged at its gate like a handshake (a wrong code as a wrong key);
what follows (people compare the words and decide) runs as a task of the node. Every
change of the invitation is an `invitation` engine event. See docs/pairing.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from app.errors import P2PError
from app.net import beacon, identity, pairing
from app.net.framing import FrameError, read_message
from app.net.handshake import HANDSHAKE_MAX_FRAME, HandshakeError

if TYPE_CHECKING:
    from app.engine.node import Node

log = logging.getLogger(__name__)


class Invites:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.current: pairing.Invitation | None = None

    @property
    def accepting(self) -> bool:
        """Is an invitation open, so that a connection may start a pairing?"""
        return self.current is not None and self.current.open

    def open(self, on_change: Callable[[pairing.Invitation], None] | None = None,
             lifetime: float | None = None) -> pairing.Invitation:
        node = self.node
        if node.listen_address is None:
            raise P2PError("cannot invite a device: this node does not accept connections")
        if self.current is not None:
            self.current.cancel()

        def changed(inv: pairing.Invitation) -> None:
            self._changed(inv)
            if on_change is not None:
                on_change(inv)

        inv = pairing.Invitation(node.opts.secret, lifetime=lifetime, on_change=changed)
        self.current = inv
        if node.opts.discovery:
            packet = beacon.encode(inv.nameplate, node.listen_address[1], node.opts.name,
                                   node.device_id)
            node._spawn(beacon.send_while(lambda: inv.open, packet, node.opts.discovery_port))
        log.info("invitation %s open for %d s", inv.code, round(inv.lifetime))
        self._changed(inv)  # the opening is an `invitation` event too: it has the code
        return inv

    async def close(self) -> None:
        """The node stops: a device that is asking is told no (briefly)."""
        if self.current is not None:
            self.current.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.current.outcome), 1.0)

    # --- the listener's side ------------------------------------------------------------
    @staticmethod
    async def first_message(reader: asyncio.StreamReader, timeout: float) -> dict:
        """The accepted peer's first message, read before we say anything."""
        try:
            return await asyncio.wait_for(read_message(reader, HANDSHAKE_MAX_FRAME), timeout)
        except FrameError as e:
            raise HandshakeError("protocol", f"the peer sent a bad frame: {e}") from e
        except (EOFError, ConnectionError) as e:
            raise HandshakeError("closed", "the peer closed the connection during the "
                                 "handshake") from e

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     first: dict, on_reject) -> pairing.InviterLink:
        """The PAKE part of a pairing; failures come out as the handshake's would."""
        peername = writer.get_extra_info("peername")
        address = f"{peername[0]}:{peername[1]}" if peername else "?"
        try:
            return await pairing.accept(reader, writer, first, self.current,
                                        self.node.identity, self.node.opts.name, address)
        except pairing.PairingError as e:
            # a wrong code counts as a wrong key at the gate (and has ended the invitation)
            wrong = e.code == "code"
            error = HandshakeError("auth" if wrong else "protocol",
                                   "a wrong pairing code: the invitation is over" if wrong
                                   else str(e))
            on_reject(error)
            raise error from None

    def settle(self, link: pairing.InviterLink) -> None:
        """The people decide, then the key goes (or not): a task of the node."""
        self.node._spawn(pairing.settle(link))

    # --- telling ------------------------------------------------------------------------
    def _changed(self, inv: pairing.Invitation) -> None:
        if inv is not self.current:
            return  # a replaced invitation's last word: only the open one is news
        peer = inv.peer
        if inv.state == pairing.ASKING:
            log.debug("%s (%s) at %s knows the code; confirmation words: %s", peer.name,
                      identity.short_id(peer.device_id), peer.address, peer.words)
        elif inv.state == pairing.PAIRED:
            log.info("paired with %s (%s): it has the share key now", peer.name,
                     identity.short_id(peer.device_id))
        elif inv.why:  # the CLI ends with it, the app shows it: here for -v only
            log.debug("invitation %s: %s", inv.code, inv.why)
        self.node.emit("invitation", {
            "code": inv.code, "state": inv.state, "why": inv.why, "left": round(inv.left()),
            "peer": None if peer is None else {"device_id": peer.device_id,
                                               "name": peer.name, "address": peer.address,
                                               "words": peer.words}})
