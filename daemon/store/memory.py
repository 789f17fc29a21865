"""The reference engine: everything in memory, nothing durable.

It defines what the contract suite expects of every engine in the simplest code possible, and
serves tests that exercise the layers above storage. It is not offered to users.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Collection, Mapping
from dataclasses import dataclass, field

from .base import (
    AppendBatch,
    ChannelCheck,
    ChannelConfig,
    ChannelExists,
    ChannelGone,
    ChannelMissing,
    ChannelState,
    ChannelSummary,
    Committed,
    Message,
    Problem,
    ProducerState,
    RawReadResult,
    ReadResult,
    summary_of,
)


@dataclass
class _Channel:
    state: ChannelState
    messages: list[Message] = field(default_factory=list)  # index i holds seq first_seq + i
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)


class MemoryStore:
    fsync_policy = "never"

    def __init__(self) -> None:
        self._channels: dict[str, _Channel] = {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        for ch in self._channels.values():
            await _notify(ch)

    async def create(self, name: str, config: ChannelConfig, initial: AppendBatch) -> ChannelState:
        if name in self._channels:
            raise ChannelExists(name)
        ch = _Channel(ChannelState(name=name, config=config))
        if config.fork is not None:
            ch.state.first_seq = ch.state.next_seq = ch.state.durable_seq = config.fork.seq
        self._channels[name] = ch
        self._apply(ch, initial)
        return ch.state

    async def get(self, name: str) -> ChannelState | None:
        ch = self._channels.get(name)
        return None if ch is None else ch.state

    def names(self) -> list[str]:
        return list(self._channels)

    async def summaries(self, names: Collection[str] | None = None) -> list[ChannelSummary]:
        wanted = self._channels if names is None else names
        return [summary_of(ch.state) for n in wanted if (ch := self._channels.get(n)) is not None]

    def submit(self, name: str, batch: AppendBatch) -> Awaitable[Committed]:
        ch = self._need(name)
        committed = self._apply(ch, batch)
        fut: asyncio.Future[Committed] = asyncio.get_running_loop().create_future()
        fut.set_result(committed)
        asyncio.get_running_loop().create_task(_notify(ch))
        return fut

    def _apply(self, ch: _Channel, batch: AppendBatch) -> Committed:
        st = ch.state
        now = time.time()
        first = st.next_seq
        for data in batch.messages:
            ch.messages.append(Message(seq=st.next_seq, time=now, data=bytes(data)))
            st.next_seq += 1
            st.size_bytes += len(data)
        if batch.producer is not None:
            p = batch.producer
            st.producers[p.producer_id] = ProducerState(p.epoch, p.seq, now)
        if batch.stream_seq is not None:
            st.last_stream_seq = batch.stream_seq
        st.closed = st.closed or batch.close
        st.durable_closed = st.closed
        st.durable_seq = st.next_seq
        if batch.messages:
            st.last_write = now
        return Committed(first_seq=first, next_seq=st.next_seq, closed=st.closed)

    async def read(
        self, name: str, start_seq: int, max_bytes: int, max_messages: int = 1 << 30
    ) -> ReadResult:
        ch = self._need(name)
        st = ch.state
        if start_seq < st.first_seq:
            raise ChannelGone(f"offset {start_seq} is below the earliest retained {st.first_seq}")
        out: list[Message] = []
        size = 0
        i = start_seq - st.first_seq
        while i < len(ch.messages) and len(out) < max_messages:
            msg = ch.messages[i]
            if out and size + len(msg.data) > max_bytes:
                break
            out.append(msg)
            size += len(msg.data)
            i += 1
        nxt = start_seq + len(out)
        return ReadResult(messages=out, next_seq=nxt, up_to_date=nxt >= st.durable_seq)

    async def read_raw(
        self, name: str, start_seq: int, max_bytes: int, max_messages: int = 1 << 30
    ) -> RawReadResult:
        got = await self.read(name, start_seq, max_bytes, max_messages)
        data = b"".join(m.data for m in got.messages)
        lengths = [len(m.data) for m in got.messages]
        return RawReadResult(data, lengths, got.next_seq, got.up_to_date)

    async def wait(self, name: str, seq: int, timeout: float) -> bool:
        ch = self._need(name)

        def ready() -> bool:
            st = ch.state
            return st.durable_seq > seq or st.durable_closed or name not in self._channels

        async with ch.changed:
            try:
                await asyncio.wait_for(ch.changed.wait_for(ready), timeout)
            except TimeoutError:
                return False
        return True

    async def delete(self, name: str) -> None:
        ch = self._channels.pop(name, None)
        if ch is None:
            raise ChannelMissing(name)
        ch.state.deleted = True
        await _notify(ch)

    async def set_deleted(self, name: str, deleted: bool) -> None:
        self._need(name).state.deleted = deleted

    async def set_fork_refs(self, name: str, refs: int) -> None:
        self._need(name).state.fork_refs = refs

    async def enforce_retention(
        self, now: float, keep_below: Mapping[str, int] | None = None
    ) -> None:
        pins = keep_below or {}
        for name, ch in self._channels.items():
            _trim(ch, now, pins.get(name, 0))

    async def verify(self, name: str) -> ChannelCheck:
        """Nothing is stored, so there is no checksum to check: only that the messages held
        are exactly ``first_seq .. durable_seq``, in order."""
        ch = self._need(name)
        st = ch.state
        out = ChannelCheck(name, "", backend="memory", segments=len(ch.messages))
        for i, msg in enumerate(ch.messages):
            if msg.seq != st.first_seq + i:
                reason = f"message {msg.seq} held where {st.first_seq + i} belongs"
                out.corrupt = Problem(st.first_seq + i, "memory", i, reason)
                st.corrupt_seq = st.first_seq + i
                break
            out.messages += 1
        return out

    def _need(self, name: str) -> _Channel:
        ch = self._channels.get(name)
        if ch is None:
            raise ChannelMissing(name)
        return ch


def _trim(ch: _Channel, now: float, keep_below: int) -> None:
    """Drop the oldest messages beyond the retention limits (the memory 'segment' is one
    message; the local engine drops whole segments, so it may keep a little more), never one
    below ``keep_below`` (forks read it)."""
    st = ch.state
    ret = st.config.retention

    def over() -> bool:
        if not ch.messages or ch.messages[0].seq < keep_below:
            return False
        oldest = ch.messages[0]
        return (
            (ret.max_messages is not None and len(ch.messages) > ret.max_messages)
            or (ret.max_bytes is not None and st.size_bytes > ret.max_bytes)
            or (ret.max_age_s is not None and now - oldest.time > ret.max_age_s)
        )

    while over():
        dropped = ch.messages.pop(0)
        st.size_bytes -= len(dropped.data)
        st.first_seq += 1


async def _notify(ch: _Channel) -> None:
    async with ch.changed:
        ch.changed.notify_all()
