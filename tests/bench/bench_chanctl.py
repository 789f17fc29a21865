"""The chanctl half: each workload through chanctl's own client library.

A user of chanctl writes with ``chanctl.Client`` / ``chanctl.AsyncClient`` and reads with their
``tail`` and ``replay``, so that is what is measured: the figures include the library's JSON
envelope (``{"type", "time", "data"}`` around the 100-byte payload), its idempotent-producer
headers and its batching, exactly what a program built on chanctl pays. The daemon runs with
``--fsync always`` (its default), on a unix socket in the run's temp dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import bench_chanctl_sse
import bench_servers
from bench_common import (
    WARM_SEQ,
    CpuMeter,
    Deadline,
    Result,
    Run,
    filler,
    paced_sends,
    progress,
    record_fanout,
    record_latency,
    rss_mb,
    settle,
    settle_all,
    stop_tasks,
    tag_seq,
    throughput,
    wait_until,
)

import chanctl

PAYLOAD = filler("m:", 100)
# Where py-spy writes the daemon's collapsed stacks, one file per workload; set by --profile.
PROFILE_DIR: Path | None = None
MAX_OPS = 10_000_000  # a count bound next to every deadline


class BenchError(RuntimeError):
    """The daemon's state disagrees with what the bench did."""


def _daemon(run: Run, workload: str) -> contextlib.AbstractContextManager[bench_servers.Server]:
    """The daemon with ``--fsync always``, under py-spy when --profile asked for it."""
    profile = PROFILE_DIR / f"{workload}.txt" if PROFILE_DIR else None
    return bench_servers.chanctl(run.workdir, fsync="always", profile=profile)


def _socket(server: bench_servers.Server) -> Path:
    if server.socket_path is None:
        raise BenchError("the daemon was started without a unix socket")
    return server.socket_path


def _url(server: bench_servers.Server) -> str:
    return f"unix://{_socket(server)}"


def _sync_client(url: str) -> chanctl.Client:
    """A client that never starts a daemon of its own: the bench owns the only one."""
    return chanctl.Client(url, autostart=False)


def _async_client(url: str) -> chanctl.AsyncClient:
    return chanctl.AsyncClient(url, autostart=False)


def _stored(url: str, channel: str) -> int:
    """How many messages the daemon says ``channel`` holds (to check against the acks)."""
    with _sync_client(url) as client:
        return client.info(channel).messages or 0


# -- 1. and 2.: acknowledged appends ------------------------------------------------------------


def _serial_loop(url: str, seconds: float) -> int:
    """``Client.publish`` one message at a time until the deadline; returns the acks."""
    done = 0
    stop = Deadline(seconds)
    with _sync_client(url) as client:
        client.create("serial")
        while not stop.expired() and done < MAX_OPS:
            client.publish("serial", PAYLOAD)
            done += 1
    return done


async def serial(run: Run) -> Result:
    """One ``chanctl.Client`` (stdlib HTTP, no event loop), one awaited append at a time."""
    result = Result()
    with _daemon(run, "serial") as server:
        url = _url(server)
        cpu = CpuMeter(server.pid)
        start = time.perf_counter()
        done = await asyncio.to_thread(_serial_loop, url, run.sizes.serial_seconds)
        throughput(result, "serial", done, time.perf_counter() - start, cpu)
        result.count("acked appends stored", done, _stored(url, "serial"))
    return result


async def concurrent(run: Run) -> Result:
    """N ``chanctl.AsyncClient``s (one connection each) appending one message at a time to
    one channel, so the daemon's group commit can share fsyncs between them."""
    result = Result()
    with _daemon(run, "concurrent") as server:
        url = _url(server)
        async with _async_client(url) as admin:
            await admin.create("concurrent")
        stop = Deadline(run.sizes.concurrent_seconds)

        async def one_client() -> int:
            done = 0
            async with _async_client(url) as client:
                while not stop.expired() and done < MAX_OPS:
                    await client.publish("concurrent", PAYLOAD)
                    done += 1
            return done

        cpu = CpuMeter(server.pid)
        start = time.perf_counter()
        clients = run.sizes.concurrent_clients
        counts = await asyncio.gather(*(one_client() for _ in range(clients)))
        throughput(result, "concurrent", sum(counts), time.perf_counter() - start, cpu)
        result.count("acked appends stored", sum(counts), _stored(url, "concurrent"))
    return result


# -- 3.: streamed appends -----------------------------------------------------------------------


def _payloads(total: int, stop: Deadline, made: list[int]) -> Iterator[str]:
    """``total`` payloads, or fewer if the deadline passes (checked every 1,000); ``made[0]``
    counts what was handed to the library."""
    while made[0] < total:
        if made[0] % 1000 == 0 and stop.expired():
            return
        made[0] += 1
        yield PAYLOAD


def _stream_all(url: str, channel: str, total: int, seconds: float) -> tuple[int, int]:
    """``Client.publish_many`` over a generator: ~1 MiB JSON-array batches, the next one
    encoded while the previous one is in flight. Returns (generated, acknowledged)."""
    made = [0]
    with _sync_client(url) as client:
        client.create(channel)
        published = client.publish_many(channel, _payloads(total, Deadline(seconds), made))
    return made[0], published.count


async def stream(run: Run) -> Result:
    """One client streaming ``stream_messages`` messages with ``publish_many``."""
    result = Result()
    sizes = run.sizes
    with _daemon(run, "stream") as server:
        url = _url(server)
        cpu = CpuMeter(server.pid)
        start = time.perf_counter()
        made, acked = await asyncio.to_thread(
            _stream_all, url, "stream", sizes.stream_messages, sizes.stream_seconds
        )
        throughput(result, "stream", acked, time.perf_counter() - start, cpu)
        result.count("streamed messages acknowledged", made, acked)
        result.count("streamed messages stored", acked, _stored(url, "stream"))
        if made < sizes.stream_messages:
            result.notes.append(f"chanctl stream: {made:,} messages in {sizes.stream_seconds:g}s")
    return result


# -- 4. and 6.: live readers ----------------------------------------------------------------------


async def _follow(url: str, channel: str, seen: dict[int, int]) -> None:
    """``AsyncClient.tail`` from the channel's first message, timestamping each numbered
    payload (``L<n>:``) when its answer arrives; runs until cancelled."""
    async with _async_client(url) as client:
        answers = 0
        async for batch in client.tail(channel, start=0).batches():
            now = time.perf_counter_ns()
            for value in batch.values:
                data = value.get("data") if isinstance(value, dict) else None
                seq = tag_seq(data, "L") if isinstance(data, str) else None
                if seq is not None:
                    seen[seq] = now
            answers += 1
            if answers >= MAX_OPS:
                return


@contextlib.asynccontextmanager
async def _readers(url: str, channel: str, count: int) -> AsyncIterator[list[dict[int, int]]]:
    """``count`` live readers, each its own client and connection, proven live by a warm-up
    message every one of them has received before the block body runs."""
    seens: list[dict[int, int]] = [{} for _ in range(count)]
    tasks = [asyncio.create_task(_follow(url, channel, seen)) for seen in seens]
    try:
        async with _async_client(url) as client:
            await client.publish(channel, filler(f"L{WARM_SEQ}:", 100))
        await wait_until(lambda: all(WARM_SEQ in seen for seen in seens), tasks, 60)
        for seen in seens:
            seen.clear()
        yield seens
    finally:
        await stop_tasks(tasks)


async def _paced_publish(
    url: str, channel: str, rate: int, seconds: float
) -> dict[int, tuple[int, int]]:
    """``AsyncClient.publish`` at ``rate`` a second, each awaited (see ``paced_sends``)."""
    async with _async_client(url) as writer:

        async def send(i: int) -> None:
            await writer.publish(channel, filler(f"L{i}:", 100))

        return await paced_sends(rate, int(rate * seconds), send)


async def latency(run: Run) -> Result:
    """Append at a fixed rate; one reader on another connection timestamps delivery with this
    process's monotonic clock: first the library's ``tail`` (long-poll), then, on a second
    channel of the same daemon, a raw SSE reader (rows ``lat_sse_*``)."""
    result = Result()
    sizes = run.sizes
    with _daemon(run, "latency") as server:
        url = _url(server)
        async with _async_client(url) as admin:
            await admin.create("live")
            await admin.create("live-sse")
        async with _readers(url, "live", 1) as seens:
            sent = await _paced_publish(url, "live", sizes.latency_rate, sizes.latency_seconds)
            await settle(seens[0], len(sent))
        record_latency(result, sent, seens[0], "chanctl")
        async with bench_chanctl_sse.readers(_socket(server), "live-sse", 1) as seens:
            sent = await _paced_publish(url, "live-sse", sizes.latency_rate, sizes.latency_seconds)
            await settle(seens[0], len(sent))
        record_latency(result, sent, seens[0], "chanctl SSE", prefix="lat_sse")
    return result


async def fanout(run: Run) -> Result:
    """Append at a fixed rate to one channel that ``fanout_readers`` tails follow, then the
    same to a second channel with raw SSE readers (rows ``fan_sse_*``)."""
    result = Result()
    sizes = run.sizes
    with _daemon(run, "fanout") as server:
        url = _url(server)
        async with _async_client(url) as admin:
            await admin.create("fan")
            await admin.create("fan-sse")
        progress(f"chanctl: opening {sizes.fanout_readers} live readers")
        async with _readers(url, "fan", sizes.fanout_readers) as seens:
            cpu = CpuMeter(server.pid)
            sent = await _paced_publish(url, "fan", sizes.fanout_rate, sizes.fanout_seconds)
            await settle_all(seens, len(sent))
            result.extras.update(cpu.read())
        record_fanout(result, sent, seens)
        progress(f"chanctl: opening {sizes.fanout_readers} SSE readers")
        async with bench_chanctl_sse.readers(
            _socket(server), "fan-sse", sizes.fanout_readers
        ) as seens:
            sent = await _paced_publish(url, "fan-sse", sizes.fanout_rate, sizes.fanout_seconds)
            await settle_all(seens, len(sent))
        record_fanout(result, sent, seens, prefix="fan_sse")
    return result


# -- 5.: catch-up read ----------------------------------------------------------------------------


def _replay_count(url: str, channel: str, seconds: float) -> int:
    """Messages ``Client.replay`` returns from the start, counted per answer (each answer is
    decoded into its JSON values, as every reader of the library gets them)."""
    count = 0
    stop = Deadline(seconds)
    with _sync_client(url) as client:
        for batch in client.replay(channel).batches():
            count += len(batch)
            if stop.expired():
                break
    return count


async def catchup(run: Run) -> Result:
    """Load the channel through one daemon, then read it from the start through a second
    daemon started on the same data: the read measures the log on disk (a reader catching up
    on history), not whatever the writer kept in memory; the restart time is noted too."""
    result = Result()
    sizes = run.sizes
    with bench_servers.chanctl(run.workdir, fsync="always") as loader:
        progress(f"chanctl: loading {sizes.catchup_messages:,} messages")
        made, loaded = await asyncio.to_thread(
            _stream_all, _url(loader), "catchup", sizes.catchup_messages, sizes.fill_seconds
        )
    result.count("catch-up messages loaded", sizes.catchup_messages, loaded)
    start = time.perf_counter()
    with _daemon(run, "catchup") as server:
        result.extras["restart_s"] = time.perf_counter() - start
        progress("chanctl: reading")
        cpu = CpuMeter(server.pid)
        start = time.perf_counter()
        count = await asyncio.to_thread(_replay_count, _url(server), "catchup", sizes.fill_seconds)
        throughput(result, "catchup", count, time.perf_counter() - start, cpu)
    result.count("catch-up messages read", loaded, count)
    return result


# -- 8.: memory -----------------------------------------------------------------------------------


async def _make_channels(url: str, count: int, stop: Deadline, workers: int = 16) -> int:
    """Create ``count`` channels with one message each, ``workers`` clients at a time."""
    todo = iter(range(count))
    made = 0

    async def worker() -> None:
        nonlocal made
        async with _async_client(url) as client:
            for i in todo:
                if stop.expired():
                    return
                await client.create(f"ch-{i}")
                await client.publish(f"ch-{i}", PAYLOAD)
                made += 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    return made


async def _idle_tail(url: str, channel: str) -> None:
    """A ``tail`` that waits at the end of ``channel`` for messages that never come."""
    async with _async_client(url) as client:
        answers = 0
        async for _batch in client.tail(channel, start="now").batches():
            answers += 1  # long-poll timeouts answer empty batches now and then
            if answers >= MAX_OPS:
                return


async def _live_readers(url: str) -> int:
    """Live readers the daemon is serving right now, from its channel listing."""
    async with _async_client(url) as client:
        return sum(info.readers or 0 for info in await client.list())


@contextlib.asynccontextmanager
async def _idle_readers(url: str, count: int, stop: Deadline) -> AsyncIterator[int]:
    """``count`` idle tails on channels ch-0..., each its own connection; yields how many
    the daemon reports as live once they are all parked (bounded by ``stop``)."""
    tasks = [asyncio.create_task(_idle_tail(url, f"ch-{i}")) for i in range(count)]
    try:
        live = 0
        while not stop.expired():
            live = await _live_readers(url)
            if live >= count:
                break
            await asyncio.sleep(0.5)  # a listing of 10,000 channels is not free
        yield live
    finally:
        await stop_tasks(tasks)


async def rss(run: Run) -> Result:
    """Daemon RSS idle, then with N one-message channels, then plus M idle ``tail``s."""
    result = Result()
    sizes = run.sizes
    with _daemon(run, "rss") as server:
        url = _url(server)
        await asyncio.sleep(1)
        result.values["rss_idle"] = rss_mb(server.pid)
        progress(f"chanctl: creating {sizes.rss_channels:,} channels")
        stop = Deadline(sizes.setup_seconds)
        start = time.perf_counter()
        made = await _make_channels(url, sizes.rss_channels, stop)
        result.extras["create_per_s"] = made / (time.perf_counter() - start)
        result.count("channels created", sizes.rss_channels, made)
        result.values["rss_channels"] = rss_mb(server.pid)
        progress(f"chanctl: opening {sizes.rss_readers:,} idle readers")
        async with _idle_readers(url, min(made, sizes.rss_readers), stop) as live:
            await asyncio.sleep(1)
            result.values["rss_loaded"] = rss_mb(server.pid)
        result.count("idle live readers", sizes.rss_readers, live)
    return result
