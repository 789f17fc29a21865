"""Errors the client library raises, one class per failure a caller may want to handle.

Each maps one daemon answer (or a transport failure) to an exit code and a hint, so the CLI
converts them in one place and scripts using ``chanctl.Client`` can catch exactly what they mean.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import ChanctlError, ExitCode, NotFound, UsageError


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
