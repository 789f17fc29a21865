"""The stream service's requests and results: plain values, free of HTTP.

The HTTP layer parses headers into these and renders results back into headers, so the protocol
rules in the service can be tested without a socket and reused by any other front end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .store.base import ChannelState, ProducerStamp, Retention


@dataclass(frozen=True)
class ForkRequest:
    """``Stream-Forked-From`` and friends: read ``source`` up to ``offset`` (None: its tail),
    plus ``sub_offset`` bytes (binary) or messages (JSON) past that point."""

    source: str
    offset: int | None = None
    sub_offset: int = 0


@dataclass(frozen=True)
class CreateRequest:
    name: str
    content_type: str | None = None  # None: application/octet-stream, or the source's for forks
    ttl_s: int | None = None
    expires_at: str | None = None  # canonical RFC 3339 (expiry.parse_expires_at)
    closed: bool = False
    fork: ForkRequest | None = None
    body: bytes = b""
    retention: Retention = field(default_factory=Retention)  # None: the daemon's default


@dataclass(frozen=True)
class CreateResult:
    created: bool  # False: it already existed with the same configuration
    content_type: str
    next_seq: int
    closed: bool


@dataclass(frozen=True)
class AppendRequest:
    name: str
    content_type: str | None
    body: bytes
    close: bool = False
    stream_seq: str | None = None
    producer: ProducerStamp | None = None


@dataclass(frozen=True)
class AppendResult:
    next_seq: int
    closed: bool
    duplicate: bool  # an idempotent retry: nothing was written
    wrote: bool  # at least one message was appended
    producer_epoch: int | None = None
    producer_seq: int | None = None  # highest accepted Producer-Seq of that epoch


@dataclass(frozen=True)
class Chunk:
    """One read: messages [start_seq, next_seq) of channel ``state``, as the concatenated bytes
    plus each message's length (the store's raw format: no object per message)."""

    state: ChannelState
    start_seq: int
    next_seq: int
    data: bytes
    lengths: Sequence[int]
    up_to_date: bool  # nothing durable lies beyond next_seq
    closed: bool  # the channel is closed and next_seq is its final offset

    @property
    def empty(self) -> bool:
        return self.next_seq == self.start_seq

    def messages(self) -> list[bytes]:
        """The messages one by one (JSON framing needs the boundaries)."""
        return split(self.data, self.lengths)


def split(data: bytes, lengths: Sequence[int]) -> list[bytes]:
    if len(lengths) == 1:
        return [data]
    out: list[bytes] = []
    pos = 0
    for n in lengths:
        out.append(data[pos : pos + n])
        pos += n
    return out


@dataclass(frozen=True)
class Metadata:
    content_type: str
    next_seq: int
    first_seq: int
    closed: bool
    ttl_s: int | None
    expires_at: str | None
    fsync_policy: str
    corrupt_seq: int | None = None  # first message reads cannot serve (quarantined)
    retention: Retention = field(default_factory=Retention)


@dataclass(frozen=True)
class ChannelInfo:
    """One ``/v1/channels`` entry. None: not known without opening the channel (the listing
    never opens one; see ``store.base.ChannelSummary``)."""

    name: str
    content_type: str
    next_seq: int | None
    size_bytes: int | None
    closed: bool | None
    last_write: float | None
    extra: dict[str, object] = field(default_factory=dict)
