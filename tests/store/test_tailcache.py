"""The local engine's tail cache and pipelined writer: what a live reader and a busy channel see.

Reads answered from memory must be exactly the reads the disk would answer (same chunks, same
caps, same timestamps), only durable data may ever be in the cache, and its memory is bounded
per channel and across channels. Appends pushed while a group is on its way to disk must form
later groups, be acknowledged in order and survive a restart, rolls included.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from chanctl.daemon.store.local import LocalStore
from chanctl.daemon.store.local.disk import Disk, Failpoints
from chanctl.daemon.store.local.tailcache import CHANNEL_BYTES, TailBudget, TailCache

from .storekit import batch, config, local_store, read_all, segment_files, settings


def _cached(store: LocalStore, name: str) -> int:
    """Bytes the channel's tail cache holds (0 without a cache)."""
    cache = store._logs[name].cache
    return 0 if cache is None else cache.bytes


async def _follow(store: LocalStore, name: str) -> None:
    """What a live reader does first: wait at the tail (which is what turns the cache on)."""
    st = await store.get(name)
    assert st is not None
    await store.wait(name, st.durable_seq, 0.001)


async def test_cached_reads_equal_disk_reads(tmp_path: Path) -> None:
    store = local_store(tmp_path, segment_bytes=4096)
    await store.start()
    await store.create("c", config(), batch())
    await _follow(store, "c")
    rng = random.Random(7)
    for i in range(120):
        msgs = [bytes([65 + i % 26]) * rng.randrange(0, 90) for _ in range(rng.randrange(0, 4))]
        await store.submit("c", batch(*msgs, close=False))
    cases = [(s, b, m) for s in (0, 1, 57, 117) for b in (1, 50, 500, 1 << 20) for m in (1, 3, 999)]
    hot = {c: await store.read_raw("c", *c) for c in cases}
    hot_msgs = {c: await store.read("c", *c) for c in cases}
    assert _cached(store, "c") > 0
    await store.stop()
    cold_store = local_store(tmp_path, segment_bytes=4096)  # a fresh store reads from disk
    await cold_store.start()
    for c in cases:
        assert await cold_store.read_raw("c", *c) == hot[c], c
        assert await cold_store.read("c", *c) == hot_msgs[c], c
    await cold_store.stop()


async def test_only_followed_channels_cache_and_only_durable_data(tmp_path: Path) -> None:
    store = local_store(tmp_path)
    await store.start()
    await store.create("quiet", config(), batch())
    await store.create("live", config(), batch())
    await _follow(store, "live")
    pending = [store.submit(name, batch(b"x" * 10)) for name in ("quiet", "live")]
    assert _cached(store, "live") == 0  # submitted is not durable: nothing cached yet
    await asyncio.gather(*pending)
    assert _cached(store, "quiet") == 0 and store._logs["quiet"].cache is None
    assert _cached(store, "live") > 0
    got = await store.read_raw("live", 0, 1 << 20)
    assert (got.data, list(got.lengths), got.next_seq) == (b"x" * 10, [10], 1)
    await store.stop()


def test_cache_memory_is_bounded_per_channel_and_overall() -> None:
    budget = TailBudget(cap=3 * CHANNEL_BYTES)
    caches = [TailCache(budget) for _ in range(5)]
    payload = b"p" * 4000
    for cache in caches:
        cache.watch()
        for seq in range(1000):
            cache.add(seq, seq + 1, 0.0, (len(payload),), payload)
        assert cache.bytes <= CHANNEL_BYTES
        assert budget.used <= budget.cap
    assert caches[-1].bytes > 0  # the newest keeps its data; the oldest gave theirs up
    assert caches[0].bytes == 0
    last = caches[-1].read(999, 1000, 1 << 20, 10, raw=True)
    assert last is not None and last.chunks == [payload]
    assert caches[-1].read(0, 1000, 1 << 20, 10, raw=True) is None  # dropped: read from disk


def test_cache_never_serves_a_gap_or_a_stale_tail() -> None:
    cache = TailCache(TailBudget())
    cache.watch()
    cache.add(0, 2, 1.0, (1, 1), b"ab")
    cache.add(5, 6, 2.0, (1,), b"f")  # not contiguous: the older part must go
    assert cache.read(0, 6, 100, 100, raw=True) is None
    hit = cache.read(5, 6, 100, 100, raw=True)
    assert hit is not None and hit.chunks == [b"f"] and hit.next_seq == 6
    assert cache.read(5, 7, 100, 100, raw=True) is None  # the horizon moved past it: stale


async def test_pipelined_groups_are_acked_in_order_and_survive_rolls(tmp_path: Path) -> None:
    store = local_store(tmp_path, segment_bytes=1024)
    await store.start()
    await store.create("c", config(), batch())

    async def writer(w: int) -> list[int]:
        firsts = []
        for i in range(40):
            got = await store.submit("c", batch(f"{w}:{i}".encode(), b"+" * (i % 3)))
            firsts.append(got.first_seq)
        return firsts

    results = await asyncio.gather(*(writer(w) for w in range(8)))
    for firsts in results:
        assert firsts == sorted(firsts)  # each writer's batches in its own order
    st = await store.get("c")
    assert st is not None and st.durable_seq == st.next_seq == 8 * 40 * 2
    assert len(segment_files(tmp_path, "c")) > 3  # groups rolled segments on the way
    before = [m.data for m in await read_all(store, "c", 0)]
    await store.stop()
    store = local_store(tmp_path, segment_bytes=1024)
    await store.start()
    assert [m.data for m in await read_all(store, "c", 0)] == before
    for w in range(8):
        mine = [d for d in before if d.startswith(f"{w}:".encode())]
        assert mine == [f"{w}:{i}".encode() for i in range(40)]
    await store.stop()


async def test_a_failed_pipelined_group_fails_what_was_pushed_behind_it(tmp_path: Path) -> None:
    spec = "append.before_fsync=sleep:30@2;append.after_fsync_before_ack=error:EIO@2"
    store = LocalStore(settings(tmp_path), Disk(Failpoints(spec)))
    await store.start()
    await store.create("c", config(), batch())
    await store.submit("c", batch(b"ok"))
    doomed = store.submit("c", batch(b"slow"))
    await asyncio.sleep(0.01)  # that group is in its fsync now: these queue behind it
    behind = [store.submit("c", batch(b"behind%d" % i)) for i in range(3)]
    results = await asyncio.gather(doomed, *behind, return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results)
    st = await store.get("c")
    assert st is not None and (st.next_seq, st.durable_seq) == (1, 1)
    assert [m.data for m in await read_all(store, "c", 0)] == [b"ok"]
    await store.stop()
