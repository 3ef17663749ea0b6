"""Pairing by a short code: how a device that does not know the share key gets it.

See docs/pairing.md. The inviting device opens an `Invitation` (a code such as
`7-apple-river`, app/net/pairwords.py) and shows the code; the joining device dials it
(its address from the invitation's beacon, app/net/beacon.py, or `--peer`) and both run
SPAKE2 with the code as the password, inside TLS:

    joiner                                   inviter (the TLS server)
    pair   {nameplate, device, name, cert, spake}  ->
                                         <-  pair   {device, name, cert, spake}
    proof  {proof, sig}                          ->   wrong: the invitation is burned
                                         <-  proof  {proof}
          both show the other's name and the same confirmation words
    confirm {}  (a no, on either side: error {code: "declined"})  ->
                                         <-  key {nonce, box}
    thanks {}                                    ->

The proofs are HMACs keyed by the PAKE key over both certificates, so a relay cannot pass
them on; the joiner also signs, so the inviter learns its device ID for sure. The inviter
answers a proof only after it checked it, so a wrong code learns nothing, and it ends the
invitation at once: one try per code, on both sides. Nothing sent is derived from the
code but SPAKE2's own messages, which give an eavesdropper no test of a guess. The share
key goes last, encrypted (AES-GCM) with a key derived from the PAKE key.

Each side is a small state machine (`_Turns`) that refuses a message out of turn. The
I/O around it is split where the time scales change: `accept` (the inviter's first two
messages) runs inside the listener's handshake time limit like any handshake; `settle`
(a person reads the words and decides) runs outside it, bounded by the invitation's
expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app.net.framing import FrameError, read_message, write_message
from app.net.identity import Identity, client_context, device_id_from_der, verify_signature
from app.net.pairwords import confirmation_words, new_code, parse_code
from app.net.peertext import clipped, shown_name

MAGIC = "p2psync-pair"
VERSION = 1
TTL = 600.0  # an invitation lives 10 minutes
TTL_ENV = "P2PSYNC_INVITE_TTL"  # seconds; for tests of expiry only
MAX_FRAME = 64 * 1024
STEP_TIMEOUT = 10.0  # the joiner's wait for each machine step (not a person's)
THANKS_TIMEOUT = 10.0
_ID_JOINER = b"p2psync pairing: joiner"
_ID_INVITER = b"p2psync pairing: inviter"

# what became of an invitation
OPEN = "open"  # waiting for a device
ASKING = "asking"  # a device proved the code: the people decide
PAIRED = "paired"  # the share key went over
BURNED = "burned"  # a wrong code was tried: the invitation is over
DECLINED = "declined"  # a person said no (or the other device left before saying yes)
EXPIRED = "expired"
CANCELLED = "cancelled"  # closed on this side before anything happened
ENDED = frozenset({PAIRED, BURNED, DECLINED, EXPIRED, CANCELLED})


class PairingError(Exception):
    """Why a pairing failed. `code`: "code" (a wrong code: the invitation is burned),
    "declined", "expired", "none" (no invitation there), "busy", "protocol", "identity",
    "closed", "timeout", "cancelled". str() is one sentence to show."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Peer:
    """The device on the other end of a pairing, once the code checked out."""

    device_id: str
    name: str
    words: str  # the confirmation words, the same on both screens
    address: str = ""  # the inviter's host:port as dialled; the joiner's host (its port is
    # a random outgoing one, which says nothing)


def ttl() -> float:
    try:
        return float(os.environ.get(TTL_ENV) or TTL)
    except ValueError:
        return TTL


# --- the inviting side ------------------------------------------------------------------
class Invitation:
    """One code, one share key, one try. Lives on the inviting node's event loop.

    `on_change(invitation)` is called at every change of `state` (and when a device
    asks); `outcome` is a future of the final state; `peer` is the device that proved
    the code. The local person answers with `decide(ok)`.
    """

    def __init__(self, share_key: str, *, code: str | None = None,
                 lifetime: float | None = None,
                 on_change: Callable[[Invitation], None] | None = None) -> None:
        self.code = code or new_code()
        self.nameplate, self.code = parse_code(self.code)
        self.share_key = share_key
        self.lifetime = ttl() if lifetime is None else lifetime
        self.expires = time.monotonic() + self.lifetime
        self.state = OPEN
        self.peer: Peer | None = None
        self.why = ""  # a sentence for an ended state
        self.busy = False  # a device is between its hello and its proof
        self.on_change = on_change
        self.outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._decision: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._timer = asyncio.get_running_loop().call_later(self.lifetime, self._expire)

    def left(self) -> float:
        return max(0.0, self.expires - time.monotonic())

    @property
    def open(self) -> bool:
        return self.state == OPEN

    def decide(self, ok: bool) -> None:
        """This device's person said yes or no to the device that proved the code."""
        if not self._decision.done():
            self._decision.set_result(ok)

    def cancel(self) -> None:
        if self.state == OPEN:
            self._end(CANCELLED, "the invitation was cancelled on this device")
        else:
            self.decide(False)

    def _expire(self) -> None:
        if self.state in (OPEN, ASKING):
            minutes = self.lifetime / 60
            span = f"{minutes:g} minutes" if minutes >= 1 else f"{self.lifetime:g} s"
            self._end(EXPIRED, f"the code {self.code} expired after {span}")

    def _ask(self, peer: Peer) -> None:
        self.peer = peer
        self._set(ASKING)

    def _end(self, state: str, why: str) -> None:
        if self.state in ENDED:
            return
        self.why = why
        self._timer.cancel()
        self._set(state)
        self.decide(False)
        if not self.outcome.done():
            self.outcome.set_result(state)

    def _set(self, state: str) -> None:
        self.state = state
        if self.on_change is not None:
            self.on_change(self)


@dataclass
class InviterLink:
    """A joiner that proved the code: what `settle` needs to finish with it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    invitation: Invitation
    turns: _InviterTurns


async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: dict,
                 invitation: Invitation | None, identity: Identity, name: str,
                 address: str) -> InviterLink:
    """The inviter's first steps, up to the checked proof; raises PairingError (and
    tells the joiner why). A wrong code burns the invitation before the joiner hears it."""
    turns = _InviterTurns(invitation, identity, name, address)
    try:
        await write_message(writer, turns.hello(first))
        await write_message(writer, turns.proof(await read_message(reader, MAX_FRAME)))
    except PairingError as e:
        turns.release()
        await _tell(writer, e)
        raise
    except (FrameError, EOFError, ConnectionError, ssl.SSLError, OSError) as e:
        turns.release()
        raise PairingError("closed", f"the joining device left during the pairing ({e})") \
            from None
    except asyncio.CancelledError:
        turns.release()
        raise
    return InviterLink(reader, writer, turns.invitation, turns)


async def settle(link: InviterLink) -> str:
    """Wait for both people's answers (at most until the invitation expires), then send
    the key or the refusal. Returns the invitation's final state; closes the connection."""
    inv = link.invitation
    joiner = asyncio.ensure_future(read_message(link.reader, MAX_FRAME))
    try:
        state, why = await _answers(link, joiner)
        if state == PAIRED:
            await write_message(link.writer, link.turns.key_box(inv.share_key))
            # it has the key, or finds out on its side that it has not
            with contextlib.suppress(PairingError, FrameError, EOFError, ConnectionError,
                                     OSError, TimeoutError):
                link.turns.thanks(await asyncio.wait_for(
                    read_message(link.reader, MAX_FRAME), THANKS_TIMEOUT))
        inv._end(state, why)
    except PairingError as e:
        inv._end(DECLINED, str(e))
    except (FrameError, EOFError, ConnectionError, ssl.SSLError, OSError) as e:
        inv._end(DECLINED, f"the joining device left before the key went over ({e})")
    finally:
        joiner.cancel()
        with contextlib.suppress(BaseException):
            await joiner
        link.writer.close()
    return inv.state


async def _answers(link: InviterLink, joiner: asyncio.Future) -> tuple[str, str]:
    """(PAIRED, "") once both said yes; else the final state and why."""
    inv, peer = link.invitation, link.turns.peer
    ours: bool | None = None
    theirs: bool | None = None
    while ours is None or theirs is None:
        waits = [w for w, pending in ((inv._decision, ours is None),
                                      (joiner, theirs is None)) if pending]
        done, _ = await asyncio.wait(waits, timeout=inv.left() + 0.1,
                                     return_when=asyncio.FIRST_COMPLETED)
        if not done or inv.state in ENDED:  # expired (or cancelled) while asking
            await _tell(link.writer, PairingError("expired", inv.why or "expired"))
            return inv.state if inv.state in ENDED else EXPIRED, inv.why
        if inv._decision in done and ours is None:
            ours = inv._decision.result()
            if not ours:
                await _tell(link.writer, PairingError(
                    "declined", f"{link.turns.name} declined the pairing"))
                return DECLINED, f"you declined to pair with {peer.name}"
        if joiner in done and theirs is None:
            theirs = link.turns.answer(joiner.result())
            if not theirs:
                return DECLINED, f"{peer.name} declined the pairing"
    return PAIRED, ""


# --- the joining side -------------------------------------------------------------------
Decide = Callable[[Peer], Awaitable[bool]]


@dataclass(frozen=True)
class Joined:
    share_key: str
    peer: Peer


async def join(host: str, port: int, code: str, identity: Identity, name: str,
               decide: Decide) -> Joined:
    """Pair with the invitation at host:port; `decide(peer)` asks this device's person.

    Raises PairingError; the caller maps it to what the person sees.
    """
    address = f"{host}:{port}"
    try:
        async with asyncio.timeout(STEP_TIMEOUT):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=client_context(identity), server_hostname=None)
    except (TimeoutError, OSError, ssl.SSLError) as e:
        raise PairingError("closed", f"cannot reach {address}: "
                           f"{e.strerror if isinstance(e, OSError) and e.strerror else e}") \
            from None
    try:
        return await _join(reader, writer, address, code, identity, name, decide)
    except (FrameError, EOFError, ConnectionError, ssl.SSLError) as e:
        raise PairingError("closed", f"{address} closed the connection during the pairing "
                           f"({type(e).__name__})") from None
    except TimeoutError:
        raise PairingError("timeout", f"{address} did not answer the pairing in time") \
            from None
    finally:
        writer.close()


async def _join(reader, writer, address, code, identity, name, decide) -> Joined:
    ssl_object = writer.get_extra_info("ssl_object")
    tls_cert = ssl_object.getpeercert(binary_form=True) if ssl_object else None
    turns = _JoinerTurns(code, identity, name, tls_cert or b"", address)
    async with asyncio.timeout(STEP_TIMEOUT):
        await write_message(writer, turns.hello())
        await write_message(writer, turns.proof(await read_message(reader, MAX_FRAME)))
        peer = turns.checked(await read_message(reader, MAX_FRAME))
    inviter = asyncio.ensure_future(read_message(reader, MAX_FRAME))  # a refusal, early
    mine = asyncio.ensure_future(decide(peer))
    try:
        await asyncio.wait({inviter, mine}, return_when=asyncio.FIRST_COMPLETED)
        if inviter.done():  # the inviter ended it while this person was reading
            turns.key(inviter.result())  # raises: its refusal, or a message out of turn
        if not mine.result():
            await _tell(writer, PairingError("declined", f"{name} declined the pairing"))
            raise PairingError("declined", f"you declined to pair with {peer.name}")
        await write_message(writer, turns.confirm())
        async with asyncio.timeout(ttl() + STEP_TIMEOUT):  # the inviter's person decides
            share_key = turns.key(await inviter)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(write_message(writer, turns.thanks()), 1.0)
        return Joined(share_key, peer)
    finally:
        for task in (inviter, mine):
            task.cancel()


# --- the turns: one state machine per side ------------------------------------------------
class _Turns:
    """Whose turn it is, and the one message type each turn accepts. An `error` message
    from the other side ends the pairing with its reason; anything else out of turn is a
    protocol error."""

    state = ""
    EXPECTS: dict[str, frozenset[str]] = {}

    def take(self, msg: dict) -> dict:
        kind = msg.get("t")
        if kind == "error":
            code = msg.get("code") if isinstance(msg.get("code"), str) else "protocol"
            text = msg.get("msg") if isinstance(msg.get("msg"), str) else ""
            raise PairingError(code, clipped(text, 200) or f"the other device ended it ({code})")
        if kind not in self.EXPECTS.get(self.state, ()):
            raise PairingError("protocol", f"the other device sent {clipped(str(kind), 200)!r} out "
                               f"of turn (waiting for {self._waiting()})")
        return msg

    def _waiting(self) -> str:
        return " or ".join(sorted(self.EXPECTS.get(self.state, ()))) or "nothing"


class _InviterTurns(_Turns):
    EXPECTS = {"hello": frozenset({"pair"}), "proof": frozenset({"proof"}),
               "answer": frozenset({"confirm"}), "thanks": frozenset({"thanks"})}

    def __init__(self, invitation: Invitation | None, identity: Identity, name: str,
                 address: str) -> None:
        self.invitation = invitation
        self.identity, self.name = identity, name
        self.address = address.rpartition(":")[0] or address  # the joiner's host
        self.state = "hello"
        self.holding = False  # this session holds the invitation's `busy`
        self.peer: Peer | None = None
        self._key = b""
        self._transcript = b""
        self._joiner_cert = b""
        self._joiner = ("", "")
        self._spake = None

    def hello(self, msg: dict) -> dict:
        self.take(msg)
        inv = self.invitation
        if msg.get("magic") != MAGIC or msg.get("v") != VERSION:
            raise PairingError("protocol", "the joining device speaks another pairing protocol")
        nameplate, device = msg.get("nameplate"), msg.get("device")
        name, cert, spake = msg.get("name"), msg.get("cert"), msg.get("spake")
        if not (type(nameplate) is int and isinstance(device, str) and isinstance(name, str)
                and isinstance(cert, bytes) and isinstance(spake, bytes)):
            raise PairingError("protocol", "the joining device sent a malformed pairing hello")
        if device != device_id_from_der(cert):
            raise PairingError("identity", "the joining device's ID does not match its "
                               "certificate")
        if inv is None or inv.state not in (OPEN,):
            raise PairingError("none", f"{self.name} has no open invitation (it expired, was "
                               "used or was cancelled): ask for a new code")
        if nameplate != inv.nameplate:
            raise PairingError("none", f"{self.name} has no invitation numbered {nameplate} "
                               "(check the number of the code)")
        if inv.busy:
            raise PairingError("busy", f"another device is pairing with {self.name} right "
                               "now; try again in a few seconds")
        inv.busy = self.holding = True
        from spake2 import SPAKE2_B  # slow to import: only when pairing

        self._spake = SPAKE2_B(inv.code.encode(), idA=_ID_JOINER, idB=_ID_INVITER)
        ours = self._spake.start()
        try:
            self._key = self._spake.finish(spake)
        except Exception:  # noqa: BLE001 - spake2 raises several kinds
            raise PairingError("protocol", "the joining device sent an invalid SPAKE2 "
                               "message") from None
        self._joiner_cert, self._joiner = cert, (device, shown_name(name))
        self._transcript = _transcript(nameplate, self.identity.cert_der, cert)
        self.state = "proof"
        return {"t": "pair", "magic": MAGIC, "v": VERSION, "device": self.identity.device_id,
                "name": self.name, "cert": self.identity.cert_der, "spake": ours}

    def proof(self, msg: dict) -> dict:
        self.take(msg)
        proof, sig = msg.get("proof"), msg.get("sig")
        if not (isinstance(proof, bytes) and isinstance(sig, bytes)):
            raise PairingError("protocol", "the joining device sent a malformed proof")
        inv = self.invitation
        device, name = self._joiner
        if not hmac.compare_digest(proof, _mac(self._key, b"joiner", self._transcript)):
            inv._end(BURNED, f"{name or 'a device'} at {self.address} tried a wrong code: "
                     "this invitation is over; make a new one to try again")
            raise PairingError("code", f"wrong code: {self.name}'s invitation is over now "
                               "(one try per code); ask for a new code")
        if not verify_signature(self._joiner_cert, sig, b"joiner" + self._transcript):
            raise PairingError("identity", "the joining device's signature does not match "
                               "its certificate")
        self.peer = Peer(device, name, _words(self._key, self._transcript), self.address)
        self.holding = inv.busy = False
        inv._ask(self.peer)
        self.state = "answer"
        return {"t": "proof", "proof": _mac(self._key, b"inviter", self._transcript)}

    def answer(self, msg: dict) -> bool:
        """The joining person said yes (a no comes as an `error`, which `take` raises)."""
        self.take(msg)
        self.state = "thanks"
        return True

    def key_box(self, share_key: str) -> dict:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = secrets.token_bytes(12)
        box = AESGCM(_box_key(self._key, self._transcript)).encrypt(
            nonce, share_key.encode("utf-8"), self._transcript)
        return {"t": "key", "nonce": nonce, "box": box}

    def thanks(self, msg: dict) -> None:
        self.take(msg)
        self.state = "done"

    def release(self) -> None:
        """The session ended before its proof: the invitation waits for another try."""
        if self.holding and self.invitation is not None:
            self.invitation.busy = self.holding = False


class _JoinerTurns(_Turns):
    # "decide": the people read the words; only an `error` (a refusal) may come then
    EXPECTS = {"hello": frozenset({"pair"}), "proof": frozenset({"proof"}),
               "decide": frozenset(), "key": frozenset({"key"})}

    def __init__(self, code: str, identity: Identity, name: str, tls_cert: bytes,
                 address: str) -> None:
        from spake2 import SPAKE2_A

        self.nameplate, self.code = parse_code(code)
        self.identity, self.name, self.tls_cert, self.address = identity, name, tls_cert, address
        self._spake = SPAKE2_A(self.code.encode(), idA=_ID_JOINER, idB=_ID_INVITER)
        self._key = b""
        self._transcript = b""
        self.peer: Peer | None = None
        self.state = "start"

    def hello(self) -> dict:
        self.state = "hello"
        return {"t": "pair", "magic": MAGIC, "v": VERSION, "nameplate": self.nameplate,
                "device": self.identity.device_id, "name": self.name,
                "cert": self.identity.cert_der, "spake": self._spake.start()}

    def proof(self, msg: dict) -> dict:
        if msg.get("t") == "hello":  # a node's share handshake: nothing to pair with there
            who = msg.get("name") if isinstance(msg.get("name"), str) else "that device"
            raise PairingError("none", f"{shown_name(who)} at {self.address} has no open "
                               "invitation (it expired, was used or was cancelled): ask for "
                               "a new code")
        self.take(msg)
        device, name, cert, spake = (msg.get(k) for k in ("device", "name", "cert", "spake"))
        if not (isinstance(device, str) and isinstance(name, str) and isinstance(cert, bytes)
                and isinstance(spake, bytes)):
            raise PairingError("protocol", "the inviting device sent a malformed answer")
        if cert != self.tls_cert or device != device_id_from_der(cert):
            raise PairingError("identity", "the inviting device's certificate does not match "
                               "its TLS connection")
        try:
            self._key = self._spake.finish(spake)
        except Exception:  # noqa: BLE001
            raise PairingError("protocol", "the inviting device sent an invalid SPAKE2 "
                               "message") from None
        self._transcript = _transcript(self.nameplate, cert, self.identity.cert_der)
        self.peer = Peer(device, shown_name(name), _words(self._key, self._transcript),
                         self.address)
        self.state = "proof"
        signed = b"joiner" + self._transcript
        return {"t": "proof", "proof": _mac(self._key, b"joiner", self._transcript),
                "sig": self.identity.sign(signed)}

    def checked(self, msg: dict) -> Peer:
        self.take(msg)
        proof = msg.get("proof")
        if not (isinstance(proof, bytes)
                and hmac.compare_digest(proof, _mac(self._key, b"inviter", self._transcript))):
            raise PairingError("code", "the inviting device could not prove the code")
        self.state = "decide"
        return self.peer

    def confirm(self) -> dict:
        self.state = "key"
        return {"t": "confirm"}

    def key(self, msg: dict) -> str:
        self.take(msg)
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce, box = msg.get("nonce"), msg.get("box")
        if not (isinstance(nonce, bytes) and isinstance(box, bytes) and len(nonce) == 12):
            raise PairingError("protocol", "the inviting device sent a malformed key message")
        try:
            key = AESGCM(_box_key(self._key, self._transcript)).decrypt(
                nonce, box, self._transcript).decode("utf-8")
        except (InvalidTag, UnicodeDecodeError):
            raise PairingError("protocol", "the share key did not decrypt") from None
        if not key:
            raise PairingError("protocol", "the inviting device sent an empty share key")
        self.state = "done"
        return key

    def thanks(self) -> dict:
        return {"t": "thanks"}


# --- helpers ----------------------------------------------------------------------------
def _transcript(nameplate: int, inviter_cert: bytes, joiner_cert: bytes) -> bytes:
    return (str(nameplate).encode() + b"|" + hashlib.sha256(inviter_cert).digest()
            + hashlib.sha256(joiner_cert).digest())


def _mac(key: bytes, label: bytes, transcript: bytes) -> bytes:
    return hmac.new(key, b"p2psync pairing: " + label + b"|" + transcript,
                    hashlib.sha256).digest()


def _words(key: bytes, transcript: bytes) -> str:
    return confirmation_words(_mac(key, b"words", transcript))


def _box_key(key: bytes, transcript: bytes) -> bytes:
    return _mac(key, b"share key box", transcript)


async def _tell(writer: asyncio.StreamWriter, error: PairingError) -> None:
    """The other side's reason for our end of it, best effort (at most 1 s)."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(write_message(
            writer, {"t": "error", "code": error.code, "msg": str(error)}), 1.0)


__all__ = ["ASKING", "BURNED", "CANCELLED", "DECLINED", "ENDED", "EXPIRED", "Invitation",
           "InviterLink", "Joined", "OPEN", "PAIRED", "Peer", "PairingError", "accept",
           "join", "settle"]
