"""The local control channel: `status` asks a running node for its role and peers,
and (`{"cmd": "transfers"}`) for the downloads in progress, for the `why` of files.

One JSON request line, one JSON answer line, over one of two transports:

- a Unix socket (see Config.folder_paths for where), where AF_UNIX exists: its dir is
  ours and 0700, and both ends check the path and the other process's uid
  (app/core/private.py);
- a loopback TCP socket where it does not (Windows), or with P2PSYNC_PORTABLE=1: the
  node listens on 127.0.0.1 on a random port and writes the port and a random token
  to the socket's path with `.tcp` for `.sock`, 0600 in the same private dir. Any
  local process can connect to a loopback port, and another may hold it once our node
  is gone: so the token never crosses the socket. The client sends a fresh nonce and
  an HMAC of it under the token; a request without the right one gets no answer, and
  the answer carries the node's own HMAC of the nonce, which the client checks.

A path that belongs to another user, or is not what it must be, is refused
(NotPrivateError, one line), never bound over, connected to or removed; an endpoint of
ours that nobody answers on (a node that crashed) is stale, and replaced. `query`
tries both transports, so `status` finds a node whichever one it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from app.core import configdir, platform, private
from app.core.private import NotPrivateError

__all__ = ["ControlServer", "NotPrivateError", "query", "token_file"]

MAX_ENDPOINT = 4096  # bytes of the token file read at most


def token_file(path: Path) -> Path:
    """Where the loopback endpoint (port and token) of the control socket `path` is."""
    return path.with_suffix(".tcp")


class ControlServer:
    def __init__(self, path: Path, info: Callable[[], dict],
                 transfers: Callable[[], dict] | None = None) -> None:
        self.path = path
        self.info = info
        self.transfers = transfers or dict  # path -> [bytes done, size]
        self._server: asyncio.base_events.Server | None = None
        self._token: str | None = None  # the loopback transport's; None: a Unix socket
        self._made: Path | None = None  # the socket or token file we made
        self._bound: tuple[int, int] | None = None  # its (st_dev, st_ino)

    async def start(self) -> None:
        """Serve `info` at the path; RuntimeError when a node of ours already does.

        NotPrivateError when the path or its dir is not ours (or not a socket); OSError
        when the socket cannot be made.
        """
        private.private_dir(self.path.parent, "control socket dir", hint=private.SOCKET_HINT)
        if platform.UNIX_SOCKETS:
            await self._start_unix()
        else:
            await self._start_loopback()
        assert self._made is not None
        st = os.lstat(self._made)
        self._bound = (st.st_dev, st.st_ino)

    async def _start_unix(self) -> None:
        if sys.platform == "win32":
            raise OSError("no Unix sockets here")  # never: platform.UNIX_SOCKETS is False
        if private.check_socket(self.path):
            if query(self.path, timeout=0.5) is not None:
                raise RuntimeError("a node is already running for this folder")
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # ours, and nobody answers: left by a node that crashed
        self._server = await asyncio.start_unix_server(self._handle, path=os.fspath(self.path))
        os.chmod(self.path, 0o600)
        self._made = self.path

    async def _start_loopback(self) -> None:
        endpoint = token_file(self.path)
        if private.check_token_file(endpoint):
            if query(self.path, timeout=0.5) is not None:
                raise RuntimeError("a node is already running for this folder")
            with contextlib.suppress(FileNotFoundError):
                endpoint.unlink()  # ours, and nobody answers: left by a node that crashed
        self._token = secrets.token_hex(32)
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        body = json.dumps({"port": port, "token": self._token}).encode()
        configdir.write_atomic(endpoint, body, 0o600)
        self._made = endpoint

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            if self._token is None and sock is not None and not private.peer_is_us(sock):
                return  # another user's process: nothing to tell it
            line = await asyncio.wait_for(reader.readline(), 2)
            answer = self.transfers() if _command(line) == "transfers" else self.info()
            if self._token is not None:
                nonce = _proven_nonce(line, self._token)
                if nonce is None:
                    return  # no proof of the token, or a wrong one: not one of ours
                answer = {**answer, "proof": _proof(self._token, "node", nonce)}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, OSError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        """Stop serving and remove the socket (or token file), only if it is still ours."""
        if self._server is not None:
            self._server.close()
        if self._bound is None or self._made is None:
            return
        with contextlib.suppress(OSError):
            st = os.lstat(self._made)
            if (st.st_dev, st.st_ino) == self._bound:
                self._made.unlink()
        self._bound = None


def _command(line: bytes) -> str:
    try:
        request = json.loads(line)
    except ValueError:
        return "status"
    return request.get("cmd", "status") if isinstance(request, dict) else "status"


def transfers(path: Path, timeout: float = 1.0) -> dict[str, tuple[int, int]]:
    """The downloads the node behind `path` has in progress: path -> (bytes done, size);
    empty when no node runs there (or it answers nonsense)."""
    answer = query(path, timeout, cmd="transfers") or {}
    return {p: (v[0], v[1]) for p, v in answer.items()
            if isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v)}


def _proof(token: str, who: str, nonce: str) -> str:
    """What only a holder of the token can say about this nonce, as `who`."""
    return hmac.new(token.encode(), f"{who}:{nonce}".encode(), hashlib.sha256).hexdigest()


def _proven_nonce(line: bytes, token: str) -> str | None:
    """The request's nonce when it comes with the client's proof of the token."""
    try:
        request = json.loads(line)
        nonce, proof = request["nonce"], request["proof"]
    except (ValueError, TypeError, KeyError):
        return None
    if not (isinstance(nonce, str) and isinstance(proof, str) and 16 <= len(nonce) <= 128):
        return None
    if not hmac.compare_digest(proof.encode(), _proof(token, "client", nonce).encode()):
        return None
    return nonce


def query(path: Path, timeout: float = 1.0, cmd: str = "status") -> dict | None:
    """Ask the node behind `path` (its Unix socket, else its loopback endpoint); None
    when no node is running there.

    Raises NotPrivateError when the path, its dir or the process answering is not
    this user's: what such a socket says is never taken for our node's word.
    """
    if sys.platform != "win32" and private.check_socket(path):
        answer = _ask_unix(path, timeout, cmd)
        if answer is not None:
            return answer
    endpoint = token_file(path)
    if not private.check_token_file(endpoint):
        return None
    port, token = _read_endpoint(endpoint)
    if port is None:
        return None
    nonce = secrets.token_hex(16)
    answer = _ask(socket.create_connection, ("127.0.0.1", port), timeout, json.dumps(
        {"cmd": cmd, "nonce": nonce, "proof": _proof(token, "client", nonce)}).encode())
    if answer is None:
        return None
    proof = answer.pop("proof", None)
    if not (isinstance(proof, str) and hmac.compare_digest(
            proof.encode(), _proof(token, "node", nonce).encode())):
        return None  # whoever holds that port now is not our node
    return answer


def _ask_unix(path: Path, timeout: float, cmd: str = "status") -> dict | None:
    if sys.platform == "win32":
        return None

    def connect(where: str, timeout: float) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(timeout)
            s.connect(where)
            private.check_peer(s, path)
        except BaseException:
            s.close()
            raise
        return s

    return _ask(connect, os.fspath(path), timeout, json.dumps({"cmd": cmd}).encode())


def _ask(connect: Callable, where: object, timeout: float, request: bytes) -> dict | None:
    try:
        with connect(where, timeout) as s:
            s.settimeout(timeout)
            s.sendall(request + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        answer = json.loads(data)
    except (OSError, ValueError):
        return None
    return answer if isinstance(answer, dict) else None


def _read_endpoint(endpoint: Path) -> tuple[int | None, str]:
    """(port, token) from the token file; (None, "") when it is not one we wrote."""
    try:
        fd = os.open(endpoint, os.O_RDONLY | platform.NOFOLLOW | platform.BINARY)
        try:
            d = json.loads(os.read(fd, MAX_ENDPOINT))
        finally:
            os.close(fd)
        port, token = d["port"], d["token"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, ""
    if not (isinstance(port, int) and 0 < port < 65536 and isinstance(token, str)):
        return None, ""
    return port, token
