"""Staging an append: sequence numbers, the pending state, the encoded record and its undo.

``stage`` is the synchronous half of ``submit``: it runs on the event loop, changes the pending
ChannelState the service validates the next append against, and records exactly what it changed
so a failed group can be rewound to the durable state (``rewind``, newest first).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from ..base import AppendBatch, ChannelState, Committed, ProducerState
from .producers import remember_producer
from .records import encode_data
from .writer import Roll


@dataclass(slots=True)
class Undo:
    """What one staged batch changed in the pending state, to rewind it on failure."""

    next_seq: int
    closed: bool
    stream_seq: str | None
    last_write: float
    pid: str | None = None
    prev: ProducerState | None = None
    evicted: list[tuple[str, ProducerState]] = field(default_factory=list)


def rewind(state: ChannelState, undo: Undo) -> None:
    state.next_seq, state.closed = undo.next_seq, undo.closed
    state.last_stream_seq, state.last_write = undo.stream_seq, undo.last_write
    if undo.pid is not None:
        state.producers.pop(undo.pid, None)
        if undo.prev is not None:
            state.producers[undo.pid] = undo.prev
    state.producers.update(undo.evicted)


@dataclass(slots=True)
class Pending:
    """One encoded batch waiting for (or being written by) the writer. Handed to a writer
    thread once staged: after that only the loop's bookkeeping fields (``future``) change."""

    bufs: list[bytes]
    size: int
    first_seq: int
    next_seq: int
    closed_after: bool
    closes: bool
    time: float
    undo: Undo
    lengths: tuple[int, ...] = ()  # message sizes, for the tail cache once durable
    roll: Roll | None = None  # start a new segment before this batch
    future: asyncio.Future[Committed] | None = None

    @property
    def payload(self) -> bytes:
        """The batch's concatenated messages: ``encode_data`` frames them as a second buffer,
        present only when there are message bytes at all."""
        return self.bufs[1] if len(self.bufs) > 1 else b""


def stage(state: ChannelState, batch: AppendBatch, max_record: int, cap: int) -> Pending:
    """Assign seqs, update the pending state and encode the record (no I/O)."""
    st = state
    now_ns = time.time_ns()
    now = now_ns / 1e9  # exactly what recovery will read back from the record
    bufs = encode_data(st.next_seq, now_ns, batch)
    size = sum(map(len, bufs))
    if size > max_record:
        raise ValueError(f"batch of {size} bytes exceeds the record bound")
    undo = Undo(st.next_seq, st.closed, st.last_stream_seq, st.last_write)
    if batch.producer is not None:
        p = batch.producer
        undo.pid, undo.prev = p.producer_id, st.producers.get(p.producer_id)
        fresh = ProducerState(p.epoch, p.seq, now)
        undo.evicted = remember_producer(st.producers, p.producer_id, fresh, cap)
    if batch.stream_seq is not None:
        st.last_stream_seq = batch.stream_seq
    first = st.next_seq
    st.closed = st.closed or batch.close
    st.next_seq += len(batch.messages)
    if batch.messages:
        st.last_write = now
    lengths = tuple(map(len, batch.messages))
    return Pending(bufs, size, first, st.next_seq, st.closed, batch.close, now, undo, lengths)
