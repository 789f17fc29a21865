"""The ChannelStore contract, run against every engine (memory reference + local disk).

Whatever an engine does inside, the service above it must observe the same behaviour: sequence
numbers, batch atomicity, read caps, wake-ups, close, producer / Stream-Seq state, deletion,
retention, fork bases, and (for durable engines) the same state after a restart.
"""

from __future__ import annotations

import asyncio

import pytest
from chanctl.daemon.store.base import (
    ChannelExists,
    ChannelGone,
    ChannelMissing,
    ChannelStore,
    Committed,
    ForkOrigin,
    Retention,
    StoreError,
)

from .storekit import Engine, batch, config, now, read_all


async def test_create_get_names(store: ChannelStore) -> None:
    assert await store.get("a") is None
    st = await store.create("a", config(), batch())
    assert (st.name, st.first_seq, st.next_seq, st.durable_seq, st.closed) == ("a", 0, 0, 0, False)
    assert (await store.get("a")) is not None
    assert store.names() == ["a"]
    with pytest.raises(ChannelExists):
        await store.create("a", config(), batch())
    assert isinstance(store.fsync_policy, str) and store.fsync_policy


async def test_create_with_initial_batch(store: ChannelStore) -> None:
    st = await store.create("c", config(), batch(b"x", b"y", producer=("p", 2, 0), stream_seq="7"))
    assert (st.next_seq, st.durable_seq, st.last_stream_seq) == (2, 2, "7")
    assert (st.producers["p"].epoch, st.producers["p"].seq) == (2, 0)
    assert [m.data for m in await read_all(store, "c", 0)] == [b"x", b"y"]


async def test_create_closed(store: ChannelStore) -> None:
    st = await store.create("c", config(), batch(b"final", close=True))
    assert st.closed and st.durable_closed
    assert await store.wait("c", 1, timeout=0.01)


async def test_append_and_read_in_order(store: ChannelStore) -> None:
    await store.create("c", config(), batch())
    got = []
    for i in range(30):
        got.append(await store.submit("c", batch(*[b"m%d.%d" % (i, j) for j in range(i % 4)])))
    seq = 0
    for c in got:
        assert c.first_seq == seq
        seq = c.next_seq
    msgs = await read_all(store, "c", 0)
    assert [m.seq for m in msgs] == list(range(seq))
    assert [m.data for m in msgs] == [b"m%d.%d" % (i, j) for i in range(30) for j in range(i % 4)]
    st = await store.get("c")
    assert st is not None and st.next_seq == st.durable_seq == seq


async def test_concurrent_batches_stay_whole(store: ChannelStore) -> None:
    """Batches submitted concurrently get contiguous, non-overlapping ranges, each whole."""
    await store.create("c", config(), batch())

    async def writer(w: int) -> list[Committed]:
        out = []
        for i in range(20):
            out.append(await store.submit("c", batch(*[b"%d:%d:%d" % (w, i, j) for j in range(3)])))
        return out

    results = await asyncio.gather(*(writer(w) for w in range(8)))
    msgs = await read_all(store, "c", 0)
    assert len(msgs) == 8 * 20 * 3
    for w, commits in enumerate(results):
        for i, c in enumerate(commits):
            assert c.next_seq - c.first_seq == 3
            data = [m.data for m in msgs[c.first_seq : c.next_seq]]
            assert data == [b"%d:%d:%d" % (w, i, j) for j in range(3)]


async def test_submit_updates_pending_state_synchronously(store: ChannelStore) -> None:
    await store.create("c", config(), batch())
    fut = store.submit("c", batch(b"a", b"b", producer=("p", 1, 5), stream_seq="s9", close=True))
    st = await store.get("c")
    assert st is not None
    assert (st.next_seq, st.closed, st.last_stream_seq) == (2, True, "s9")
    assert st.producers["p"].seq == 5
    c = await fut
    assert c == Committed(0, 2, True)
    assert st.durable_seq == 2 and st.durable_closed


async def test_read_caps(store: ChannelStore) -> None:
    await store.create("c", config(), batch())
    for i in range(10):
        await store.submit("c", batch(*[bytes([65 + i]) * 10 for _ in range(5)]))
    r = await store.read("c", 0, 1 << 20, max_messages=7)
    assert [m.seq for m in r.messages] == list(range(7)) and r.next_seq == 7 and not r.up_to_date
    r = await store.read("c", 3, 25)  # 10-byte messages: two fit in 25 bytes
    assert [m.seq for m in r.messages] == [3, 4] and r.next_seq == 5
    r = await store.read("c", 12, 1)  # at least one message even when it exceeds max_bytes
    assert [m.seq for m in r.messages] == [12]
    r = await store.read("c", 48, 1 << 20)
    assert [m.seq for m in r.messages] == [48, 49] and r.up_to_date and r.next_seq == 50
    r = await store.read("c", 50, 1 << 20)
    assert r.messages == [] and r.up_to_date and r.next_seq == 50


async def test_read_starts_inside_a_batch(store: ChannelStore) -> None:
    await store.create("c", config(), batch(*[b"%d" % i for i in range(10)]))
    r = await store.read("c", 4, 1 << 20, max_messages=3)
    assert [(m.seq, m.data) for m in r.messages] == [(4, b"4"), (5, b"5"), (6, b"6")]


async def test_read_raw_matches_read(store: ChannelStore) -> None:
    await store.create("c", config(), batch())
    for i in range(40):
        await store.submit("c", batch(*[b"%d-%d" % (i, j) * (j + 1) for j in range(i % 5)]))
    for start, max_bytes, max_messages in [(0, 1 << 20, 1 << 30), (3, 40, 1000), (17, 1, 5)]:
        full = await store.read("c", start, max_bytes, max_messages)
        raw = await store.read_raw("c", start, max_bytes, max_messages)
        assert raw.data == b"".join(m.data for m in full.messages)
        assert list(raw.lengths) == [len(m.data) for m in full.messages]
        assert (raw.next_seq, raw.up_to_date) == (full.next_seq, full.up_to_date)


async def test_wait_times_out_and_wakes(store: ChannelStore) -> None:
    await store.create("c", config(), batch(b"first"))
    assert await store.wait("c", 0, timeout=0.01)  # data at seq 0 exists already
    assert not await store.wait("c", 1, timeout=0.02)
    waiter = asyncio.create_task(store.wait("c", 1, timeout=5))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await store.submit("c", batch(b"second"))
    assert await asyncio.wait_for(waiter, 2)


async def test_close_wakes_waiters(store: ChannelStore) -> None:
    await store.create("c", config(), batch())
    waiter = asyncio.create_task(store.wait("c", 0, timeout=5))
    await asyncio.sleep(0.01)
    c = await store.submit("c", batch(close=True))
    assert c == Committed(0, 0, True)
    assert await asyncio.wait_for(waiter, 2)
    st = await store.get("c")
    assert st is not None and st.closed and st.durable_closed


async def test_producer_and_stream_seq_state(store: ChannelStore) -> None:
    await store.create("c", config(), batch())
    await store.submit("c", batch(b"1", producer=("a", 0, 0), stream_seq="001"))
    await store.submit("c", batch(b"2", producer=("b", 3, 9)))
    await store.submit("c", batch(producer=("a", 1, 0)))  # empty batch still advances state
    st = await store.get("c")
    assert st is not None
    assert {k: (v.epoch, v.seq) for k, v in st.producers.items()} == {"a": (1, 0), "b": (3, 9)}
    assert st.last_stream_seq == "001" and st.next_seq == 2


async def test_delete(store: ChannelStore) -> None:
    await store.create("c", config(), batch(b"x"))
    await store.create("other", config(), batch(b"y"))
    waiter = asyncio.create_task(store.wait("c", 5, timeout=5))
    await asyncio.sleep(0.01)
    await store.delete("c")
    assert await asyncio.wait_for(waiter, 2)
    assert await store.get("c") is None
    assert store.names() == ["other"]
    with pytest.raises(ChannelMissing):
        await store.read("c", 0, 100)
    with pytest.raises(ChannelMissing):
        await store.delete("c")
    with pytest.raises(ChannelMissing):
        store.submit("c", batch(b"z"))
    st = await store.create("c", config(), batch())  # the name is free again, and empty
    assert st.next_seq == 0
    assert [m.data for m in await read_all(store, "other", 0)] == [b"y"]


async def test_soft_delete_and_fork_refs(engine: Engine) -> None:
    store = engine.store
    await store.create("c", config(), batch(b"x"))
    await store.set_deleted("c", True)
    await store.set_fork_refs("c", 3)
    assert "c" in store.names()
    if engine.durable:
        store = await engine.reopen()
        assert "c" in store.names()
    st = await store.get("c")
    assert st is not None and st.deleted and st.fork_refs == 3
    await store.set_deleted("c", False)
    st = await store.get("c")
    assert st is not None and not st.deleted


async def test_fork_starts_at_base(store: ChannelStore) -> None:
    await store.create("src", config(), batch(*[b"%d" % i for i in range(5)]))
    st = await store.create("fork", config(fork=ForkOrigin("src", 5)), batch(b"own"))
    assert (st.first_seq, st.next_seq, st.durable_seq) == (5, 6, 6)
    assert await store.submit("fork", batch(b"more")) == Committed(6, 7, False)
    assert [(m.seq, m.data) for m in await read_all(store, "fork", 5)] == [
        (5, b"own"),
        (6, b"more"),
    ]
    with pytest.raises(ChannelGone):
        await store.read("fork", 4, 100)


async def test_retention_by_count(store: ChannelStore) -> None:
    await store.create("c", config(Retention(max_messages=20)), batch())
    for i in range(60):
        await store.submit("c", batch(b"%03d" % i * 20))
    await store.enforce_retention(now())
    st = await store.get("c")
    assert st is not None
    assert 0 < st.first_seq and st.durable_seq - st.first_seq >= 20
    with pytest.raises(ChannelGone):
        await store.read("c", 0, 100)
    msgs = await read_all(store, "c", st.first_seq)
    assert [m.seq for m in msgs] == list(range(st.first_seq, 60))
    assert msgs[-1].data == b"059" * 20


async def test_retention_by_age_and_bytes(store: ChannelStore) -> None:
    await store.create("old", config(Retention(max_age_s=60)), batch())
    await store.create("big", config(Retention(max_bytes=1000)), batch())
    await store.create("keep", config(), batch())
    for i in range(50):
        for name in ("old", "big", "keep"):
            await store.submit(name, batch(b"%04d" % i * 25))
    await store.enforce_retention(now() + 3600)
    for name in ("old", "big"):
        st = await store.get(name)
        assert st is not None and st.first_seq > 0
        with pytest.raises(ChannelGone):
            await store.read(name, 0, 100)
    st = await store.get("keep")
    assert st is not None and st.first_seq == 0
    assert len(await read_all(store, "keep", 0)) == 50


async def test_unknown_channel(store: ChannelStore) -> None:
    with pytest.raises(ChannelMissing):
        store.submit("nope", batch(b"x"))
    with pytest.raises(ChannelMissing):
        await store.read("nope", 0, 10)
    with pytest.raises(StoreError):
        await store.wait("nope", 0, 0.01)


async def test_reopen_keeps_everything(durable_engine: Engine) -> None:
    engine = durable_engine
    store = engine.store
    await store.create("c", config(), batch(b"init", producer=("p", 1, 0), stream_seq="a"))
    for i in range(1, 40):
        await store.submit("c", batch(b"x" * i, b"y", producer=("p", 1, i), stream_seq=f"a{i:03d}"))
    await store.submit("c", batch(producer=("q", 4, 2)))
    await store.submit("c", batch(b"bye", producer=("p", 1, 40), close=True))
    before = await store.get("c")
    assert before is not None
    msgs_before = await read_all(store, "c", 0)

    store = await engine.reopen()
    assert store.names() == ["c"]
    after = await store.get("c")
    assert after == before
    assert await read_all(store, "c", 0) == msgs_before
