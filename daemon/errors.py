"""The one error hierarchy of the Durable Streams service.

The service raises these; the HTTP layer turns any of them (and any storage ``StoreError``) into a
response in exactly one place, so every error carries what the wire needs: the status, a message a
person can act on, and the protocol headers some errors must carry (``Stream-Closed`` with the
final offset on a closed stream, ``Producer-Epoch`` on fencing, ``Retry-After`` on overload).
"""

from __future__ import annotations

from collections.abc import Mapping

from chanctl.protocol import H_CORRUPT_OFFSET, format_offset

from .store.base import CorruptData, StoreError


class StreamError(Exception):
    """A request the service refuses; ``status`` is the HTTP status it maps to."""

    status = 500

    def __init__(self, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})


class BadRequest(StreamError):
    status = 400


class Forbidden(StreamError):
    """Zombie fencing: a producer epoch older than the one the channel has seen."""

    status = 403


class NotFound(StreamError):
    status = 404


class Conflict(StreamError):
    status = 409


class RequestTimeout(StreamError):
    """The request body did not arrive within ``Limits.body_read_timeout_s``."""

    status = 408


class Gone(StreamError):
    """Soft-deleted channels and offsets below the retained data."""

    status = 410


class PayloadTooLarge(StreamError):
    status = 413


class Overloaded(StreamError):
    status = 503


class Quarantined(StreamError):
    """An append to a channel with a corrupt record (C6 of reliability.md).

    503, because the daemon is healthy but this channel takes no writes until someone repairs
    it; no Retry-After, because retrying soon cannot help. The header says where the
    readable data ends, as on reads.
    """

    status = 503

    def __init__(self, channel: str, seq: int) -> None:
        super().__init__(
            f"channel {channel!r} is quarantined: the record at offset {format_offset(seq)} "
            "failed its integrity check, so appends are refused until it is repaired (run "
            "`chanctl fsck`); earlier messages can still be read and nothing was deleted",
            {H_CORRUPT_OFFSET: format_offset(seq)},
        )


def as_stream_error(exc: StoreError) -> StreamError:
    """Give a storage error the service's shape, keeping the status the engine chose."""
    err = StreamError(str(exc) or type(exc).__name__)
    err.status = exc.status
    if exc.status in (503, 507):
        err.headers["Retry-After"] = "1"
    if isinstance(exc, CorruptData):  # where the readable data ends (`chanctl fsck` details)
        err.headers[H_CORRUPT_OFFSET] = format_offset(exc.seq)
        err.message = (
            f"{exc}; the channel is quarantined: nothing from offset {format_offset(exc.seq)} "
            "on is served and appends are refused, but nothing was deleted. Run `chanctl fsck` "
            "to locate and repair the damage"
        )
    return err
