"""Reads: from an offset to the record that holds it, then record after record up to the caps.

Records come from the shared cache when they were just written or read, otherwise from
batched direct gets (any replica answers; a lagging follower that does not have a record yet
is bypassed through the stream leader). Only offsets below the channel's durable end are ever
served, so a reader never sees a record before its publish was acknowledged or followed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..base import ChannelGone, Message, StorageFailed
from .channel import Chan
from .records import Record
from .shared import Shared

PREFETCH = 32
PREFETCH_BYTES = 4 * 1024 * 1024


@dataclass
class Span:
    """Messages [lo, hi) of one record (indexes into the record)."""

    rec: Record
    lo: int
    hi: int


async def record_at(sh: Shared, chan: Chan, sseq: int, prefetch: int = PREFETCH) -> Record:
    """The record stored at ``sseq``, with its payload."""
    stream = chan.where.stream
    rec = sh.cache.get(stream, sseq)
    if rec is not None:
        return rec
    recs = await sh.api.fetch(stream, sseq, prefetch, PREFETCH_BYTES)
    for got in recs:
        sh.cache.put(stream, got)
    if recs and recs[0].sseq == sseq:
        return recs[0]
    one = await sh.api.leader_get(stream, sseq)
    if one is None:
        raise ChannelGone(f"record {sseq} of channel {chan.state.name!r} is no longer retained")
    sh.cache.put(stream, one)
    return one


async def locate(sh: Shared, chan: Chan, offset: int) -> Record:
    """The record holding ``offset`` (which must be retained and durable)."""
    hit = chan.index.find(offset)
    if hit is not None:
        return await record_at(sh, chan, hit)
    lo = chan.first_sseq
    oldest = chan.index.oldest()
    hi = chan.last_sseq if oldest is None else oldest - 1
    while lo <= hi:  # records carry their first offset, which grows with the sequence
        mid = (lo + hi) // 2
        rec = await record_at(sh, chan, mid, prefetch=1)
        if offset < rec.meta.first:
            hi = mid - 1
        elif offset >= rec.meta.end:
            lo = mid + 1
        else:
            return rec
    raise ChannelGone(f"offset {offset} of channel {chan.state.name!r} is no longer retained")


async def collect(
    sh: Shared, chan: Chan, start: int, max_bytes: int, max_messages: int
) -> tuple[list[Span], int]:
    """The spans a read returns and the offset after them (at least one message if any)."""
    st = chan.state
    if start < st.first_seq:
        raise ChannelGone(f"offset {start} is below the earliest retained {st.first_seq}")
    end = st.durable_seq
    if start >= end:
        return [], start
    rec = await locate(sh, chan, start)
    spans: list[Span] = []
    size = count = 0
    pos = start
    while True:
        lengths = rec.lengths
        if lengths is None:
            raise StorageFailed(f"record {rec.sseq} was read without its payload")
        lo = hi = pos - rec.meta.first
        full = False
        while hi < rec.meta.count:
            n = lengths[hi]
            if count >= max_messages or (count and size + n > max_bytes):
                full = True
                break
            size, count, hi = size + n, count + 1, hi + 1
        if hi > lo:
            spans.append(Span(rec, lo, hi))
        pos = rec.meta.first + hi
        if full or pos >= end or count >= max_messages:
            return spans, pos
        rec = await record_at(sh, chan, rec.sseq + 1)


def to_messages(spans: list[Span]) -> list[Message]:
    out: list[Message] = []
    for span in spans:
        rec, lengths, data = span.rec, span.rec.lengths, span.rec.data
        assert lengths is not None and data is not None
        pos = sum(lengths[: span.lo])
        for i in range(span.lo, span.hi):
            n = lengths[i]
            out.append(Message(rec.meta.first + i, rec.meta.time, data[pos : pos + n]))
            pos += n
    return out


def to_raw(spans: list[Span]) -> tuple[bytes, list[int]]:
    chunks: list[bytes] = []
    lengths: list[int] = []
    for span in spans:
        lens, data = span.rec.lengths, span.rec.data
        assert lens is not None and data is not None
        start = sum(lens[: span.lo])
        part = lens[span.lo : span.hi]
        stop = start + sum(part)
        chunks.append(data if (start, stop) == (0, len(data)) else data[start:stop])
        lengths.extend(part)
    return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), lengths
