"""The newest durable records of a channel, kept in memory for the readers that follow it.

Why: a live reader (SSE, long-poll) is woken by a commit and asks for exactly the batch that
was just committed. Reading those few bytes back through the store's threads costs a thread
round trip per message, more than everything else a live read does. So the channel log feeds
each group's batches here once the group is durable (never earlier: readers only see durable
data), and a read starting inside the cached range is answered on the loop, without I/O.

What is kept is exactly what was written (the payload bytes and message sizes the record framed),
and the range always ends at the durable horizon with no gap, so a cached read returns what the
same read from disk would. Bounded twice: at most CHANNEL_BYTES per channel, and the budget's cap
over all channels (the least recently fed channels give theirs up first). Only channels that
someone follows (``watch``: a reader waited for news or read up to the tail within WATCH_S) have
a cache at all, so 10,000 channels nobody reads cost nothing.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections import OrderedDict

from .segment import SegmentRead, take

CHANNEL_BYTES = 1 << 20
BUDGET_BYTES = 64 << 20
WATCH_S = 60.0
ENTRY_OVERHEAD = 200  # bytes of bookkeeping per cached batch, counted against the limits
_COMPACT_AT = 256  # dropped entries before the lists are compacted


class TailBudget:
    """The memory all tail caches of one store may use together."""

    def __init__(self, cap: int = BUDGET_BYTES) -> None:
        self.cap = cap
        self.used = 0
        self._lru: OrderedDict[TailCache, None] = OrderedDict()  # least recently fed first

    def charge(self, cache: TailCache, n: int) -> None:
        """Account ``n`` more bytes to ``cache``; make room by emptying other caches."""
        self.used += n
        self._lru[cache] = None
        self._lru.move_to_end(cache)
        while self.used > self.cap and len(self._lru) > 1:
            victim = next(iter(self._lru))
            if victim is cache:
                break
            victim.clear()

    def refund(self, cache: TailCache, n: int, empty: bool) -> None:
        self.used -= n
        if empty:
            self._lru.pop(cache, None)


class TailCache:
    """One channel's newest durable batches: ``[first, end)`` in seqs, contiguous."""

    __slots__ = ("_budget", "_firsts", "_recs", "_head", "_end", "bytes", "watched_until")

    def __init__(self, budget: TailBudget) -> None:
        self._budget = budget
        self._firsts: list[int] = []  # first seq of each batch, oldest first
        self._recs: list[tuple[float, tuple[int, ...], bytes, int]] = []  # time, sizes, payload
        self._head = 0  # entries before this index were dropped
        self._end = 0  # seq after the newest batch
        self.bytes = 0
        self.watched_until = 0.0

    def watch(self) -> None:
        """A reader follows the channel: cache what gets committed for a while."""
        self.watched_until = time.monotonic() + WATCH_S

    def watched(self) -> bool:
        """Still followed? Once not, the log drops the cache (and its memory) altogether."""
        if self.watched_until >= time.monotonic():
            return True
        self.clear()
        return False

    def add(self, first: int, end: int, when: float, lengths: tuple[int, ...], data: bytes) -> None:
        """Feed one durable batch (in seq order; called right after its group committed)."""
        if end == first:
            return  # no messages: nothing a read could return
        cost = len(data) + 4 * len(lengths) + ENTRY_OVERHEAD
        if (self._firsts and first != self._end) or cost > CHANNEL_BYTES:
            self.clear()  # never a gap; an oversized batch is read from disk
            if cost > CHANNEL_BYTES:
                return
        self._firsts.append(first)
        self._recs.append((when, lengths, data, cost))
        self._end = end
        self.bytes += cost
        self._budget.charge(self, cost)
        while self.bytes > CHANNEL_BYTES:
            self._drop_oldest()

    def read(
        self, start: int, horizon: int, max_bytes: int, max_messages: int, raw: bool
    ) -> SegmentRead | None:
        """What a read from ``start`` would return, or None when the cache does not hold
        ``start`` (or does not end at ``horizon``, the durable seq: then it is stale)."""
        firsts = self._firsts
        if self._head >= len(firsts) or not firsts[self._head] <= start < self._end:
            return None
        if self._end != horizon:
            self.clear()
            return None
        out = SegmentRead(next_seq=start, raw=raw)
        recs = self._recs
        for i in range(bisect_right(firsts, start, self._head) - 1, len(firsts)):
            when, lengths, data, _ = recs[i]
            if not take(out, firsts[i], when, lengths, data, max_messages, max_bytes):
                break
        return out

    def clear(self) -> None:
        self._budget.refund(self, self.bytes, empty=True)
        self._firsts, self._recs, self._head, self.bytes = [], [], 0, 0

    def _drop_oldest(self) -> None:
        cost = self._recs[self._head][3]
        self._recs[self._head] = (0.0, (), b"", 0)  # let the payload go now
        self._head += 1
        self.bytes -= cost
        self._budget.refund(self, cost, empty=self._head == len(self._firsts))
        if self._head >= _COMPACT_AT and 2 * self._head >= len(self._firsts):
            del self._firsts[: self._head], self._recs[: self._head]
            self._head = 0
