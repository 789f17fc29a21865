"""The one storage interface every chanctl engine implements.

The Durable Streams rules (producer fencing, Stream-Seq, closure, forks, TTL) are enforced once,
above this interface, by the stream service. An engine only has to keep what the service
decided: ordered batches of messages, each batch written atomically together with the producer
and Stream-Seq state it advances and the closed marker, so that exactly-once appends and close
survive a crash. Sequence numbers are 0-based message counts: the offset before the first
message is 0, and a channel's ``next_seq`` is the number of messages ever appended.

Appends are split in two steps so that engines can commit in groups: ``submit`` runs
synchronously on the event loop, reserves sequence numbers and updates the *pending* state
(which the service validates the next append against), and returns an awaitable that completes
once the batch is durable under the engine's fsync policy. Readers only ever see durable data.
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from chanctl.protocol import FsckProblem, FsckResult, format_offset


@dataclass(frozen=True, slots=True)
class Retention:
    """Per-channel limits; whole segments are dropped once a limit is exceeded."""

    max_age_s: float | None = None
    max_bytes: int | None = None
    max_messages: int | None = None


@dataclass(frozen=True, slots=True)
class ForkOrigin:
    """Where a fork's history comes from: messages [0, seq) are read from ``source``."""

    source: str
    seq: int
    sub_offset: int = 0


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """What is fixed when a channel is created (Durable Streams 'same config' comparison).
    Slotted, like the rest of what a channel keeps for its whole life: a daemon may hold
    10,000 of them."""

    content_type: str
    created_at: float
    ttl_s: int | None = None
    expires_at: str | None = None
    fork: ForkOrigin | None = None
    retention: Retention = field(default_factory=Retention)


@dataclass(slots=True)
class ProducerState:
    """Highest accepted (epoch, seq) of one idempotent producer, and when it last wrote.

    Slotted because a channel may track up to 100,000 producers (engines cap the table).
    """

    epoch: int
    seq: int
    last_seen: float


@dataclass
class ChannelState:
    """The live view of one channel an engine keeps; the service reads it, never mutates it."""

    name: str
    config: ChannelConfig
    first_seq: int = 0  # earliest retained message (retention raises it)
    next_seq: int = 0  # pending: includes batches submitted but not yet durable
    durable_seq: int = 0  # readers' horizon: everything below it is durable
    closed: bool = False  # pending closed marker
    durable_closed: bool = False
    producers: dict[str, ProducerState] = field(default_factory=dict)
    last_stream_seq: str | None = None
    size_bytes: int = 0  # bytes retained (memory: payload; local: segment files, framing included)
    last_write: float = 0.0
    last_access: float = 0.0
    deleted: bool = False  # soft-deleted: kept because forks still read from it
    fork_refs: int = 0  # live forks reading this channel's history
    corrupt_seq: int | None = None  # first message a read cannot serve (quarantine)


@dataclass(frozen=True, slots=True)
class ChannelSummary:
    """One channel as a listing or the expiry sweep needs it, obtainable without opening it.

    Opening a local channel replays its tail segment and keeps its log in memory for the rest of
    the daemon's life, so listing 10,000 channels (or indexing their lifetimes at start-up) must
    not open them. An open channel reports its live state (``opened``); for one that is not
    open, an engine reports what its metadata and file listing tell, and None for what it cannot
    know without replaying the log.
    """

    name: str
    config: ChannelConfig
    opened: bool
    deleted: bool = False
    fork_refs: int = 0
    first_seq: int | None = None
    next_seq: int | None = None  # durable
    closed: bool | None = None  # durably closed
    size_bytes: int | None = None
    last_write: float | None = None
    last_access: float = 0.0
    corrupt_seq: int | None = None


def summary_of(st: ChannelState) -> ChannelSummary:
    """The summary of an open channel: its live state."""
    return ChannelSummary(
        name=st.name,
        config=st.config,
        opened=True,
        deleted=st.deleted,
        fork_refs=st.fork_refs,
        first_seq=st.first_seq,
        next_seq=st.durable_seq,
        closed=st.durable_closed,
        size_bytes=st.size_bytes,
        last_write=st.last_write or None,
        last_access=st.last_access,
        corrupt_seq=st.corrupt_seq,
    )


@dataclass(frozen=True, slots=True)
class Problem:
    """Where a channel's stored data goes wrong: the first message that cannot be read (None
    when the problem is not about messages), the file or record and byte, and why."""

    seq: int | None
    file: str
    pos: int | None
    reason: str


@dataclass(slots=True)
class ChannelCheck:
    """What verifying one channel found (``chanctl fsck``, online or offline). ``segments``
    counts the engine's storage units (local: segment files; NATS: JetStream messages)."""

    name: str
    path: str
    backend: str = "local"
    segments: int = 0
    messages: int = 0
    corrupt: Problem | None = None
    torn_tail: Problem | None = None  # offline only: what start-up would truncate

    @property
    def ok(self) -> bool:
        return self.corrupt is None

    def to_wire(self) -> FsckResult:
        """As ``chanctl fsck`` prints it (and the daemon sends it)."""

        def wire(pr: Problem | None) -> FsckProblem | None:
            if pr is None:
                return None
            offset = None if pr.seq is None else format_offset(pr.seq)
            return FsckProblem(offset, pr.file, pr.pos, pr.reason)

        return FsckResult(
            self.name,
            self.ok,
            self.messages,
            self.segments,
            wire(self.corrupt),
            wire(self.torn_tail),
            self.path,
            self.backend,
        )


@dataclass(frozen=True)
class ProducerStamp:
    """The idempotent-producer tuple an append carries; stored with its batch."""

    producer_id: str
    epoch: int
    seq: int


@dataclass(frozen=True)
class AppendBatch:
    """One atomic append: zero or more messages, optionally closing the channel."""

    messages: Sequence[bytes]
    producer: ProducerStamp | None = None
    stream_seq: str | None = None
    close: bool = False


@dataclass(frozen=True)
class Committed:
    """Result of a durable append: messages got sequence numbers [first_seq, next_seq)."""

    first_seq: int
    next_seq: int
    closed: bool


@dataclass(frozen=True)
class Message:
    seq: int
    time: float  # unix seconds when the daemon accepted it
    data: bytes


@dataclass(frozen=True)
class ReadResult:
    messages: list[Message]
    next_seq: int  # where the next read continues
    up_to_date: bool  # True when next_seq reached the durable tail


@dataclass(frozen=True)
class RawReadResult:
    """The same messages as ReadResult without per-message objects: the fast path for
    catch-up reads. ``data`` is the concatenated payload of messages [start_seq, next_seq) and
    ``lengths`` the size of each, in order, so ``len(lengths) == next_seq - start_seq`` and
    ``sum(lengths) == len(data)``. Added for the HTTP layer: building a Message per message
    costs more than the whole disk read of a 100-byte message."""

    data: bytes
    lengths: Sequence[int]
    next_seq: int
    up_to_date: bool


class StoreError(Exception):
    """Base of storage errors; ``status`` is the HTTP status the daemon answers with."""

    status = 500


class ChannelMissing(StoreError):
    status = 404


class ChannelExists(StoreError):
    status = 409


class ChannelGone(StoreError):
    """Reads below the earliest retained offset, or a soft-deleted channel."""

    status = 410


class CorruptData(StoreError):
    """A record failed its checksum; nothing at or after ``seq`` is served."""

    status = 500

    def __init__(self, channel: str, seq: int, detail: str) -> None:
        super().__init__(f"channel {channel!r} is corrupt at message {seq}: {detail}")
        self.channel = channel
        self.seq = seq


class StorageFailed(StoreError):
    """Write or fsync failed: the log is fail-stop until restart (never ack after an error)."""

    status = 503


class StorageFull(StoreError):
    status = 507


class ChannelStore(Protocol):
    """Durable channel storage. All methods run on the daemon's event loop."""

    @property
    def fsync_policy(self) -> str:
        """The policy in force, e.g. ``always``, ``interval:200`` or ``never`` (for metadata)."""
        ...

    async def start(self) -> None:
        """Open the store and recover; report lost tail data in the daemon log."""

    async def stop(self) -> None:
        """Flush and fsync everything pending, end waiters, release files."""

    async def create(self, name: str, config: ChannelConfig, initial: AppendBatch) -> ChannelState:
        """Create a channel with its initial batch, durably. Raises ChannelExists."""
        ...

    async def get(self, name: str) -> ChannelState | None:
        """The channel's state (opening it from disk if needed), or None if it does not exist."""
        ...

    def names(self) -> list[str]:
        """Every channel name, soft-deleted ones included, in no particular order."""
        ...

    async def summaries(self, names: Collection[str] | None = None) -> list[ChannelSummary]:
        """A summary of each named channel that exists (every channel when ``names`` is None),
        in no particular order, without opening any channel (see ChannelSummary). Channels whose
        metadata cannot be read are left out (and logged)."""
        ...

    def submit(self, name: str, batch: AppendBatch) -> Awaitable[Committed]:
        """Reserve sequence numbers now; the awaitable completes once the batch is durable.

        The channel must have been fetched with ``get`` first (so it is open). Raises
        StorageFailed / StorageFull immediately when the log is fail-stopped or full.
        """
        ...

    async def read(
        self, name: str, start_seq: int, max_bytes: int, max_messages: int = 1 << 30
    ) -> ReadResult:
        """Durable messages from ``start_seq`` on, at least one when any exist, up to the caps.

        Raises ChannelGone below ``first_seq`` and CorruptData at a corrupt record.
        """
        ...

    async def read_raw(
        self, name: str, start_seq: int, max_bytes: int, max_messages: int = 1 << 30
    ) -> RawReadResult:
        """Exactly what ``read`` would return, as one buffer plus message lengths (same caps,
        same errors). Prefer it whenever per-message timestamps are not needed."""
        ...

    async def wait(self, name: str, seq: int, timeout: float) -> bool:
        """Wait until durable data exists at or beyond ``seq`` or the channel is durably
        closed or deleted; False on timeout."""
        ...

    async def delete(self, name: str) -> None:
        """Remove a channel and its files for good."""

    async def set_deleted(self, name: str, deleted: bool) -> None:
        """Mark (durably) a channel soft-deleted: forks still read it, nobody else can."""

    async def set_fork_refs(self, name: str, refs: int) -> None:
        """Record how many live forks read this channel's history."""

    async def verify(self, name: str) -> ChannelCheck:
        """Check every retained, durable record of a channel as far as the engine can (``chanctl
        fsck`` on a running daemon) without blocking the event loop or concurrent appends.
        Corruption found quarantines the channel exactly as a read reaching it would. Raises
        ChannelMissing."""
        ...

    async def enforce_retention(
        self, now: float, keep_below: Mapping[str, int] | None = None
    ) -> None:
        """Drop whole segments beyond each channel's retention limits (raising first_seq).

        Engines that keep segments may retain more than a limit asks for: the local engine
        drops a sealed segment only when what remains still meets every size/count limit, or
        when its newest message is older than max_age; it never drops the active segment.

        ``keep_below`` pins history that forks still read: no message of channel ``name`` with
        a seq below ``keep_below[name]`` is dropped, whatever its limits say. Dropping is
        oldest-first, so a pin above a channel's first_seq suspends its retention entirely."""


def batch_bytes(messages: Sequence[bytes]) -> int:
    return sum(len(m) for m in messages)
