"""The bounded producer table.

Durable Streams idempotent producers are keyed by ``Producer-Id``; a channel written by ever new
ids (one per short-lived process, say) would grow its table, and every segment's STATE header,
without bound. The table is therefore an LRU in a plain dict (insertion order = least recently
seen first) capped at ``DEFAULT_PRODUCER_CAP`` entries: beyond it the least recently seen
producers are forgotten. A forgotten producer that comes back is treated as new by the service
(its next append is accepted as a fresh epoch/sequence), which is the documented trade-off.
"""

from __future__ import annotations

from ..base import ProducerState

DEFAULT_PRODUCER_CAP = 100_000


def remember_producer(
    table: dict[str, ProducerState], pid: str, ps: ProducerState, cap: int
) -> list[tuple[str, ProducerState]]:
    """Insert or refresh ``pid`` as most recently seen; returns the entries evicted for room."""
    table.pop(pid, None)
    table[pid] = ps
    evicted: list[tuple[str, ProducerState]] = []
    while len(table) > cap:
        old = next(iter(table))
        evicted.append((old, table.pop(old)))
    return evicted
