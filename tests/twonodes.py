"""Two in-process engines on loopback: alpha listens, beta syncs with it once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from app.core.index import RemoteLimits
from app.engine.config import Config
from app.engine.node import Node, NodeOptions
from app.engine.oneshot import sync_once


def sync_beta_with_alpha(tmp_path: Path,
                         on_event: Callable[[str, dict], None] | None = None,
                         beta_limits: RemoteLimits | None = None,
                         alpha_started: Callable[[Node], None] | None = None) -> None:
    """tmp_path/A (alpha, listening) and tmp_path/B (beta): one `sync_once` of beta;
    `beta_limits`: what beta takes of alpha's index (its planning windows);
    `alpha_started`: called with alpha once it started, before beta does."""

    async def main() -> None:
        a = Node(NodeOptions(folder=tmp_path / "A", config=Config(tmp_path / "cfgA"),
                             secret="k", name="alpha", listen=("127.0.0.1", 0)))
        b = Node(NodeOptions(folder=tmp_path / "B", config=Config(tmp_path / "cfgB"),
                             secret="k", name="beta"), on_event=on_event)
        if beta_limits is not None:
            b.index.remote_limits = beta_limits
        await a.start()
        try:
            if alpha_started is not None:
                alpha_started(a)
            await b.start()
            await sync_once(b, [("127.0.0.1", a.listen_address[1])], timeout=30)
        finally:
            await b.stop()
            await a.stop()

    asyncio.run(main())
