"""Typed errors and exit codes shared by the CLI, the client side and the daemon launcher.

Library code raises a ``ChanctlError`` subclass that already knows its exit code and a hint for
the next step; ``chanctl.cli`` turns it into ``error:`` / ``hint:`` lines in exactly one place.
Keeping both facts on the exception means a new failure mode cannot forget either of them.
The module imports only the standard library so the CLI can load it at no cost.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes (docs: cli.md 1.6). Scripts depend on these; never renumber."""

    OK = 0
    ERROR = 1
    USAGE = 2
    NOT_RUNNING = 3  # `daemon status`: like systemctl / LSB status "not running"
    NOT_FOUND = 4
    UNAVAILABLE = 69  # sysexits EX_UNAVAILABLE: daemon unreachable and auto-start disabled
    TIMEOUT = 124  # like timeout(1)
    INTERRUPTED = 130  # 128 + SIGINT


class ChanctlError(Exception):
    """Base of every error chanctl reports to a person: what failed, and what to do next."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(ChanctlError):
    """A flag or argument the user can fix by changing the command line."""

    exit_code = ExitCode.USAGE


class ConfigError(ChanctlError):
    """An environment variable, path or file the user has to fix before chanctl can run."""


class DaemonNotRunning(ChanctlError):
    """No daemon answers on the socket (nothing listens, or the socket file is missing)."""

    exit_code = ExitCode.NOT_RUNNING


class DaemonAlreadyRunning(ChanctlError):
    """Another daemon already serves this socket or data directory."""


class DaemonStartFailed(ChanctlError):
    """The daemon process exited, or never became ready, during ``chanctl daemon start``."""


class DaemonUnhealthy(ChanctlError):
    """Something holds the daemon lock or socket but does not answer like a chanctl daemon."""


class UnsafePath(ChanctlError):
    """A path has the wrong type, owner or permissions for what chanctl wants to keep there."""


class NotFound(ChanctlError):
    """A channel (or another named thing) does not exist."""

    exit_code = ExitCode.NOT_FOUND


class TimedOut(ChanctlError):
    """A bounded wait ran out."""

    exit_code = ExitCode.TIMEOUT
