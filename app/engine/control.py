"""The local control socket: `status` asks a running node for its role and peers.

A Unix socket in the config dir (see Config.folder_paths), one JSON request line,
one JSON answer line. Only this user can reach it (the directory is 0700).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path


class ControlServer:
    def __init__(self, path: Path, info: Callable[[], dict]) -> None:
        self.path = path
        self.info = info
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.path.exists() and query(self.path, timeout=0.5) is not None:
            raise RuntimeError("a node is already running for this folder")
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._handle, path=os.fspath(self.path))
        os.chmod(self.path, 0o600)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(reader.readline(), 2)
            writer.write(json.dumps(self.info()).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, OSError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def query(path: Path, timeout: float = 1.0) -> dict | None:
    """Ask the node behind `path`; None when no node is running there."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(os.fspath(path))
            s.sendall(b'{"cmd": "status"}\n')
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return json.loads(data)
    except (OSError, ValueError):
        return None
