"""One open channel: its durable state as JetStream has it, and the batches still on their way.

The durable half changes only when a record is known to be stored: acknowledged to our own
publish, or seen on the channel's live consumer (which also delivers other daemons' records).
The pending half (``ChannelState.next_seq``, ``producers``...) is the durable state plus the
queued batches, which is what the service validates the next append against.

When another daemon's record lands first, our queued batches were validated against a state
that no longer holds. ``rebase`` re-validates them in order against the new durable state:
those that are still the right next step keep going (at new offsets), the others fail with
``ChannelRaced`` (503), and the client's retry is then judged against the current state (a
producer's retry of a batch the other daemon stored becomes the usual idempotent 204).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from ...producers import Verdict, classify
from ..base import AppendBatch, ChannelState, Committed, ProducerState, StorageFailed
from .index import RecordIndex
from .records import Record, RecordMeta, Stamp


class ChannelRaced(StorageFailed):
    """Another daemon appended to the channel first and this batch is no longer valid."""


@dataclass
class Durable:
    """The channel's state after its newest stored record."""

    next: int
    closed: bool = False
    producers: dict[str, ProducerState] = field(default_factory=dict)
    stream_seq: str | None = None
    bytes_end: int = 0
    last_write: float = 0.0

    def apply(self, meta: RecordMeta) -> None:
        self.next, self.closed = meta.end, meta.closed
        self.stream_seq, self.bytes_end, self.last_write = (
            meta.stream_seq,
            meta.bytes_end,
            meta.last_write,
        )
        for pid, epoch, seq, seen in meta.producers:
            self.producers[pid] = ProducerState(epoch, seq, seen)


@dataclass
class Item:
    """One submitted batch, waiting for its record to be stored."""

    batch: AppendBatch
    time: float
    future: asyncio.Future[Committed]
    first: int = 0


@dataclass
class Where:
    """Where a channel lives in NATS."""

    stream: str
    subject: str


class Chan:
    def __init__(self, where: Where, state: ChannelState, durable: Durable, last_sseq: int) -> None:
        self.where = where
        self.state = state
        self.durable = durable
        self.last_sseq = last_sseq  # newest record applied to ``durable``
        self.first_sseq = 1  # oldest retained record
        self.bytes_start = 0  # cumulative payload bytes before the oldest retained record
        self.queue: deque[Item] = deque()
        self.inflight: list[Item] = []
        self.inflight_rid: str | None = None
        self.stale = False  # durable moved under queued batches: rebase before publishing
        self.index = RecordIndex()
        self.changed = asyncio.Condition()
        self.writer: asyncio.Task[None] | None = None
        self.caught_up = asyncio.Event()
        self.catch_up_to = 0
        self.since_checkpoint = 0
        self.stopping = False  # the store is stopping: waiters return

    # -- pending side ---------------------------------------------------------------------------

    def enqueue(self, batch: AppendBatch) -> asyncio.Future[Committed]:
        item = Item(batch, time.time(), asyncio.get_running_loop().create_future())
        self._reserve(item)
        self.queue.append(item)
        return item.future

    def _reserve(self, item: Item) -> None:
        st, batch = self.state, item.batch
        item.first = st.next_seq
        st.next_seq += len(batch.messages)
        if batch.producer is not None:
            p = batch.producer
            st.producers[p.producer_id] = ProducerState(p.epoch, p.seq, item.time)
        if batch.stream_seq is not None:
            st.last_stream_seq = batch.stream_seq
        st.closed = st.closed or batch.close
        if batch.messages:
            st.last_write = item.time

    def rebase(self) -> None:
        """Re-validate every unstored batch against the durable state, in order."""
        items = [*self.inflight, *self.queue]
        self.inflight, self.inflight_rid, self.stale = [], None, False
        self.queue.clear()
        self._reset_pending()
        for item in items:
            if item.future.done():
                continue
            if _still_valid(self.state, item.batch):
                self._reserve(item)
                self.queue.append(item)
            else:
                item.future.set_exception(
                    ChannelRaced(
                        f"channel {self.state.name!r} was appended to through another daemon "
                        "at the same time; retry the request"
                    )
                )

    def fail_all(self, exc: BaseException) -> None:
        """The store cannot tell whether these batches were stored: fail them, forget them."""
        for item in [*self.inflight, *self.queue]:
            if not item.future.done():
                item.future.set_exception(exc)
        self.inflight, self.inflight_rid = [], None
        self.queue.clear()
        self._reset_pending()

    def _reset_pending(self) -> None:
        st, d = self.state, self.durable
        st.next_seq, st.closed, st.last_stream_seq = d.next, d.closed, d.stream_seq
        st.producers = dict(d.producers)
        st.last_write = d.last_write

    # -- building the next record ---------------------------------------------------------------

    def take_group(self, max_payload: int) -> list[Item]:
        """The queued batches the next record carries: at least one, up to ``max_payload``."""
        group: list[Item] = []
        size = 0
        while self.queue:
            batch = self.queue[0].batch
            cost = sum(len(m) + 4 for m in batch.messages) + 64
            if group and size + cost > max_payload:
                break
            group.append(self.queue.popleft())
            size += cost
        self.inflight = group
        return group

    def record_meta(self, rid: str, group: list[Item]) -> tuple[RecordMeta, list[bytes]]:
        """The record for ``group``, laid on top of the durable state (offsets re-derived)."""
        d = self.durable
        messages: list[bytes] = []
        stamps: list[Stamp] = []
        stream_seq, closed, last_write = d.stream_seq, d.closed, d.last_write
        for item in group:
            item.first = d.next + len(messages)
            messages.extend(item.batch.messages)
            if item.batch.producer is not None:
                p = item.batch.producer
                stamps.append((p.producer_id, p.epoch, p.seq, item.time))
            stream_seq = item.batch.stream_seq or stream_seq
            closed = closed or item.batch.close
            last_write = item.time if item.batch.messages else last_write
        size = sum(len(m) for m in messages)
        meta = RecordMeta(
            rid, d.next, len(messages), group[0].time, tuple(stamps), stream_seq, closed,
            d.bytes_end + size, last_write,
        )  # fmt: skip
        return meta, messages

    # -- durable side ---------------------------------------------------------------------------

    def observe(self, rec: Record) -> bool:
        """Apply a stored record (ours or another daemon's) once; True if it was new."""
        if rec.sseq <= self.last_sseq:
            return False
        if self.inflight and rec.meta.rid == self.inflight_rid:
            self._settle_inflight(rec)
            return True
        self.durable.apply(rec.meta)
        self._advance(rec)
        if self.queue or self.inflight:
            self.stale = True
        else:
            self._reset_pending()
        return True

    def _settle_inflight(self, rec: Record) -> None:
        closed = self.durable.closed
        self.durable.apply(rec.meta)
        self._advance(rec)
        for item in self.inflight:
            end = item.first + len(item.batch.messages)
            closed = closed or item.batch.close
            if not item.future.done():
                item.future.set_result(Committed(item.first, end, closed))
        self.inflight, self.inflight_rid = [], None

    def _advance(self, rec: Record) -> None:
        self.last_sseq = rec.sseq
        self.index.add(rec.meta.first, rec.sseq)
        st = self.state
        st.durable_seq, st.durable_closed = self.durable.next, self.durable.closed
        st.size_bytes = self.durable.bytes_end - self.bytes_start
        self.since_checkpoint += 1
        if self.last_sseq >= self.catch_up_to:
            self.caught_up.set()
        asyncio.get_running_loop().create_task(self.wake())

    async def wake(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def wait(self, seq: int, timeout: float) -> bool:
        st = self.state

        def ready() -> bool:
            return st.durable_seq > seq or st.durable_closed or st.deleted or self.stopping

        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(ready), timeout)
            except TimeoutError:
                return False
        return True


def _still_valid(st: ChannelState, batch: AppendBatch) -> bool:
    """Would the service still accept ``batch`` as the next append? (its checks, replayed)"""
    if st.closed:
        return False
    if batch.producer is not None and classify(st, batch.producer) is not Verdict.NEW:
        return False
    return not (
        batch.stream_seq is not None
        and st.last_stream_seq is not None
        and batch.stream_seq <= st.last_stream_seq
    )
