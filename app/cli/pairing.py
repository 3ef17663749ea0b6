"""`invite` and `join CODE`: pairing two devices by a short code, from the command line.

`invite` starts a node for the folder (like `sync --listen`, accepting only), opens an
invitation (app/net/pairing.py), prints its code alone on a line of stdout, and waits:
once the joining device proved the code and both people said yes, the share key goes
over; then it serves that device's first sync and exits 0. `join` finds the invitation
(its beacon, or `--peer`), proves the code, stores the key it gets for the folder, then
syncs once like `sync`, with the same exit codes.

Both sides print the other device's name and the confirmation words to stderr and ask
"y/N" on stdin (`--yes`: accept without asking). A wrong code ends the invitation on
both sides (exit 4); so does a "no" on either side.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
from dataclasses import replace

from app.core import platform
from app.engine.config import Config
from app.engine.control import ControlServer
from app.engine.folder import check_apart, checked_folder
from app.engine.node import Node, NodeOptions
from app.engine.oneshot import sync_once
from app.errors import P2PError, RefusedError, UnreachableError, UsageError
from app.net import identity

log = logging.getLogger("p2psync")

FIRST_SYNC_WAIT = 30.0  # after the key went over: how long `invite` waits for that device
FIRST_SYNC_MAX = 600.0  # and how long it serves that device's first sync at most


# --- invite ------------------------------------------------------------------------------
def invite(args: argparse.Namespace) -> int:
    from app.cli.headless import build_options

    opts = replace(build_options(args, command="run"), watch=False, elect=False)
    return asyncio.run(_interruptible(_invite(opts, args.yes)))


async def _invite(opts: NodeOptions, yes: bool) -> int:
    from app.cli.headless import open_control
    from app.net import pairing

    node = Node(opts)
    control = ControlServer(node.fpaths.control_socket, node.node_info, node.transfers)
    try:
        await open_control(node, control)
        await node.start()
        asking = asyncio.Event()
        inv = node.invite(on_change=lambda i: asking.set() if i.state == pairing.ASKING
                          else None)
        print(inv.code, flush=True)
        log.info("on the other device: p2psync join %s --folder DIR (this code works once, "
                 "for %s)", inv.code, _span(inv.lifetime))
        asked = asyncio.ensure_future(asking.wait())
        await asyncio.wait({asked, inv.outcome}, return_when=asyncio.FIRST_COMPLETED)
        asked.cancel()
        if asking.is_set():
            loop = asyncio.get_running_loop()
            _ask(inv.peer, yes, lambda ok: loop.call_soon_threadsafe(inv.decide, ok))
        state = await inv.outcome
        if state == pairing.PAIRED:
            await _serve_first_sync(node, inv.peer)
            return 0
        if state == pairing.EXPIRED:
            raise P2PError(f"{inv.why}: no device joined")
        raise RefusedError(inv.why)
    finally:
        await control.stop()
        await node.stop()


async def _serve_first_sync(node: Node, peer) -> None:
    """Stay until the device that just joined has synced with us (its `join` connects
    at once), or FIRST_SYNC_WAIT s without it: it may have found another device."""
    async def until(cond, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                while not cond():
                    node.changed.clear()
                    await node.changed.wait()
            return True
        except TimeoutError:
            return cond()

    if not await until(lambda: peer.device_id in node.peers, FIRST_SYNC_WAIT):
        log.info("%s did not sync with this device within %g s; it has the key, and can "
                 "sync with any device of the share", peer.name, FIRST_SYNC_WAIT)
        return
    if await until(lambda: peer.device_id not in node.peers, FIRST_SYNC_MAX):
        log.info("%s has synced with this device", peer.name)


# --- join --------------------------------------------------------------------------------
def join(args: argparse.Namespace) -> int:
    from app.net.pairwords import CodeError, parse_code

    folder = checked_folder(args.folder)
    try:
        nameplate, code = parse_code(args.code)
    except CodeError as e:
        raise UsageError(f"{e}") from None
    if not args.peer and args.no_discovery:
        raise UsageError("join needs to find the inviting device: leave LAN discovery on, "
                         "or pass --peer HOST:PORT")
    config = Config(args.config_dir)
    check_apart(folder, config.dir)
    config.ensure_dir()
    name = args.name or config.device_name()
    return asyncio.run(_interruptible(_join(args, folder, config, name, nameplate, code)))


async def _join(args, folder, config: Config, name: str, nameplate: int, code: str) -> int:
    from app.net import pairing

    me = identity.load_or_create(config.dir)
    host, port = args.peer[0] if args.peer else await _find(nameplate, args.discovery_port)

    async def decide(peer: pairing.Peer) -> bool:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bool] = loop.create_future()
        _ask(peer, args.yes, lambda ok: loop.call_soon_threadsafe(
            lambda: answer.done() or answer.set_result(ok)))
        return await answer

    try:
        joined = await pairing.join(host, port, code, me, name, decide)
    except pairing.PairingError as e:
        if e.code in ("closed", "timeout"):
            raise UnreachableError(str(e)) from None
        raise RefusedError(str(e)) from None
    replaced = config.share_key(folder) not in (None, joined.share_key)
    config.set_share_key(folder, joined.share_key)
    log.info("paired with %s: the share key is stored for %s%s; syncing with it now",
             joined.peer.name, folder, " (it replaces the key stored before)" if replaced else "")
    opts = NodeOptions(folder=folder, config=config, secret=joined.share_key, name=name,
                       listen=args.listen, discovery=False, discovery_port=args.discovery_port,
                       allow_mass_delete=args.allow_mass_delete)
    node = Node(opts)
    try:
        await node.start()
        await sync_once(node, [(host, port)], args.timeout)
    finally:
        await node.stop()
    return 0


async def _find(nameplate: int, port: int) -> tuple[str, int]:
    """The address of the device that beacons invitation `nameplate` on the LAN."""
    from app.net import beacon

    try:
        heard = await beacon.find(nameplate, port)
    except OSError as e:
        raise UnreachableError(f"{e.strerror}; pass --peer HOST:PORT instead") from None
    if not heard:
        raise UnreachableError(
            f"no device nearby shows invitation {nameplate} (listened {beacon.LISTEN:g} s on "
            f"UDP port {port} via {beacon.where()}): is the code still shown there? is UDP "
            f"port {port} open in the firewall? or pass --peer HOST:PORT")
    if len(heard) > 1:
        who = ", ".join(f"{h.name} at {h.host}:{h.port}" for h in heard)
        raise UsageError(f"{len(heard)} devices show invitation {nameplate} ({who}): pass "
                         "--peer HOST:PORT of the one you mean")
    log.info("found invitation %d on %s at %s:%d", nameplate, heard[0].name, heard[0].host,
             heard[0].port)
    return heard[0].host, heard[0].port


# --- both --------------------------------------------------------------------------------
def _ask(peer, yes: bool, answer) -> None:
    """Show who is on the other end and the words; `answer(ok)` gets the person's reply
    (from a daemon thread that reads stdin: the process never waits for it to exit)."""
    short = identity.short_id(peer.device_id)
    print(f"p2psync: pairing with {peer.name} ({short}) at {peer.address}", file=sys.stderr)
    print(f"p2psync: confirmation words: {peer.words}", file=sys.stderr, flush=True)
    if yes:
        answer(True)
        return
    print(f"Do the same words show on {peer.name}? Pair with it? [y/N] ", end="",
          file=sys.stderr, flush=True)  # here, not in the thread: before any outcome's line
    _PROMPT.open = True

    def read() -> None:
        try:
            line = sys.stdin.readline()
            typed = sys.stdin.isatty()
        except (OSError, ValueError):
            line, typed = "", False
        with _PROMPT.lock:
            if not _PROMPT.open:
                return  # the pairing ended meanwhile (the other side declined)
            _PROMPT.open = False
            if not typed:  # a terminal echoed the answer; a pipe did not: end the line
                print(line.strip() or "(no answer: pass --yes to pair without asking)",
                      file=sys.stderr, flush=True)
        answer(line.strip().lower() in ("y", "yes"))

    threading.Thread(target=read, name="p2psync-confirm", daemon=True).start()


class _PROMPT:
    """Whether the question waits for its answer on stderr's current line."""

    lock = threading.Lock()
    open = False


def _close_prompt() -> None:
    """End a question nobody answered (the pairing ended first) with its line, so the
    line that says how it ended is a line of its own."""
    with _PROMPT.lock:
        if _PROMPT.open:
            _PROMPT.open = False
            print(file=sys.stderr, flush=True)


async def _interruptible(work) -> int:
    """SIGINT/SIGTERM end the pairing with one line (exit 1), never a traceback."""
    task = asyncio.ensure_future(work)
    stopped = []
    platform.on_stop_signals(asyncio.get_running_loop(),
                             lambda: (stopped.append(True), task.cancel()))
    try:
        return await task
    except asyncio.CancelledError:
        if not stopped:
            raise
        raise P2PError("interrupted: the pairing is cancelled") from None
    finally:
        _close_prompt()


def _span(seconds: float) -> str:
    return f"{seconds / 60:g} minutes" if seconds >= 60 else f"{seconds:g} s"
