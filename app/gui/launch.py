"""Entry point of the desktop app (the window itself arrives with issue #4)."""

from __future__ import annotations

import argparse

from app.errors import P2PError


def main(args: argparse.Namespace) -> int:
    raise P2PError("the desktop app is not built yet; use `p2psync run --folder DIR` "
                   "(see `p2psync --help`)")
