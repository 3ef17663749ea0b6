"""The `p2psync` command: argument parsing, exit codes, and one clear line per error.

Nothing here imports Qt: `run`, `sync`, `status` and `id` start fast and work on a
machine without a display. Only `gui` (the default) loads the window, lazily.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO, cast

from app import __version__
from app.engine.folder import checked_folder
from app.errors import P2PError, UsageError
from app.net.peertext import name_problem

EXAMPLES = {
    "run": "example:\n  p2psync run --folder ~/Shared --secret KEY",
    "sync": "examples:\n  p2psync sync --folder ~/Shared --peer 192.168.1.20:22100 --secret KEY"
            "\n  p2psync sync --dry-run --folder ~/Shared",
    "status": "example:\n  p2psync status --folder ~/Shared --json",
    "id": "example:\n  p2psync id",
    "versions": "example:\n  p2psync versions --folder ~/Shared notes/todo.txt",
    "restore": "example:\n  p2psync restore --folder ~/Shared notes/todo.txt --at 20261129-101500",
    "gui": "example:\n  p2psync gui --folder ~/Shared",
    "invite": "example:\n  p2psync invite --folder ~/Shared\n"
              "then, on the other device:\n  p2psync join 7-apple-river --folder ~/Shared",
    "join": "example:\n  p2psync join 7-apple-river --folder ~/Shared",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        # "p2psync: " starts every error line already ("p2psync: p2psync sync: ..."):
        # the command's name only
        command = self.prog.removeprefix("p2psync").strip()
        raise UsageError(f"{command}: {message}" if command else message)


def _address(text: str, *, any_host: bool) -> tuple[str, int]:
    """HOST:PORT, an IPv6 address in brackets ([::1]:22100). `any_host`: where to
    listen, so no host means every address and port 0 any free port; else a peer,
    which has both."""
    host, sep, port = text.rpartition(":")
    low = 0 if any_host else 1
    if not sep or not port.isdigit() or not (low <= int(port) <= 65535):
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT, the port from {low} to 65535, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host or "[" in host or "]" in host:
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT, an IPv6 address in brackets ([::1]:22100), got {text!r}")
    if not host and not any_host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, the host's name or address "
                                         f"before the colon, got {text!r}")
    return host or "0.0.0.0", int(port)


def listen_address(text: str) -> tuple[str, int]:
    return _address(text, any_host=True)


def peer_address(text: str) -> tuple[str, int]:
    return _address(text, any_host=False)


def device_name(text: str) -> str:
    """--name: shown on every peer, in logs and windows (a newline in it was sent as it
    was, to forge a line in a peer's log)."""
    if problem := name_problem(text):
        raise argparse.ArgumentTypeError(f"expected {problem}, got {text[:80]!r}")
    return text.strip()


def port(text: str) -> int:
    if not text.isdigit() or not (1 <= int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {text!r}")
    return int(text)


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):  # nan and negatives too
        raise argparse.ArgumentTypeError(f"expected a number of seconds (0 or more), got "
                                         f"{text!r}")
    return value


def _node_options(p: argparse.ArgumentParser, *, folder_required: bool,
                  secret: bool = True) -> None:
    p.add_argument("--folder", type=Path, required=folder_required, help="the shared folder")
    p.add_argument("--config-dir", type=Path, help="where this device keeps its key, "
                   "settings and index (default: the platform's config dir)")
    p.add_argument("--listen", type=listen_address, metavar="HOST:PORT",
                   help="where to accept peers (port 0 = any free port; default 0.0.0.0:22100)")
    p.add_argument("--peer", type=peer_address, action="append", default=[], metavar="HOST:PORT",
                   help="a peer to reach directly, without discovery (repeatable)")
    p.add_argument("--no-discovery", action="store_true", help="only use --peer addresses")
    p.add_argument("--discovery-port", type=port, default=22101, metavar="N",
                   help="UDP port of LAN discovery (default 22101)")
    if secret:
        p.add_argument("--secret", help="the share key (or env P2PSYNC_SECRET; default: the "
                       "key stored for this folder)")
    p.add_argument("--name", type=device_name,
                   help="this device's display name (default: host name)")
    p.add_argument("--allow-mass-delete", action="store_true",
                   help="apply a deletion the mass-deletion guard held back (more than half "
                   "of the files, or a folder whose .p2psync marker is gone)")
    _verbosity(p)


def _verbosity(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="more logging (-vv: the libraries' debug lines too)")
    p.add_argument("-q", "--quiet", action="count", default=0, help="less logging")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="p2psync", description="Keep one folder identical on several "
                     "devices of a LAN, without a cloud.")
    parser.add_argument("--version", action="version", version=f"p2psync {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    fmt = argparse.RawDescriptionHelpFormatter

    gui = sub.add_parser("gui", help="the desktop app (default)", epilog=EXAMPLES["gui"],
                         formatter_class=fmt)
    _node_options(gui, folder_required=False)

    run = sub.add_parser("run", help="a headless node that keeps the folder in sync",
                         epilog=EXAMPLES["run"], formatter_class=fmt)
    _node_options(run, folder_required=True)

    sync = sub.add_parser("sync", help="sync once with the peer(s), then exit",
                          epilog=EXAMPLES["sync"], formatter_class=fmt)
    _node_options(sync, folder_required=True)
    sync.add_argument("--timeout", type=seconds, default=600.0, metavar="S",
                      help="give up after S seconds (default 600)")
    sync.add_argument("--dry-run", action="store_true", help="only show what the sync would "
                      "do (fetch, send, delete, rename, conflict), changing nothing")
    sync.add_argument("--json", action="store_true", help="with --dry-run: one JSON object")

    invite = sub.add_parser("invite", help="show a one-time code another device can join "
                            "this share with", epilog=EXAMPLES["invite"], formatter_class=fmt)
    _node_options(invite, folder_required=True)
    invite.add_argument("--yes", action="store_true",
                        help="pair without asking to compare the confirmation words")

    join = sub.add_parser("join", help="join a share with the code another device shows, "
                          "then sync once", epilog=EXAMPLES["join"], formatter_class=fmt)
    join.add_argument("code", metavar="CODE", help="the code `p2psync invite` shows, e.g. "
                      "7-apple-river")
    _node_options(join, folder_required=True, secret=False)
    join.add_argument("--yes", action="store_true",
                      help="pair without asking to compare the confirmation words")
    join.add_argument("--timeout", type=seconds, default=600.0, metavar="S",
                      help="give up the sync after S seconds (default 600)")

    status = sub.add_parser("status", help="the folder's files and their sync state",
                            epilog=EXAMPLES["status"], formatter_class=fmt)
    status.add_argument("--folder", type=Path, required=True)
    status.add_argument("--config-dir", type=Path)
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.add_argument("paths", nargs="*", metavar="PATH",
                        help="only these files (or what is below these directories)")
    _verbosity(status)

    vers = sub.add_parser("versions", help="earlier versions kept in .p2psync/versions",
                          epilog=EXAMPLES["versions"], formatter_class=fmt)
    vers.add_argument("--folder", type=Path, required=True)
    vers.add_argument("--config-dir", type=Path)
    vers.add_argument("path", nargs="?", help="only the versions of this file (relative path)")
    vers.add_argument("--json", action="store_true", help="one JSON object")
    _verbosity(vers)

    rest = sub.add_parser("restore", help="put an earlier version of a file back",
                          epilog=EXAMPLES["restore"], formatter_class=fmt)
    rest.add_argument("--folder", type=Path, required=True)
    rest.add_argument("path", help="the file's path, relative to the folder")
    rest.add_argument("--at", metavar="YYYYMMDD-HHMMSS",
                      help="the version kept at that time (default: the newest)")
    _verbosity(rest)

    ident = sub.add_parser("id", help="print this device's ID", epilog=EXAMPLES["id"],
                           formatter_class=fmt)
    ident.add_argument("--config-dir", type=Path)
    _verbosity(ident)
    return parser


# Libraries whose debug lines come one per file event or lock: watchdog logs three for
# each file a pull writes (30,000 lines for 10,000 files, and the time to format
# them, made a watching node take twice as long as `sync`). Shown from -vv.
CHATTY_LIBRARIES = ("watchdog", "filelock")


def setup_logging(verbose: int, quiet: int) -> None:
    level = logging.INFO - 10 * verbose + 10 * quiet
    logging.basicConfig(level=max(logging.DEBUG, min(level, logging.CRITICAL)),
                        format="p2psync: %(message)s" if level >= logging.INFO
                        else "%(asctime)s %(name)s %(levelname)s: %(message)s",
                        stream=sys.stderr)
    if verbose < 2:
        for name in CHATTY_LIBRARIES:
            logging.getLogger(name).setLevel(max(logging.INFO, level))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    stdout = sys.stdout
    if stdout is not None:  # (None under pythonw)
        sys.stdout = cast(TextIO, _Stdout(stdout))
    try:
        if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help",
                                                                      "--version")):
            argv = ["gui", *argv]  # plain `p2psync [options]` is the desktop app
        args = build_parser().parse_args(argv)
        setup_logging(args.verbose, args.quiet)
        code = _dispatch(args.command, args)
        sys.stdout.flush()  # here, not at exit, where a failure could not be told
        return code
    except OutputFailed as e:
        _drop(stdout)  # what is still buffered goes nowhere, not failing again at exit
        if not isinstance(e.error, BrokenPipeError):
            print(f"p2psync: cannot write the output: {e.error.strerror or e.error}",
                  file=sys.stderr)
        # else `p2psync status | head`: the reader took what it wanted; quiet, like any
        # tool there (a traceback was printed), and 1 as Python's convention has it
        return 1
    except P2PError as e:
        for line in str(e).splitlines() or [""]:  # a list of files: one line each
            print(f"p2psync: {line}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # only before a command installed its own handlers
        print("p2psync: interrupted", file=sys.stderr)
        return 130
    finally:
        sys.stdout = stdout


class OutputFailed(Exception):
    """Our stdout could not be written: its reader went away, its disk is full."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class _Stdout:
    """sys.stdout while a command runs: a failure to write it is told apart from the
    command's own errors, which are OSErrors too (a connection of its that broke)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, text: str) -> int:
        with _writing():
            return self.out.write(text)

    def writelines(self, lines: Iterable[str]) -> None:
        with _writing():
            self.out.writelines(lines)

    def flush(self) -> None:
        with _writing():
            self.out.flush()

    def __getattr__(self, name: str) -> object:  # fileno, isatty, encoding...
        return getattr(self.out, name)


@contextlib.contextmanager
def _writing() -> Iterator[None]:
    try:
        yield
    except OSError as e:
        raise OutputFailed(e) from e


def _drop(stdout: TextIO | None) -> None:
    if stdout is None:
        return
    with contextlib.suppress(OSError, ValueError):  # (a stdout with no descriptor)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdout.fileno())
        os.close(devnull)


def _dispatch(command: str, args: argparse.Namespace) -> int:
    if command == "id":
        from app.engine.config import Config
        from app.net import identity

        config = Config(args.config_dir)
        print(identity.load_or_create(config.dir).device_id)
        return 0
    if command == "status":
        return _status(args)
    if command in ("versions", "restore"):
        from app.cli import versions

        return versions.versions(args) if command == "versions" else versions.restore_one(args)
    if command in ("invite", "join"):
        from app.cli import pairing

        return pairing.invite(args) if command == "invite" else pairing.join(args)
    if command in ("run", "sync"):
        from app.cli import headless

        return headless.main(command, args)
    from app.gui import launch  # noqa: PLC0415 - Qt only on this path

    return launch.main(args)


def _status(args: argparse.Namespace) -> int:
    from app.cli.status import relative_path, render_lines, stream, write_json

    folder = checked_folder(args.folder)
    only = [relative_path(folder, p) for p in args.paths] if args.paths else None
    with stream(folder, args.config_dir, only) as report:
        if args.json:
            write_json(report, sys.stdout)
        else:
            sys.stdout.writelines(render_lines(report))
    return 0
