"""The NATS JetStream half: each workload with nats-py against a bench-owned nats-server.

A chanctl channel maps to a subject of a file-backed stream and a message to one 100-byte
publish. ``Run.durable`` picks ``sync_interval: always`` (a publish ack means the message was
fsynced) or NATS's default (fsync every 2 minutes: an OS crash can lose acknowledged messages).
nats-py is asyncio only, so every workload runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator

import bench_servers
import nats
from bench_common import (
    WARM_SEQ,
    CpuMeter,
    Deadline,
    Result,
    Run,
    paced_sends,
    progress,
    raw_message,
    record_fanout,
    record_latency,
    rss_mb,
    settle,
    settle_all,
    tag_seq,
    throughput,
    wait_until,
)
from bench_writer import run_writer
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, PubAck, StorageType

STREAM = "BENCH"
SUBJECTS = ["bench.>"]
ACK_TIMEOUT_S = 30.0
PAYLOAD = raw_message("m:")
MAX_OPS = 10_000_000


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


@contextlib.asynccontextmanager
async def _server(run: Run, sync_always: bool | None = None) -> AsyncIterator[bench_servers.Server]:
    """A nats-server for this run with the bench stream created (creating it again after a
    restart on the same store is a no-op in JetStream)."""
    always = run.durable if sync_always is None else sync_always
    with bench_servers.nats(run.workdir, always) as server:
        await make_stream(server.port)
        yield server


async def make_stream(port: int) -> None:
    """The bench's stream, file-backed (a no-op when it already exists as configured)."""
    async with _connect(port) as (_nc, js):
        await js.add_stream(name=STREAM, subjects=SUBJECTS, storage=StorageType.FILE)


async def stored(port: int) -> int:
    """Messages the bench's stream holds (every workload writes to a fresh server)."""
    async with _connect(port) as (_nc, js):
        return int((await js.stream_info(STREAM)).state.messages)


# -- 1. and 2.: acknowledged appends ------------------------------------------------------------


async def _publish_loop(port: int, subject: str, stop: Deadline) -> int:
    """One connection publishing one message at a time, each ack awaited."""
    done = 0
    async with _connect(port) as (_nc, js):
        while not stop.expired() and done < MAX_OPS:
            await js.publish(subject, PAYLOAD)
            done += 1
    return done


async def serial(run: Run) -> Result:
    """One connection, one publish at a time, each ack awaited."""
    result = Result()
    async with _server(run) as server:
        cpu = CpuMeter(server.pid)
        start = time.perf_counter()
        stop = Deadline(run.sizes.serial_seconds)
        done = await _publish_loop(server.port, "bench.serial", stop)
        throughput(result, "serial", done, time.perf_counter() - start, cpu)
        result.count("acked appends stored", done, await stored(server.port))
    return result


async def concurrent(run: Run) -> Result:
    """N connections, each publishing one message and awaiting its ack, for N seconds."""
    result = Result()
    async with _server(run) as server:
        stop = Deadline(run.sizes.concurrent_seconds)
        cpu = CpuMeter(server.pid)
        start = time.perf_counter()
        loops = [
            _publish_loop(server.port, "bench.concurrent", stop)
            for _ in range(run.sizes.concurrent_clients)
        ]
        counts = await asyncio.gather(*loops)
        throughput(result, "concurrent", sum(counts), time.perf_counter() - start, cpu)
        result.count("acked appends stored", sum(counts), await stored(server.port))
    return result


# -- 3.: async publishes --------------------------------------------------------------------------


async def _publish_window(
    js: JetStreamContext, subject: str, batch: int, in_flight: int, stop: Deadline, limit: int
) -> int:
    """Async publishes in batches, at most ``in_flight`` batches unacknowledged; returns acks."""
    pending: deque[list[asyncio.Future[PubAck]]] = deque()
    acked = sent = 0
    while sent < limit and not stop.expired():
        count = min(batch, limit - sent)
        pending.append([await js.publish_async(subject, PAYLOAD) for _ in range(count)])
        sent += count
        if len(pending) >= in_flight:
            acked += len(await asyncio.gather(*pending.popleft()))
    while pending:
        acked += len(await asyncio.gather(*pending.popleft()))
    return acked


async def _publish_many(port: int, subject: str, total: int, window: int, seconds: float) -> int:
    """One connection publishing ``total`` messages asynchronously, ``4 * window`` unacked."""
    async with _connect(port, max_pending=4 * window) as (_nc, js):
        return await _publish_window(js, subject, window, 4, Deadline(seconds), total)


async def stream(run: Run) -> Result:
    """One connection publishing asynchronously, acks gathered per window of messages."""
    result = Result()
    sizes = run.sizes
    async with _server(run) as server:
        cpu = CpuMeter(server.pid)
        start = time.perf_counter()
        acked = await _publish_many(
            server.port,
            "bench.stream",
            sizes.stream_messages,
            sizes.stream_window,
            sizes.stream_seconds,
        )
        throughput(result, "stream", acked, time.perf_counter() - start, cpu)
        result.count("async publishes stored", acked, await stored(server.port))
        if acked < sizes.stream_messages:
            result.notes.append(
                f"NATS {'always' if run.durable else 'default'} stream: "
                f"{acked:,} messages in {sizes.stream_seconds:g}s"
            )
    return result


# -- 4. and 6.: live readers ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _consumer(port: int, subject: str, seen: dict[int, int]) -> AsyncIterator[None]:
    """An ordered push consumer from the start of ``subject`` on its own connection,
    timestamping numbered payloads as they arrive."""

    async def on_msg(msg: Msg) -> None:
        now = time.perf_counter_ns()
        seq = tag_seq(msg.data.decode(), "L")
        if seq is not None:
            seen[seq] = now

    async with _connect(port) as (_nc, js):
        sub = await js.subscribe(subject, cb=on_msg, ordered_consumer=True)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # the connection may already be closing
                await sub.unsubscribe()


@contextlib.asynccontextmanager
async def _readers(port: int, subject: str, count: int) -> AsyncIterator[list[dict[int, int]]]:
    """``count`` ordered consumers, proven live by a warm-up message each one received."""
    seens: list[dict[int, int]] = [{} for _ in range(count)]
    async with contextlib.AsyncExitStack() as stack:
        for seen in seens:
            await stack.enter_async_context(_consumer(port, subject, seen))
        async with _connect(port) as (_nc, js):
            await js.publish(subject, raw_message(f"L{WARM_SEQ}:"))
        await wait_until(lambda: all(WARM_SEQ in seen for seen in seens), [], 60)
        for seen in seens:
            seen.clear()
        yield seens


async def _paced_publish(
    port: int, subject: str, rate: int, seconds: float
) -> dict[int, tuple[int, int]]:
    async with _connect(port) as (_nc, writer):

        async def send(i: int) -> None:
            await writer.publish(subject, raw_message(f"L{i}:"))

        return await paced_sends(rate, int(rate * seconds), send)


async def latency(run: Run) -> Result:
    """Publish at a fixed rate awaiting acks; an ordered consumer on another connection
    timestamps delivery with this process's monotonic clock."""
    result = Result()
    sizes = run.sizes
    async with _server(run) as server, _readers(server.port, "bench.live", 1) as seens:
        sent = await _paced_publish(
            server.port, "bench.live", sizes.latency_rate, sizes.latency_seconds
        )
        await settle(seens[0], len(sent))
    record_latency(result, sent, seens[0], "nats")
    return result


async def fanout(run: Run) -> Result:
    """Publish at a fixed rate (from a writer process of its own) to a subject that
    ``fanout_readers`` ordered consumers follow, each on its own connection."""
    result = Result()
    sizes = run.sizes
    async with _server(run) as server:
        progress(f"nats: opening {sizes.fanout_readers} live readers")
        async with _readers(server.port, "bench.fan", sizes.fanout_readers) as seens:
            cpu = CpuMeter(server.pid)
            sent = await run_writer(
                "nats", str(server.port), "bench.fan", sizes.fanout_rate, sizes.fanout_seconds
            )
            await settle_all(seens, len(sent))
            result.extras.update(cpu.read())
    record_fanout(result, sent, seens)
    return result


# -- 5.: catch-up read ----------------------------------------------------------------------------


async def catchup(run: Run) -> Result:
    """Load the data set, then read it from the start with an ordered push consumer.

    Loading always runs with NATS's default sync (one fsync per message would take minutes);
    for the ``always`` column the server is then restarted on the same store with
    ``sync_interval: always``, so the read is served by the server as configured.
    """
    result = Result()
    sizes = run.sizes
    progress(f"nats: loading {sizes.catchup_messages:,} messages")
    async with _server(run, sync_always=False) as loader:
        loaded = await _publish_many(
            loader.port, "bench.catchup", sizes.catchup_messages, 5000, sizes.fill_seconds
        )
    result.count("catch-up messages loaded", sizes.catchup_messages, loaded)
    async with _server(run) as server, _connect(server.port) as (_nc, js):
        progress("nats: reading")
        cpu = CpuMeter(server.pid)
        start = time.perf_counter()
        count = await _drain_ordered(js, loaded, Deadline(sizes.fill_seconds))
        throughput(result, "catchup", count, time.perf_counter() - start, cpu)
    result.count("catch-up messages read", loaded, count)
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


# -- 8.: memory -----------------------------------------------------------------------------------


async def rss(run: Run) -> Result:
    """Server RSS idle, then with N one-message subjects, then plus M idle ordered consumers,
    each on its own connection (a subject per channel: NATS's idiom for many channels)."""
    result = Result(notes=["NATS: channels are subjects of one stream, readers ordered consumers"])
    sizes = run.sizes
    with bench_servers.nats(run.workdir, run.durable) as server:
        await asyncio.sleep(1)
        result.values["rss_idle"] = rss_mb(server.pid)
        made = await _fill_subjects(server.port, sizes.rss_channels)
        result.count("channels created", sizes.rss_channels, made)
        result.count("messages stored", made, await stored(server.port))
        result.values["rss_channels"] = rss_mb(server.pid)
        progress(f"nats: opening {sizes.rss_readers:,} idle consumers")
        stop = Deadline(sizes.setup_seconds)
        async with _idle_consumers(server.port, sizes.rss_readers, stop) as opened:
            await asyncio.sleep(1)
            result.values["rss_loaded"] = rss_mb(server.pid)
        result.count("idle live readers", sizes.rss_readers, opened)
    return result


async def _fill_subjects(port: int, count: int) -> int:
    """Create the stream and put one message on each of ``count`` subjects."""
    await make_stream(port)
    async with _connect(port, max_pending=5000) as (_nc, js):
        acks = [await js.publish_async(f"bench.ch.{i}", PAYLOAD) for i in range(count)]
        return len(await asyncio.gather(*acks))


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
