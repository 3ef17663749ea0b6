"""The user-facing failures and their exit codes (see the contract).

Everything a user can cause ends as one of these: the CLI prints `str(error)` as one
line and exits with `error.exit_code`; nothing a user can cause shows a traceback.
"""

from __future__ import annotations

from typing import TypeVar

E = TypeVar("E", bound=BaseException)


class P2PError(Exception):
    exit_code = 1


class UsageError(P2PError):
    """Bad usage or a bad folder."""

    exit_code = 2


class UnreachableError(P2PError):
    """No peer could be reached; the message names each address tried and why."""

    exit_code = 3


class RefusedError(P2PError):
    """A peer refused us or we refused it (wrong share key, unknown device)."""

    exit_code = 4


class IncompleteError(P2PError):
    """The folders agree on all that can be synced; some files could not be (one line each)."""

    exit_code = 5


class HeldBackError(P2PError):
    """A mass deletion was held back: nothing was deleted (see the contract's guard)."""

    exit_code = 6


def without_traceback(e: E) -> E:
    """e without its tracebacks, to be kept as a value (one file's outcome in a list).

    A traceback holds the frame that caught the exception, and so that frame's list
    that holds it: a cycle that only the garbage collector frees. On a disk that ran out
    of room every file of every page failed so, and the collector freed 60,000-90,000
    such objects every half second, each time holding the event loop 40-117 ms."""
    seen: BaseException | None = e
    for _ in range(8):  # a chain is short; never follow one for ever
        if seen is None:
            break
        seen.__traceback__ = None
        seen = seen.__cause__ or seen.__context__
    return e
