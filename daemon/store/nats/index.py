"""Finding records by offset: a bounded per-channel index, and a shared record cache.

Offsets are message counts and stream sequences count records, so the two drift apart with
every multi-message batch. Each channel remembers where the records it has seen start (the
ones it wrote or followed since it was opened); anything older is found by binary search over
stream sequences (records carry their first offset, which grows with the stream sequence).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict

from .records import Record

INDEX_MAX = 200_000  # records remembered per open channel (16 bytes each)
CACHE_BYTES = 64 * 1024 * 1024


class RecordIndex:
    """(first offset, stream sequence) of a contiguous run of records, oldest first."""

    def __init__(self) -> None:
        self.firsts: list[int] = []
        self.sseqs: list[int] = []

    def add(self, first: int, sseq: int) -> None:
        if self.sseqs and sseq != self.sseqs[-1] + 1:
            self.clear()  # not contiguous any more: start a new run
        self.firsts.append(first)
        self.sseqs.append(sseq)
        if len(self.sseqs) > INDEX_MAX:
            half = INDEX_MAX // 2
            del self.firsts[:half], self.sseqs[:half]

    def find(self, offset: int) -> int | None:
        """The stream sequence of the record holding ``offset`` (the caller checks that the
        offset is below the channel's durable end), or None if it is older than the run."""
        i = bisect_right(self.firsts, offset) - 1
        return None if i < 0 else self.sseqs[i]

    def oldest(self) -> int | None:
        return self.sseqs[0] if self.sseqs else None

    def drop_below(self, sseq: int) -> None:
        i = bisect_right(self.sseqs, sseq - 1)
        del self.firsts[:i], self.sseqs[:i]

    def clear(self) -> None:
        self.firsts.clear()
        self.sseqs.clear()


class RecordCache:
    """Recently written or read records with their payload, least recently used out first.

    Live readers read what was just appended: serving it from here keeps the append-to-reader
    latency free of a NATS round trip.
    """

    def __init__(self, budget: int = CACHE_BYTES) -> None:
        self.budget = budget
        self.used = 0
        self._items: OrderedDict[tuple[str, int], Record] = OrderedDict()

    def get(self, stream: str, sseq: int) -> Record | None:
        rec = self._items.get((stream, sseq))
        if rec is not None:
            self._items.move_to_end((stream, sseq))
        return rec

    def put(self, stream: str, rec: Record) -> None:
        if rec.data is None:
            return
        key = (stream, rec.sseq)
        old = self._items.pop(key, None)
        if old is not None:
            self.used -= old.size
        self._items[key] = rec
        self.used += rec.size
        while self.used > self.budget and len(self._items) > 1:
            _, victim = self._items.popitem(last=False)
            self.used -= victim.size

    def forget(self, stream: str) -> None:
        for key in [k for k in self._items if k[0] == stream]:
            self.used -= self._items.pop(key).size
