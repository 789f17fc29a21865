"""The NATS JetStream half: the same five workloads with nats-py against a bench-owned server.

A chanctl channel maps to a JetStream subject in a file-backed stream and a message to one
100-byte publish. The server runs with ``sync_interval: always``, so a publish ack means the
message was fsynced. One exception, stated in the report: the catch-up data set is loaded into
a server with NATS's default sync, because loading a million messages one fsync at a time takes
minutes and the read path that figure measures is the same either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path

import bench_servers
import nats
from bench_common import (
    CpuMeter,
    Deadline,
    Result,
    Sizes,
    paced_sends,
    progress,
    raw_message,
    record_latency,
    rss_mb,
    settle,
    tag_seq,
    throughput,
)
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, PubAck, StorageType

STREAM = "BENCH"
SUBJECTS = ["bench.>"]
ACK_TIMEOUT_S = 30.0


@contextlib.asynccontextmanager
async def _connect(
    port: int, max_pending: int = 4000
) -> AsyncIterator[tuple[NATS, JetStreamContext]]:
    """One NATS connection and its JetStream context, closed on exit."""
    nc = await nats.connect(
        f"nats://{bench_servers.LOOPBACK}:{port}",
        allow_reconnect=False,
        connect_timeout=5,
        pending_size=64 * 1024 * 1024,
    )
    try:
        yield nc, nc.jetstream(timeout=ACK_TIMEOUT_S, publish_async_max_pending=max_pending)
    finally:
        await nc.close()


async def _make_stream(port: int) -> None:
    async with _connect(port) as (_nc, js):
        await js.add_stream(name=STREAM, subjects=SUBJECTS, storage=StorageType.FILE)


async def appends(workdir: Path, sizes: Sizes) -> Result:
    """16 connections, each publishing one message and awaiting its ack, for N seconds."""
    result = Result()
    with bench_servers.nats(workdir) as server:
        await _make_stream(server.port)
        stop = Deadline(sizes.append_seconds)
        message = raw_message("a:")

        async def one_client() -> int:
            done = 0
            async with _connect(server.port) as (_nc, js):
                while not stop.expired() and done < 10_000_000:
                    await js.publish("bench.appends", message)
                    done += 1
            return done

        cpu = CpuMeter(server.pid)
        start = time.perf_counter()
        counts = await asyncio.gather(*(one_client() for _ in range(sizes.append_clients)))
        throughput(result, "appends", sum(counts), time.perf_counter() - start, cpu)
    return result


async def _publish_batches(
    js: JetStreamContext, subject: str, batch: int, in_flight: int, stop: Deadline, limit: int
) -> int:
    """Async publishes in batches, at most ``in_flight`` batches unacknowledged; returns acks."""
    message = raw_message("b:")
    pending: deque[list[asyncio.Future[PubAck]]] = deque()
    acked = sent = 0
    while sent < limit and not stop.expired():
        count = min(batch, limit - sent)
        pending.append([await js.publish_async(subject, message) for _ in range(count)])
        sent += count
        if len(pending) >= in_flight:
            acked += len(await asyncio.gather(*pending.popleft()))
    while pending:
        acked += len(await asyncio.gather(*pending.popleft()))
    return acked


async def batches(workdir: Path, sizes: Sizes) -> Result:
    """One connection publishing asynchronously, acks gathered per batch, for N seconds."""
    result = Result()
    with bench_servers.nats(workdir) as server:
        await _make_stream(server.port)
        in_flight = sizes.batches_in_flight * sizes.batch_messages
        async with _connect(server.port, max_pending=in_flight) as (_nc, js):
            cpu = CpuMeter(server.pid)
            start = time.perf_counter()
            acked = await _publish_batches(
                js,
                "bench.batches",
                sizes.batch_messages,
                sizes.batches_in_flight,
                Deadline(sizes.batch_seconds),
                1_000_000_000,
            )
            throughput(result, "batches", acked, time.perf_counter() - start, cpu)
    return result


async def catchup(workdir: Path, sizes: Sizes) -> Result:
    """An ordered push consumer reads the whole stream from the start, counting messages."""
    result = Result(notes=["NATS catch-up data was loaded with default sync (read path only)"])
    with bench_servers.nats(workdir, sync_always=False) as server:
        await _make_stream(server.port)
        progress(f"nats: loading {sizes.catchup_messages:,} messages")
        async with _connect(server.port, max_pending=20_000) as (_nc, js):
            loaded = await _publish_batches(
                js, "bench.catchup", 5000, 4, Deadline(sizes.fill_seconds), sizes.catchup_messages
            )
        if loaded < sizes.catchup_messages:
            result.notes.append(f"nats catch-up: only {loaded:,} messages loaded in time")
        progress("nats: reading")
        async with _connect(server.port) as (_nc, js):
            cpu = CpuMeter(server.pid)
            start = time.perf_counter()
            count = await _drain_ordered(js, loaded, Deadline(sizes.fill_seconds))
            throughput(result, "catchup", count, time.perf_counter() - start, cpu)
    return result


async def _drain_ordered(js: JetStreamContext, expected: int, stop: Deadline) -> int:
    """Count messages delivered to an ordered consumer until ``expected`` or the deadline."""
    got = 0
    done = asyncio.Event()

    async def on_msg(_msg: Msg) -> None:
        nonlocal got
        got += 1
        if got >= expected:
            done.set()

    sub = await js.subscribe(
        "bench.catchup", cb=on_msg, ordered_consumer=True, pending_msgs_limit=expected + 1
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=stop.left())
    await sub.unsubscribe()
    return got


async def latency(workdir: Path, sizes: Sizes) -> Result:
    """Publish at a fixed rate awaiting acks; an ordered consumer on another connection
    timestamps delivery with this process's monotonic clock."""
    result = Result()
    with bench_servers.nats(workdir) as server:
        await _make_stream(server.port)
        total = int(sizes.latency_rate * sizes.latency_seconds)
        seen: dict[int, int] = {}
        async with _connect(server.port) as (_wn, writer), _connect(server.port) as (_rn, reader):
            ready = asyncio.Event()

            async def on_msg(msg: Msg) -> None:
                now = time.perf_counter_ns()
                seq = tag_seq(msg.data.decode(), "L")
                if seq is not None:
                    seen[seq] = now
                ready.set()

            sub = await reader.subscribe(
                "bench.live", cb=on_msg, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
            )
            await writer.publish("bench.live", raw_message("warm:"))
            await asyncio.wait_for(ready.wait(), timeout=10)

            async def send(i: int) -> None:
                await writer.publish("bench.live", raw_message(f"L{i}:"))

            sent = await paced_sends(sizes.latency_rate, total, send)
            await settle(seen, total)
            await sub.unsubscribe()
    record_latency(result, sent, seen, "nats")
    return result


async def rss(workdir: Path, sizes: Sizes) -> Result:
    """Server RSS idle, then with N one-message subjects, then plus M idle ordered consumers,
    each on its own connection (a subject per channel: NATS's idiom for many channels)."""
    result = Result(notes=["NATS: channels are subjects of one stream, readers ordered consumers"])
    with bench_servers.nats(workdir) as server:
        await asyncio.sleep(1)
        result.values["rss_idle"] = rss_mb(server.pid)
        await _make_stream(server.port)
        async with _connect(server.port, max_pending=5000) as (_nc, js):
            acks = [
                await js.publish_async(f"bench.ch.{i}", raw_message("r:"))
                for i in range(sizes.rss_channels)
            ]
            await asyncio.gather(*acks)
        result.values["rss_channels"] = rss_mb(server.pid)
        progress(f"nats: opening {sizes.rss_readers} idle consumers")
        async with _idle_consumers(
            server.port, sizes.rss_readers, Deadline(sizes.setup_seconds)
        ) as opened:
            await asyncio.sleep(1)
            result.values["rss_loaded"] = rss_mb(server.pid)
            if opened < sizes.rss_readers:
                result.notes.append(f"nats rss: only {opened} consumers opened in time")
    return result


@contextlib.asynccontextmanager
async def _idle_consumers(port: int, count: int, stop: Deadline) -> AsyncIterator[int]:
    """``count`` connections, each with an ordered consumer waiting for new messages."""
    async with contextlib.AsyncExitStack() as stack:
        opened = 0
        for i in range(count):
            if stop.expired():
                break
            _nc, js = await stack.enter_async_context(_connect(port))
            await js.subscribe(
                f"bench.ch.{i}",
                stream=STREAM,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.NEW,
            )
            opened += 1
        yield opened
