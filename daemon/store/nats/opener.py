"""Opening a channel: its durable state from its stream, producers from checkpoint + replay.

The newest record alone gives the offsets, Stream-Seq, closed flag and byte count (its header
fields are cumulative); the oldest retained record gives the first offset. Producer state is
the only thing spread over the log: it is the last checkpoint (KV) plus every record after it,
replayed through the channel's live consumer, which then simply keeps following.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..base import ChannelState, ChannelSummary, StorageFailed
from .catalog import Catalog, Entry
from .channel import Chan, Durable, Where
from .reader import record_at
from .records import Record
from .shared import Shared

OPEN_TIMEOUT_S = 120.0


@dataclass
class Bounds:
    first: int
    last: int
    head: Record | None  # the oldest retained record, with payload
    tail: Record | None  # the newest


def where_of(entry: Entry, namespace: str) -> Where:
    suffix = entry.stream.rsplit("_", 1)[-1]
    return Where(entry.stream, f"chanctl.{namespace}.c.{suffix}")


async def load_bounds(sh: Shared, chan: Chan) -> Bounds | None:
    got = await sh.api.bounds(chan.where.stream)
    if got is None:
        return None
    first, last = got
    if last < first or last == 0:
        return Bounds(first, last, None, None)
    head = await record_at(sh, chan, first, prefetch=1)
    tail = await record_at(sh, chan, last, prefetch=1)
    return Bounds(first, last, head, tail)


def new_state(name: str, entry: Entry) -> ChannelState:
    cfg = entry.meta.config
    base = cfg.fork.seq if cfg.fork is not None else 0
    st = ChannelState(name=name, config=cfg, first_seq=base, next_seq=base, durable_seq=base)
    st.deleted, st.fork_refs = entry.meta.deleted, entry.meta.fork_refs
    return st


async def open_chan(sh: Shared, catalog: Catalog, name: str, entry: Entry) -> Chan | None:
    """The channel as its stream holds it; None if the stream is gone (deleted meanwhile).

    The caller starts the live consumer at ``chan.last_sseq`` and waits for ``caught_up``.
    """
    st = new_state(name, entry)
    chan = Chan(where_of(entry, sh.ns.namespace), st, Durable(next=st.next_seq), 0)
    bounds = await load_bounds(sh, chan)
    if bounds is None:
        return None
    ck_seq, producers = await catalog.load_checkpoint(entry.stream)
    chan.durable.producers = producers
    chan.first_sseq = bounds.first
    chan.catch_up_to = bounds.last
    if bounds.head is None or bounds.tail is None:
        chan.last_sseq = bounds.last
    else:
        adopt_head(chan, bounds.head)
        chan.durable.apply(bounds.tail.meta)
        chan.durable.producers = producers  # the tail's own stamps come again in the replay
        chan.last_sseq = max(ck_seq, bounds.first - 1)
        if chan.last_sseq >= bounds.last:
            chan.last_sseq = bounds.last - 1
            chan.observe(bounds.tail)  # checkpoint covers everything: apply the tail only
    chan.rebase()  # pending := durable
    st.durable_seq, st.durable_closed = chan.durable.next, chan.durable.closed
    st.size_bytes = chan.durable.bytes_end - chan.bytes_start
    if chan.last_sseq >= chan.catch_up_to:
        chan.caught_up.set()
    return chan


def adopt_head(chan: Chan, head: Record) -> None:
    """Make ``head`` the oldest retained record (after opening or a purge)."""
    data = head.data or b""
    chan.first_sseq = head.sseq
    chan.bytes_start = head.meta.bytes_end - len(data)
    chan.state.first_seq = head.meta.first
    chan.state.size_bytes = chan.durable.bytes_end - chan.bytes_start
    chan.index.drop_below(head.sseq)


async def catch_up(chan: Chan) -> None:
    """Wait until the live consumer has replayed every record that existed at open."""
    try:
        await asyncio.wait_for(chan.caught_up.wait(), OPEN_TIMEOUT_S)
    except TimeoutError:
        raise StorageFailed(
            f"channel {chan.state.name!r}: replaying its records from NATS took too long"
        ) from None


async def peek_summary(sh: Shared, name: str, entry: Entry) -> ChannelSummary:
    """A channel this daemon has not opened, summarised from its newest record alone (one
    direct get: its header's cumulative fields). What only the oldest record could tell
    (first offset, retained bytes) stays None, as the base contract allows."""
    meta, cfg = entry.meta, entry.meta.config
    where = where_of(entry, sh.ns.namespace)
    recs = await sh.api.last_of(where.stream, where.subject)
    tail = recs.meta if recs is not None else None
    return ChannelSummary(
        name=name,
        config=cfg,
        opened=False,
        deleted=meta.deleted,
        fork_refs=meta.fork_refs,
        next_seq=None if tail is None else tail.end,
        closed=None if tail is None else tail.closed,
        last_write=None if tail is None or not tail.last_write else tail.last_write,
    )
