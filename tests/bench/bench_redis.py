"""The Redis 7 Streams half: the same five workloads with redis-py (asyncio, hiredis parser).

A chanctl channel maps to one Redis stream key and a message to one ``XADD key * d <100 B>``.
The server runs with ``appendfsync always``, so an XADD reply means the AOF was fsynced, the
promise chanctl makes by default. Each function starts its own redis-server in ``workdir``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, cast

import bench_servers
import redis.asyncio as aioredis
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

FIELD = b"d"
FILL_PIPELINE = 10_000
# redis-py types replies as wide unions; with RESP2 and bytes replies these are the real shapes.
Entry = tuple[bytes, dict[bytes, bytes]]
XReadReply = list[tuple[bytes, list[Entry]]]


@contextlib.asynccontextmanager
async def _client(port: int) -> AsyncIterator[aioredis.Redis]:
    """One client pinned to one TCP connection, like one HTTP client per connection."""
    client = aioredis.Redis(host=bench_servers.LOOPBACK, port=port, single_connection_client=True)
    try:
        yield client
    finally:
        await client.aclose()


async def appends(workdir: Path, sizes: Sizes) -> Result:
    """16 connections, each XADDing one message and waiting for the reply, for N seconds."""
    result = Result()
    with bench_servers.redis(workdir) as server:
        stop = Deadline(sizes.append_seconds)
        message = raw_message("a:")

        async def one_client() -> int:
            done = 0
            async with _client(server.port) as client:
                while not stop.expired() and done < 10_000_000:
                    await client.xadd("appends", {FIELD: message})
                    done += 1
            return done

        cpu = CpuMeter(server.pid)
        start = time.perf_counter()
        counts = await asyncio.gather(*(one_client() for _ in range(sizes.append_clients)))
        throughput(result, "appends", sum(counts), time.perf_counter() - start, cpu)
    return result


async def batches(workdir: Path, sizes: Sizes) -> Result:
    """Pipelines of ``batch_messages`` XADDs, ``batches_in_flight`` at a time, for N seconds."""
    result = Result()
    with bench_servers.redis(workdir) as server:
        stop = Deadline(sizes.batch_seconds)
        message = raw_message("b:")

        async def pipeliner() -> int:
            done = 0
            async with _client(server.port) as client:
                while not stop.expired() and done < 1_000_000_000:
                    pipe = client.pipeline(transaction=False)
                    for _ in range(sizes.batch_messages):
                        pipe.xadd("batches", {FIELD: message})
                    done += len(await pipe.execute())
            return done

        cpu = CpuMeter(server.pid)
        start = time.perf_counter()
        counts = await asyncio.gather(*(pipeliner() for _ in range(sizes.batches_in_flight)))
        throughput(result, "batches", sum(counts), time.perf_counter() - start, cpu)
    return result


async def _fill(client: aioredis.Redis, key: str, total: int, stop: Deadline) -> int:
    """Load ``total`` messages with large pipelines; returns how many made it in time."""
    message = raw_message("c:")
    done = 0
    while done < total and not stop.expired():
        pipe = client.pipeline(transaction=False)
        for _ in range(min(FILL_PIPELINE, total - done)):
            pipe.xadd(key, {FIELD: message})
        done += len(await pipe.execute())
    return done


async def catchup(workdir: Path, sizes: Sizes) -> Result:
    """Read the whole stream with ``XRANGE key (last + COUNT 1000`` until it returns nothing."""
    result = Result()
    with bench_servers.redis(workdir) as server:
        async with _client(server.port) as client:
            progress(f"redis: loading {sizes.catchup_messages:,} messages")
            loaded = await _fill(
                client, "catchup", sizes.catchup_messages, Deadline(sizes.fill_seconds)
            )
            if loaded < sizes.catchup_messages:
                result.notes.append(f"redis catch-up: only {loaded:,} messages loaded in time")
            progress("redis: reading")
            cpu = CpuMeter(server.pid)
            start = time.perf_counter()
            count = await _xrange_all(client, "catchup", loaded, Deadline(sizes.fill_seconds))
            throughput(result, "catchup", count, time.perf_counter() - start, cpu)
    return result


async def _xrange_all(client: aioredis.Redis, key: str, expected: int, stop: Deadline) -> int:
    count = 0
    low: bytes = b"-"
    while count < expected and not stop.expired():
        entries = cast(list[Entry], await client.xrange(key, min=low, max="+", count=1000))
        if not entries:
            break
        count += len(entries)
        low = b"(" + entries[-1][0]
    return count


async def latency(workdir: Path, sizes: Sizes) -> Result:
    """XADD at a fixed rate; an ``XREAD BLOCK`` reader on another connection timestamps
    delivery. Both clocks are this process's monotonic clock."""
    result = Result()
    with bench_servers.redis(workdir) as server:
        async with _client(server.port) as writer, _client(server.port) as reader:
            await writer.xadd("live", {FIELD: raw_message("warm:")})
            seen: dict[int, int] = {}
            total = int(sizes.latency_rate * sizes.latency_seconds)
            read_task = asyncio.create_task(_xread_loop(reader, total, seen))
            await asyncio.sleep(0.2)  # the reader is blocked in XREAD before the first append

            async def send(i: int) -> None:
                await writer.xadd("live", {FIELD: raw_message(f"L{i}:")})

            sent = await paced_sends(sizes.latency_rate, total, send)
            await settle(seen, total, read_task)
    record_latency(result, sent, seen, "redis")
    return result


async def _xread_loop(reader: aioredis.Redis, total: int, seen: dict[int, int]) -> None:
    last: bytes | str = "$"
    stop = Deadline(120)
    while len(seen) < total and not stop.expired():
        reply = cast(XReadReply, await reader.xread({"live": last}, block=1000, count=1000))
        now = time.perf_counter_ns()
        for _key, entries in reply:
            for entry_id, fields in entries:
                seq = tag_seq(fields[FIELD].decode(), "L")
                if seq is not None:
                    seen[seq] = now
                last = entry_id


async def rss(workdir: Path, sizes: Sizes) -> Result:
    """Server RSS idle, then with N one-message streams, then plus M blocked XREAD readers."""
    result = Result()
    with bench_servers.redis(workdir) as server:
        await asyncio.sleep(1)
        result.values["rss_idle"] = rss_mb(server.pid)
        async with _client(server.port) as client:
            pipe = client.pipeline(transaction=False)
            for i in range(sizes.rss_channels):
                pipe.xadd(f"ch:{i}", {FIELD: raw_message("r:")})
            await pipe.execute()
        result.values["rss_channels"] = rss_mb(server.pid)
        progress(f"redis: opening {sizes.rss_readers} blocked readers")
        async with _blocked_readers(server.port, sizes.rss_readers) as opened:
            await asyncio.sleep(1)
            result.values["rss_loaded"] = rss_mb(server.pid)
            if opened < sizes.rss_readers:
                result.notes.append(f"redis rss: only {opened} readers connected")
    return result


@contextlib.asynccontextmanager
async def _blocked_readers(port: int, count: int) -> AsyncIterator[int]:
    """``count`` connections, each parked in ``XREAD BLOCK 0`` on its own stream."""
    clients = [
        aioredis.Redis(host=bench_servers.LOOPBACK, port=port, single_connection_client=True)
        for _ in range(count)
    ]
    tasks = [
        asyncio.create_task(_block(c.xread({f"ch:{i}": "$"}, block=0)))
        for i, c in enumerate(clients)
    ]
    try:
        yield await _wait_blocked(port, count)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)


async def _block(call: Awaitable[Any]) -> None:
    """Await a blocking command as a task (it only ends when cancelled)."""
    await call


async def _wait_blocked(port: int, want: int) -> int:
    """Poll INFO clients on a fresh connection until ``want`` clients are blocked (bounded):
    RSS is only meaningful once every reader is really parked in the server."""
    async with _client(port) as admin:
        stop = Deadline(60)
        blocked = 0
        while not stop.expired():
            blocked = int((await admin.info("clients")).get("blocked_clients", 0))
            if blocked >= want:
                break
            await asyncio.sleep(0.1)
    return blocked
