"""`run` and `sync`: the engine with no window.

`run` keeps the folder in sync until SIGINT/SIGTERM; `sync` reaches its peers, waits
until both sides hold the same state, and exits. Both build the same Node.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import logging
import os
import sys

from app.aio import unless_stopped
from app.core import platform
from app.engine.config import Config, new_share_key
from app.engine.control import ControlServer
from app.engine.folder import check_apart, checked_folder
from app.engine.node import Node, NodeOptions, node_once_there_is_space
from app.engine.oneshot import discover_server, preview_once, sync_once
from app.engine.preview import PreviewNode
from app.errors import HeldBackError, P2PError, UsageError
from app.net import sharekey
from app.net.keystrength import cli_warning

log = logging.getLogger("p2psync")

DEFAULT_LISTEN = ("0.0.0.0", 22100)
SLOW_STOP_S = 8.0  # a stop still going after this long prints every thread's stack


def stacks_if_stop_hangs() -> None:
    """Arm a dump of every thread's stack to stderr, should the process outlive SLOW_STOP_S.

    A stop that hangs (a thread the engine waits for, an executor joined at exit) is
    otherwise a silent log ending at "stopping". faulthandler's timer runs in C, so it
    prints even when a thread holds the GIL; it is never disarmed: a hang after
    `asyncio.run` returns (at the interpreter's exit) is covered too, and a process that
    exits in time prints nothing.
    """
    with contextlib.suppress(AttributeError, ValueError, OSError, RuntimeError):  # no stderr
        faulthandler.dump_traceback_later(SLOW_STOP_S, exit=False)


def resolve_secret(config: Config, folder, given: str | None, *, create: bool) -> str:
    """--secret, else P2PSYNC_SECRET, else the stored key, else (run/gui) a new one."""
    secret = sharekey.given_key(given)
    stored = config.share_key(folder)
    if secret:
        if secret != stored:
            config.set_share_key(folder, secret)
        return secret
    if stored:
        return stored
    if not create:
        raise UsageError("no share key for this folder yet: pass --secret KEY "
                         "(the key shown by `p2psync run` on the other device)")
    return config.share_key_or_new(folder)  # the first process's key, if several start


def warn_if_weak(typed: str | None) -> None:
    """One stderr line when a key a person typed (--secret, P2PSYNC_SECRET) is easy to guess."""
    line = cli_warning(typed, new_share_key()) if typed else None
    if line:
        print(line, file=sys.stderr)


def build_options(args: argparse.Namespace, *, command: str) -> NodeOptions:
    folder = checked_folder(args.folder)
    config = Config(args.config_dir)
    check_apart(folder, config.dir)
    secret = resolve_secret(config, folder, args.secret, create=command != "sync")
    warn_if_weak(args.secret or os.environ.get("P2PSYNC_SECRET"))
    # a one-shot sync only accepts peers when asked to
    listen = args.listen if command == "sync" else (args.listen or DEFAULT_LISTEN)
    return NodeOptions(
        folder=folder, config=config, secret=secret,
        name=args.name or config.device_name(), listen=listen, peers=list(args.peer),
        discovery=not args.no_discovery, discovery_port=args.discovery_port,
        watch=command == "run", elect=command == "run",
        allow_mass_delete=args.allow_mass_delete,
    )


def main(command: str, args: argparse.Namespace) -> int:
    opts = build_options(args, command=command)
    if command == "sync" and args.json and not args.dry_run:
        raise UsageError("sync: --json goes with --dry-run")
    runner = _run if command == "run" else _preview if args.dry_run else _sync
    return asyncio.run(runner(opts, args))


# --- run -----------------------------------------------------------------------------
async def open_control(node: Node, control: ControlServer) -> None:
    """Serve `status` for the node; a node already running for the folder is exit 2."""
    try:
        await control.start()  # a path not ours: NotPrivateError, one line, exit 2
    except RuntimeError as e:
        raise UsageError(f"{e}: {node.root}") from e
    except OSError as e:
        raise P2PError(f"cannot open the control socket {control.path}: "
                       f"{e.strerror or e}") from None


async def _run(opts: NodeOptions, args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    platform.on_stop_signals(asyncio.get_running_loop(), stop.set)
    node = await node_once_there_is_space(opts, stop)
    if node is None:
        log.info("stopping before the index could be opened")
        return 0
    control = ControlServer(node.fpaths.control_socket, node.node_info, node.transfers)
    try:
        await open_control(node, control)
        if not await unless_stopped(node.start(), stop):
            log.info("stopping before the start ended")
            return 0
        log.info("sharing %s as %s (device %s)", opts.folder, opts.name, node.device_id)
        log.info("share key: %s", opts.secret)
        await stop.wait()
        log.info("stopping")
    finally:
        stacks_if_stop_hangs()
        await control.stop()
        await node.stop()
    return 0


# --- sync ----------------------------------------------------------------------------
async def _sync(opts: NodeOptions, args: argparse.Namespace) -> int:
    if not opts.peers and not opts.discovery:
        raise UsageError("sync needs a peer: pass --peer HOST:PORT, or leave LAN discovery on")
    node = Node(opts)
    work = asyncio.current_task()
    interrupted = []

    def interrupt() -> None:
        interrupted.append(True)
        work.cancel()

    platform.on_stop_signals(asyncio.get_running_loop(), interrupt)
    try:
        await node.start()
        peers = opts.peers or await discover_server(node, opts.discovery_port)
        await sync_once(node, peers, args.timeout)
    except HeldBackError as e:
        raise HeldBackError(f"{e}. Repeat with --allow-mass-delete to apply it.") from None
    except asyncio.CancelledError:
        if not interrupted:
            raise
        work.uncancel()
        raise P2PError("interrupted before the folders agreed") from None
    finally:
        stacks_if_stop_hangs()
        await node.stop()
    return 0


# --- sync --dry-run ----------------------------------------------------------------------
async def _preview(opts: NodeOptions, args: argparse.Namespace) -> int:
    """Connect and take the peers' indexes like `sync`, print what it would do, exit 0."""
    from app.cli.preview import write_json, write_text

    if not opts.peers and not opts.discovery:
        raise UsageError("sync needs a peer: pass --peer HOST:PORT, or leave LAN discovery on")
    work = asyncio.current_task()
    interrupted = []

    def interrupt() -> None:
        interrupted.append(True)
        work.cancel()

    platform.on_stop_signals(asyncio.get_running_loop(), interrupt)
    node = PreviewNode(opts)  # its scratch copy exists from here: stop() removes it
    try:
        await node.start()
        peers = opts.peers or await discover_server(node, opts.discovery_port)
        devices = await preview_once(node, peers, args.timeout)
        preview = node.preview(devices)
        if args.json:
            await asyncio.to_thread(write_json, preview, sys.stdout)
        else:
            await asyncio.to_thread(write_text, preview, node.device_label, sys.stdout)
        sys.stdout.flush()
    except asyncio.CancelledError:
        if not interrupted:
            raise
        work.uncancel()
        raise P2PError("interrupted: nothing was changed") from None
    finally:
        stacks_if_stop_hangs()
        await node.stop()
    return 0
