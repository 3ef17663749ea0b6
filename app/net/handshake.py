"""The handshake that turns a TLS connection into an authenticated peer.

See docs/architecture.md, "Handshake". Both sides send a hello (magic, protocol
version, device ID, certificate, SPAKE2 message), then an auth message: an HMAC
proof keyed by the SPAKE2 result and a signature by the device key, both over a
transcript of the two certificates. A matching proof shows the peer knows the
share key; the certificates in the transcript stop a relay from passing proofs on;
the signature shows the client owns the certificate it claims (TLS showed that for
the server). The accepting side checks the client's proof before it sends its own,
so a stranger guessing the key gets nothing back but a refusal: each guess costs it
one whole handshake, which the listener's gate (app/net/gate.py) counts and throttles.
Nothing about the folder is sent here.

Every failure comes out as a HandshakeError with a code the caller can act on and
one sentence it can log or show. The caller owns the connection and closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.net.framing import FrameError, read_message, write_message
from app.net.identity import Identity, device_id_from_der, verify_signature
from app.net.peertext import clipped, shown_name

PROTOCOL_VERSION = 1
MAGIC = "p2psync"
# hello and auth are small; a tighter bound than MAX_FRAME limits what an
# unauthenticated peer can make us buffer
HANDSHAKE_MAX_FRAME = 64 * 1024
HELLO_KEYS = frozenset({"t", "magic", "v", "device", "name", "cert", "spake"})
ROLE_CLIENT = b"client"
ROLE_SERVER = b"server"
WRONG_KEY_MSG = "the peer does not know this share key (wrong --secret)"
REFUSED_KEY_MSG = "the peer refused our share key (wrong --secret)"


class HandshakeError(Exception):
    """Why a handshake failed.

    `code` is one of "protocol", "auth", "identity", "timeout", "closed";
    str(e) is one human sentence.
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.peer: PeerInfo | None = None  # who the peer said it was, when it got that far


@dataclass(frozen=True)
class PeerInfo:
    device_id: str
    name: str
    cert_der: bytes
    # the peer's non-standard hello keys (e.g. "listen", "role"; "names": its file-name
    # rules, app.core.namerules.from_wire, absent from older peers)
    extra: dict


async def handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    identity: Identity,
    secret: str,
    name: str,
    *,
    initiator: bool,
    extra: dict | None = None,
    timeout: float = 10.0,
    on_reject: Callable[[HandshakeError], None] | None = None,
    first: dict | None = None,
) -> PeerInfo:
    """Authenticate the peer on an open TLS connection; the initiator is the TCP client.

    Returns who the peer is once both share-key proofs and its signature check out.
    Raises only HandshakeError (and ValueError, before any I/O, when `extra` tries
    to override a standard hello key, which is a bug in the caller). `on_reject` is
    called with a fault we found before the peer is told of it: a guesser that tries
    again at once finds its last try already counted. `first` is the peer's first
    message when the caller has read it already (to tell a pairing from a handshake).
    A failure after the peer's hello carries it as `error.peer` (its name, claimed).
    """
    extra = dict(extra or {})
    clash = HELLO_KEYS & extra.keys()
    if clash:
        raise ValueError(f"extra hello keys clash with standard ones: {sorted(clash)}")
    run = _Run(reader, writer, identity, secret, name, initiator, extra, first)
    try:
        async with asyncio.timeout(timeout):
            return await run.exchange()
    except _Reject as e:  # we found the fault: tell the peer why we close
        error = HandshakeError(e.code, str(e))
        error.peer = run.peer
        if on_reject is not None:
            on_reject(error)
        await _tell_peer(writer, e)
        raise error from None
    except HandshakeError as e:
        e.peer = run.peer
        raise
    except TimeoutError:  # before OSError: TimeoutError is an OSError
        raise HandshakeError(
            "timeout", f"the peer did not complete the handshake within {timeout:g} s"
        ) from None
    except FrameError as e:
        raise HandshakeError("protocol", f"the peer sent a bad frame: {e}") from e
    except (EOFError, ConnectionError, ssl.SSLError) as e:  # EOFError: IncompleteReadError too
        raise HandshakeError(
            "closed", "the peer closed the connection during the handshake"
        ) from e
    except OSError as e:
        raise HandshakeError("closed", f"the connection failed during the handshake ({e})") from e
    except Exception as e:
        raise HandshakeError("protocol", f"the handshake failed unexpectedly ({e!r})") from e


@dataclass
class _Run:
    """The inputs of one handshake, so each step can be a small method."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    identity: Identity
    secret: str
    name: str
    initiator: bool
    extra: dict
    first: dict | None = None
    peer: PeerInfo | None = None

    async def exchange(self) -> PeerInfo:
        tls_peer_cert = self._tls_peer_cert() if self.initiator else None
        spake = _spake(self.initiator, self.secret)
        await write_message(self.writer, self._hello(spake.start()))
        hello = await self._expect("hello")
        peer = self.peer = self._check_hello(hello, tls_peer_cert)
        key = self._finish_spake(spake, hello["spake"])
        if self.initiator:
            transcript = _fp(peer.cert_der) + _fp(self.identity.cert_der)
            mine, theirs = ROLE_CLIENT, ROLE_SERVER
        else:
            transcript = _fp(self.identity.cert_der) + _fp(peer.cert_der)
            mine, theirs = ROLE_SERVER, ROLE_CLIENT
        if self.initiator:
            await write_message(self.writer, self._auth(key, mine + transcript))
            self._check_auth(await self._expect("auth"), key, theirs + transcript, peer)
        else:  # the client proves first: a wrong key learns nothing from us, not even a proof
            self._check_auth(await self._expect("auth"), key, theirs + transcript, peer)
            await write_message(self.writer, self._auth(key, mine + transcript))
        return peer

    def _tls_peer_cert(self) -> bytes:
        """The server certificate TLS saw: the hello must claim this same one."""
        ssl_object = self.writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            raise _Reject(
                "identity", "the connection has no TLS server certificate to check the peer by"
            )
        return der

    def _hello(self, spake_msg: bytes) -> dict:
        return {
            **self.extra,
            "t": "hello",
            "magic": MAGIC,
            "v": PROTOCOL_VERSION,
            "device": self.identity.device_id,
            "name": self.name,
            "cert": self.identity.cert_der,
            "spake": spake_msg,
        }

    def _auth(self, key: bytes, transcript: bytes) -> dict:
        proof = hmac.new(key, transcript, hashlib.sha256).digest()
        return {"t": "auth", "proof": proof, "sig": self.identity.sign(transcript)}

    async def _expect(self, kind: str) -> dict:
        """The next message, which must be `kind`; a peer's error becomes ours."""
        msg, self.first = self.first or await read_message(self.reader, HANDSHAKE_MAX_FRAME), None
        if msg["t"] == kind:
            return msg
        if msg["t"] == "error":
            raise _peer_error(msg)
        raise _Reject("protocol", f"the peer sent {clipped(msg['t'])!r} instead of {kind!r}")

    def _check_hello(self, hello: dict, tls_peer_cert: bytes | None) -> PeerInfo:
        if hello.get("magic") != MAGIC:
            raise _Reject("protocol", "the peer is not a p2psync device (wrong magic)")
        version = hello.get("v")
        if type(version) is not int or version != PROTOCOL_VERSION:
            raise _Reject(
                "protocol",
                f"the peer speaks protocol version {clipped(version)}, "
                f"this device speaks {PROTOCOL_VERSION}",
            )
        device, name, cert = hello.get("device"), hello.get("name"), hello.get("cert")
        if not (
            isinstance(device, str) and isinstance(name, str)
            and isinstance(cert, bytes) and isinstance(hello.get("spake"), bytes)
        ):
            raise _Reject("protocol", "the peer sent a malformed hello")
        if device != device_id_from_der(cert):
            raise _Reject("identity", "the peer's device ID does not match its certificate")
        if tls_peer_cert is not None and cert != tls_peer_cert:
            raise _Reject(
                "identity", "the peer's certificate differs from the one it presented in TLS"
            )
        extra = {k: v for k, v in hello.items() if k not in HELLO_KEYS}
        # Shown in logs, the window and `status`: a member's name of a megabyte, or with
        # a newline (a forged log line) or a terminal's escape codes, is none of those.
        return PeerInfo(device, shown_name(name), cert, extra)

    def _finish_spake(self, spake: Any, peer_msg: bytes) -> bytes:
        try:
            return spake.finish(peer_msg)
        except Exception:  # spake2 raises SPAKEError, ValueError, ...
            raise _Reject("protocol", "the peer sent an invalid SPAKE2 message") from None

    def _check_auth(
        self, auth: dict, key: bytes, transcript: bytes, peer: PeerInfo
    ) -> None:
        proof, sig = auth.get("proof"), auth.get("sig")
        if not (isinstance(proof, bytes) and isinstance(sig, bytes)):
            raise _Reject("protocol", "the peer sent a malformed auth message")
        expected = hmac.new(key, transcript, hashlib.sha256).digest()
        if not hmac.compare_digest(proof, expected):
            raise _Reject("auth", WRONG_KEY_MSG)
        # The server already proved it holds its certificate's key in TLS itself (and
        # its hello names that very certificate), so only the client's signature needs
        # checking; skipping the other keeps X.509 parsing off the `sync` start-up path.
        if not self.initiator and not verify_signature(peer.cert_der, sig, transcript):
            raise _Reject(
                "identity", "the peer's signature does not match its certificate"
            )


class _Reject(HandshakeError):
    """A fault we found in what the peer sent (as opposed to one it reported to us)."""


async def _tell_peer(writer: asyncio.StreamWriter, error: HandshakeError) -> None:
    """Send the peer our reason for closing, best effort and briefly (at most 1 s)."""
    msg = {"t": "error", "code": error.code, "msg": str(error)}
    # the peer may be gone already; our own error matters more than this frame
    with contextlib.suppress(Exception):
        await asyncio.wait_for(write_message(writer, msg), 1.0)


def warm_up() -> None:
    """Import spake2 (and through it cryptography) now, in a worker thread: the first
    handshake would otherwise import it on the event loop (190 ms while a scan ran)."""
    import spake2  # noqa: F401


def _spake(initiator: bool, secret: str) -> Any:
    """SPAKE2 side A for the connecting side, B for the accepting side.

    Imported here: spake2 pulls in cryptography, too slow for every CLI start.
    """
    from spake2 import SPAKE2_A, SPAKE2_B

    side = SPAKE2_A if initiator else SPAKE2_B
    return side(secret.encode("utf-8"))


def _fp(der: bytes) -> bytes:
    return hashlib.sha256(der).digest()


def _peer_error(msg: dict) -> HandshakeError:
    """Our error for the peer's `error` message: it explains why the peer closes."""
    code = msg.get("code")
    if code == "auth":
        return HandshakeError("auth", REFUSED_KEY_MSG)
    said = f'it said: "{clipped(msg.get("msg"))}"'
    if code == "identity":
        return HandshakeError("identity", f"the peer rejected our identity; {said}")
    return HandshakeError("protocol", f"the peer ended the handshake; {said}")


