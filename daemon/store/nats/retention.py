"""Retention: whole records purged from the front of a channel's stream by the daemon.

The streams carry no MaxAge/MaxBytes/MaxMsgs of their own, on purpose: JetStream counts
records (one per batch group), not messages, and would drop a record without the producer
checkpoint that must cover it first. So the daemon applies the channel's limits itself (the
service calls this every 10 s): it walks records from the oldest, checkpoints the producer
table, then purges below the first record it keeps. The newest record is always kept, because
the channel's cumulative state is read from it.
"""

from __future__ import annotations

from ..base import Retention
from .catalog import Catalog
from .channel import Chan
from .opener import adopt_head
from .reader import record_at
from .records import Record
from .shared import Shared

NO_RETENTION = Retention()


def _over(ret: Retention, messages: int, size: int, rec: Record, now: float) -> bool:
    """Can ``rec`` (the oldest retained record) go? ``messages``/``size`` are what is
    retained now. Counts keep at least ``max_messages``; bytes and age are upper bounds."""
    if ret.max_age_s is not None and now - rec.meta.time > ret.max_age_s:
        return True
    if ret.max_bytes is not None and size > ret.max_bytes:
        return True
    return ret.max_messages is not None and messages - rec.meta.count >= ret.max_messages > 0


async def trim(sh: Shared, catalog: Catalog, chan: Chan, now: float, keep_below: int) -> None:
    """Purge the records beyond ``chan``'s retention limits, raising its first offset, but
    never a record holding a message below ``keep_below`` (forks read it)."""
    ret = chan.state.config.retention
    if ret == NO_RETENTION or chan.state.deleted:
        return
    await _follow_foreign_purge(sh, chan)
    st = chan.state
    messages, size = st.durable_seq - st.first_seq, st.size_bytes
    cut = chan.first_sseq
    while cut < chan.last_sseq:
        rec = await record_at(sh, chan, cut)
        if rec.meta.first < keep_below or not _over(ret, messages, size, rec, now):
            break
        messages -= rec.meta.count
        size -= len(rec.data or b"")
        cut += 1
    if cut == chan.first_sseq:
        return
    await catalog.save_checkpoint(chan.where.stream, chan.last_sseq, dict(chan.durable.producers))
    await sh.api.purge_below(chan.where.stream, cut)
    adopt_head(chan, await record_at(sh, chan, cut, prefetch=1))


async def _follow_foreign_purge(sh: Shared, chan: Chan) -> None:
    """Another daemon may have purged already: start from the stream's real first record."""
    bounds = await sh.api.bounds(chan.where.stream)
    if bounds is not None and chan.first_sseq < bounds[0] <= chan.last_sseq:
        adopt_head(chan, await record_at(sh, chan, bounds[0], prefetch=1))
