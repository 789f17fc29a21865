"""Typed errors and exit codes shared by the CLI, the client side and the daemon launcher.

Library code raises a ``ChanctlError`` subclass that already knows its exit code and a hint for
the next step; ``chanctl.cli`` turns it into ``error:`` / ``hint:`` lines in exactly one place.
Keeping both facts on the exception means a new failure mode cannot forget either of them.
The module imports only the standard library so the CLI can load it at no cost.
"""

from __future__ import annotations

from collections.abc import Callable
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
    RUN_FAILED = 125  # `run`: chanctl failed before or around the child (docker run, timeout(1))
    CANNOT_EXECUTE = 126  # `run`: the command exists but cannot be run (shell convention)
    COMMAND_NOT_FOUND = 127  # `run`: no such command
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


# ===========================================================================================
# Client library errors (chanctl.Client / chanctl.AsyncClient): one class per daemon answer or
# transport failure a caller may want to handle.
# ===========================================================================================


class DaemonUnavailable(ChanctlError):
    """Nothing answers at the daemon address and chanctl may not (or could not) start one."""

    exit_code = ExitCode.UNAVAILABLE


class ConnectionLost(DaemonUnavailable):
    """The daemon went away mid-request and did not come back within the reconnect window."""


class ChannelNotFound(NotFound):
    """The channel does not exist (HTTP 404)."""


class CursorNotFound(NotFound):
    """No cursor of that name is stored for the channel."""


class ChannelClosed(ChanctlError):
    """An append reached a channel that is closed for writing (HTTP 409 + Stream-Closed)."""


class ChannelGone(ChanctlError):
    """The requested position is no longer retained, or the channel was deleted (HTTP 410)."""


class NotAChanctlChannel(ChanctlError):
    """The stream exists but is not an application/json chanctl channel."""


class ProducerConflict(ChanctlError):
    """The daemon refused an idempotent-producer append (fenced epoch or sequence gap)."""


class AuthFailed(ChanctlError):
    """The daemon rejected our credentials (HTTP 401/403 on a TCP listener)."""


class MessageTooLarge(ChanctlError):
    """One message (or a batch that cannot be split further) exceeds the daemon's body limit."""


class RequestFailed(ChanctlError):
    """Any other refusal or daemon-side failure; carries the HTTP status for callers."""

    def __init__(self, message: str, *, status: int = 0, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class InvalidArgument(UsageError, ValueError):
    """A channel name, cursor name or offset the protocol does not allow (exit 2).

    Also a ValueError, so library callers can treat it like any other bad argument.
    """


def checked(validate: Callable[[str], str], value: str) -> str:
    """Run a ``chanctl.protocol`` validator, turning its ValueError into InvalidArgument."""
    try:
        return validate(value)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


# ===========================================================================================
# Steering and `run` (README "Steering and wrapping jobs").
# ===========================================================================================


class SteeringRefused(ChanctlError):
    """`send --wait`: the producer answered, but refused the message (malformed, unknown)."""


class NotAcknowledged(ChanctlError):
    """`send --wait`: the channel was closed before its producer answered."""


class ConditionNotMet(ChanctlError):
    """`wait`: the channel was closed before the awaited condition held."""


class RunFailed(ChanctlError):
    """`run`: chanctl itself failed before or around the child (exit 125)."""

    exit_code = ExitCode.RUN_FAILED


class ProducerBusy(RunFailed):
    """`run`: the channel already has a live producer and --takeover was not given."""
