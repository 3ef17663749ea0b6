"""The local control socket: `status` asks a running node for its role and peers,
and (`{"cmd": "transfers"}`) for the downloads in progress, for the `why` of files.

A Unix socket (see Config.folder_paths for where), one JSON request line, one JSON
answer line. Only this user may serve it or ask it: its dir is ours and 0700, and
both ends check the path and the other process's uid (app/core/private.py). A path
that belongs to another user, or is not a socket, is refused (NotPrivateError, one
line), never bound over, connected to or removed; a socket of ours that nobody
answers on (a node that crashed) is stale, and replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

from app.core import private
from app.core.private import NotPrivateError

__all__ = ["ControlServer", "NotPrivateError", "query"]


class ControlServer:
    def __init__(self, path: Path, info: Callable[[], dict],
                 transfers: Callable[[], dict] | None = None) -> None:
        self.path = path
        self.info = info
        self.transfers = transfers or dict  # path -> [bytes done, size]
        self._server: asyncio.base_events.Server | None = None
        self._bound: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket we made

    async def start(self) -> None:
        """Serve `info` at the path; RuntimeError when a node of ours already does.

        NotPrivateError when the path or its dir is not ours (or not a socket); OSError
        when the socket cannot be made.
        """
        private.private_dir(self.path.parent, "control socket dir", hint=private.SOCKET_HINT)
        if private.check_socket(self.path):
            if query(self.path, timeout=0.5) is not None:
                raise RuntimeError("a node is already running for this folder")
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # ours, and nobody answers: left by a node that crashed
        self._server = await asyncio.start_unix_server(self._handle, path=os.fspath(self.path))
        os.chmod(self.path, 0o600)
        st = os.lstat(self.path)
        self._bound = (st.st_dev, st.st_ino)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None and not private.peer_is_us(sock):
                return  # another user's process: nothing to tell it
            line = await asyncio.wait_for(reader.readline(), 2)
            answer = self.transfers() if _command(line) == "transfers" else self.info()
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, OSError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        """Stop serving and remove the socket, only if it is still the one we made."""
        if self._server is not None:
            self._server.close()
        if self._bound is None:
            return
        with contextlib.suppress(OSError):
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._bound:
                self.path.unlink()
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


def query(path: Path, timeout: float = 1.0, cmd: str = "status") -> dict | None:
    """Ask the node behind `path`; None when no node is running there.

    Raises NotPrivateError when the path, its dir or the process answering is not
    this user's: what such a socket says is never taken for our node's word.
    """
    if not private.check_socket(path):
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(os.fspath(path))
            private.check_peer(s, path)
            s.sendall(json.dumps({"cmd": cmd}).encode() + b"\n")
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
