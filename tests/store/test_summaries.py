"""Contract: channel summaries without opening, and retention that keeps what forks pin.

``summaries`` exists so that listing 10,000 channels, or indexing their lifetimes at start-up,
does not open (replay and keep in memory) every one of them; ``keep_below`` exists so that
retention never drops history a fork still reads. Both run against every engine; the last test
pins down what the local engine can tell from a clean stop's checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from chanctl.daemon.store.base import ChannelState, ChannelStore, ChannelSummary, Retention

from .storekit import Engine, batch, config, local_store, now, read_all, segment_files


def by_name(found: list[ChannelSummary]) -> dict[str, ChannelSummary]:
    return {s.name: s for s in found}


def assert_matches(summary: ChannelSummary, st: ChannelState) -> None:
    """An open channel's summary is its live state."""
    assert summary.opened and summary.config == st.config
    assert (summary.first_seq, summary.next_seq, summary.closed) == (
        st.first_seq,
        st.durable_seq,
        st.durable_closed,
    )
    assert (summary.size_bytes, summary.deleted, summary.fork_refs) == (
        st.size_bytes,
        st.deleted,
        st.fork_refs,
    )


async def test_summaries_of_open_channels_are_their_state(store: ChannelStore) -> None:
    kept = config(Retention(max_messages=9), ttl_s=60)
    await store.create("a", kept, batch(b"x", b"y"))
    await store.create("b", config(), batch(b"z", close=True))
    await store.set_fork_refs("b", 2)
    found = by_name(await store.summaries())
    assert set(found) == {"a", "b"}
    for name in ("a", "b"):
        st = await store.get(name)
        assert st is not None
        assert_matches(found[name], st)
    assert found["a"].config.retention == Retention(max_messages=9)
    only = await store.summaries(["b", "missing"])
    assert [s.name for s in only] == ["b"]


async def test_summaries_after_restart_do_not_open(durable_engine: Engine) -> None:
    engine = durable_engine
    store = engine.store
    await store.create("a", config(Retention(max_bytes=4096)), batch(b"one"))
    await store.submit("a", batch(b"two", close=True))
    cfg = (await store.get("a")).config  # type: ignore[union-attr]
    store = await engine.reopen()
    for _ in range(2):  # and asking again still opens nothing
        (s,) = await store.summaries()
        assert (s.name, s.opened, s.config) == ("a", False, cfg)
        # What only a replay could tell may be None; whatever is reported is exact.
        assert s.first_seq in (None, 0) and s.next_seq in (None, 2) and s.closed in (None, True)
    st = await store.get("a")
    assert st is not None
    (s,) = await store.summaries(["a"])
    assert_matches(s, st)


async def test_retention_keeps_what_forks_pin(store: ChannelStore) -> None:
    await store.create("c", config(Retention(max_messages=5)), batch())
    for i in range(40):
        await store.submit("c", batch(b"%03d" % i * 30))
    await store.enforce_retention(now(), {"c": 30})
    st = await store.get("c")
    assert st is not None and st.first_seq == 0  # dropping is oldest first: nothing can go
    assert len(await read_all(store, "c", 0)) == 40
    await store.enforce_retention(now(), {"c": 0, "other": 7})
    assert st.first_seq > 0
    assert [m.seq for m in await read_all(store, "c", st.first_seq)] == list(
        range(st.first_seq, 40)
    )


async def test_local_summary_from_a_clean_stop_and_an_unclean_one(tmp_path: Path) -> None:
    """A clean stop checkpoints the tail, so a summary knows the offsets exactly; bytes
    appended after the checkpoint (an unclean stop) make them unknown, never wrong. Retention
    leaves a single-segment channel closed: the active segment is never dropped."""
    store = local_store(tmp_path)
    await store.start()
    await store.create("c", config(Retention(max_messages=1)), batch(b"a", b"b"))
    await store.create("big", config(Retention(max_messages=1)), batch())
    for i in range(30):
        await store.submit("big", batch(b"%03d" % i * 40))
    await store.stop()
    assert len(segment_files(tmp_path, "big")) > 1

    store = local_store(tmp_path)
    await store.start()
    await store.enforce_retention(now())
    found = by_name(await store.summaries())
    c = found["c"]
    assert (c.opened, c.next_seq, c.closed, c.first_seq) == (False, 2, False, 0)
    assert c.size_bytes == sum(p.stat().st_size for p in segment_files(tmp_path, "c"))
    assert found["big"].opened  # it had segments to drop, so retention opened it
    await store.stop()

    with open(segment_files(tmp_path, "c")[-1], "ab") as seg:
        seg.write(b"\0" * 16)  # a torn tail the checkpoint does not cover
    store = local_store(tmp_path)
    await store.start()
    (c,) = await store.summaries(["c"])
    assert (c.opened, c.next_seq, c.closed) == (False, None, None)
    st = await store.get("c")
    assert st is not None and st.durable_seq == 2
    await store.stop()
