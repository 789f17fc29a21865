"""A sliding TTL across a daemon restart (renewals by reads are kept in memory only).

Guards against a restart expiring a channel that was being read all along: its last *write*
may be far older than its TTL. The documented rule: a channel not touched since the daemon
started counts the start as its last access.
"""

from __future__ import annotations

import time
from pathlib import Path

from chanctl.daemon.config import Settings
from chanctl.daemon.service import StreamService
from chanctl.daemon.store.base import AppendBatch, ChannelConfig
from chanctl.daemon.store.memory import MemoryStore


async def test_a_restart_counts_as_an_access_for_sliding_ttls(tmp_path: Path) -> None:
    store = MemoryStore()
    long_ago = time.time() - 3600
    await store.create(
        "read-only", ChannelConfig("text/plain", long_ago, ttl_s=60), AppendBatch([])
    )
    await store.create(
        "absolute",
        ChannelConfig("text/plain", long_ago, expires_at="2001-01-01T00:00:00Z"),
        AppendBatch([]),
    )
    # A fresh service over existing data is what a restarted daemon is.
    service = StreamService(store, Settings(data_dir=tmp_path, socket_path=None, store="memory"))
    started = service.core.started_at
    await service.index_lifetimes()  # what the daemon's sweeper does first
    await service.sweep(started + 30)
    assert await store.get("read-only") is not None  # its TTL counts from the start
    assert await store.get("absolute") is None  # Expires-At is absolute: gone at once
    await service.sweep(started + 61)
    assert await store.get("read-only") is None  # idle for a whole TTL since the start
