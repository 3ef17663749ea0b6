"""The user-facing failures and their exit codes (see the contract).

Everything a user can cause ends as one of these: the CLI prints `str(error)` as one
line and exits with `error.exit_code`; nothing a user can cause shows a traceback.
"""

from __future__ import annotations


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
