"""The Redis 7 Streams half: each workload with redis-py and its hiredis parser.

A chanctl channel maps to one Redis stream key and a message to one ``XADD key * d <100 B>``.
``Run.durable`` picks ``appendfsync always`` (an XADD reply means the AOF was fsynced, the
promise chanctl makes by default) or ``everysec`` (Redis's default: up to a second of
acknowledged writes can be lost). Single-connection workloads use the synchronous client in a
thread (no event loop per command: the fastest redis-py gets); those with many connections use
``redis.asyncio``. Each function starts its own redis-server in the run's temp dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, cast

import bench_servers
import redis
import redis.asyncio as aioredis
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
    stop_tasks,
    tag_seq,
    throughput,
    wait_until,
)

FIELD = b"d"
PAYLOAD = raw_message("m:")
FILL_PIPELINE = 10_000
MAX_OPS = 10_000_000
# redis-py types replies as wide unions; with RESP2 and bytes replies these are the real shapes.
Entry = tuple[bytes, dict[bytes, bytes]]
XReadReply = list[tuple[bytes, list[Entry]]]


def _sync(port: int) -> redis.Redis:
    return redis.Redis(host=bench_servers.LOOPBACK, port=port, single_connection_client=True)


@contextlib.asynccontextmanager
async def _client(port: int) -> AsyncIterator[aioredis.Redis]:
    """One asyncio client pinned to one TCP connection, like one HTTP client per connection."""
    client = aioredis.Redis(host=bench_servers.LOOPBACK, port=port, single_connection_client=True)
    try:
        yield client
    finally:
        await client.aclose()


def _stored(port: int, key: str) -> int:
    with _sync(port) as client:
        return int(cast(int, client.xlen(key)))


def _note_config(result: Result, port: int) -> None:
    """Record the fsync policy the server reports, so the JSON proves which column is which."""
    with _sync(port) as client:
        conf = cast(dict[bytes | str, bytes | str], client.config_get("appendfsync"))
    value = next(iter(conf.values()), b"?")
    text = value.decode() if isinstance(value, bytes) else value
    result.notes.append(f"Redis appendfsync {text} (as the server reports it)")


# -- 1. and 2.: acknowledged appends ------------------------------------------------------------


def _serial_loop(port: int, seconds: float) -> int:
    done = 0
    stop = Deadline(seconds)
    with _sync(port) as client:
        while not stop.expired() and done < MAX_OPS:
            client.xadd("serial", {FIELD: PAYLOAD})
            done += 1
    return done


async def serial(run: Run) -> Result:
    """One connection, one XADD at a time, each reply awaited."""
    result = Result()
    with bench_servers.redis(run.workdir, run.durable) as server:
        _note_config(result, server.port)
        cpu = CpuMeter(server.pid)
        start = time.perf_counter()
        done = await asyncio.to_thread(_serial_loop, server.port, run.sizes.serial_seconds)
        throughput(result, "serial", done, time.perf_counter() - start, cpu)
        result.count("acked appends stored", done, _stored(server.port, "serial"))
    return result


async def concurrent(run: Run) -> Result:
    """N connections, each XADDing one message and awaiting the reply, for N seconds."""
    result = Result()
    with bench_servers.redis(run.workdir, run.durable) as server:
        stop = Deadline(run.sizes.concurrent_seconds)

        async def one_client() -> int:
            done = 0
            async with _client(server.port) as client:
                while not stop.expired() and done < MAX_OPS:
                    await client.xadd("concurrent", {FIELD: PAYLOAD})
                    done += 1
            return done

        cpu = CpuMeter(server.pid)
        start = time.perf_counter()
        clients = run.sizes.concurrent_clients
        counts = await asyncio.gather(*(one_client() for _ in range(clients)))
        throughput(result, "concurrent", sum(counts), time.perf_counter() - start, cpu)
        result.count("acked appends stored", sum(counts), _stored(server.port, "concurrent"))
    return result


# -- 3.: pipelined appends ------------------------------------------------------------------------


def _pipeline_all(port: int, key: str, total: int, window: int, seconds: float) -> int:
    """XADD ``total`` messages in pipelines of ``window`` on one connection; returns replies."""
    done = 0
    stop = Deadline(seconds)
    with _sync(port) as client:
        while done < total and not stop.expired():
            pipe = client.pipeline(transaction=False)
            for _ in range(min(window, total - done)):
                pipe.xadd(key, {FIELD: PAYLOAD})
            done += len(pipe.execute())
    return done


async def stream(run: Run) -> Result:
    """One connection, pipelines of ``stream_window`` XADDs, until ``stream_messages``."""
    result = Result()
    sizes = run.sizes
    with bench_servers.redis(run.workdir, run.durable) as server:
        cpu = CpuMeter(server.pid)
        start = time.perf_counter()
        done = await asyncio.to_thread(
            _pipeline_all,
            server.port,
            "stream",
            sizes.stream_messages,
            sizes.stream_window,
            sizes.stream_seconds,
        )
        throughput(result, "stream", done, time.perf_counter() - start, cpu)
        result.count("pipelined messages stored", done, _stored(server.port, "stream"))
        if done < sizes.stream_messages:
            result.notes.append(f"redis stream: {done:,} messages in {sizes.stream_seconds:g}s")
    return result


# -- 4. and 6.: live readers ----------------------------------------------------------------------


async def _xread_loop(port: int, key: str, seen: dict[int, int]) -> None:
    """``XREAD BLOCK`` from the start of ``key``, timestamping numbered payloads; runs until
    cancelled (bounded by MAX_OPS replies)."""
    async with _client(port) as reader:
        last: bytes | str = "0-0"
        for _ in range(MAX_OPS):
            reply = cast(XReadReply, await reader.xread({key: last}, block=1000, count=1000))
            now = time.perf_counter_ns()
            for _key, entries in reply:
                for entry_id, fields in entries:
                    seq = tag_seq(fields[FIELD].decode(), "L")
                    if seq is not None:
                        seen[seq] = now
                    last = entry_id


@contextlib.asynccontextmanager
async def _readers(port: int, key: str, count: int) -> AsyncIterator[list[dict[int, int]]]:
    """``count`` blocked readers, each its own connection, proven live by a warm-up entry."""
    seens: list[dict[int, int]] = [{} for _ in range(count)]
    tasks = [asyncio.create_task(_xread_loop(port, key, seen)) for seen in seens]
    try:
        async with _client(port) as writer:
            await writer.xadd(key, {FIELD: raw_message(f"L{WARM_SEQ}:")})
        await wait_until(lambda: all(WARM_SEQ in seen for seen in seens), tasks, 60)
        for seen in seens:
            seen.clear()
        yield seens
    finally:
        await stop_tasks(tasks)


async def _paced_xadd(port: int, key: str, rate: int, seconds: float) -> dict[int, tuple[int, int]]:
    async with _client(port) as writer:

        async def send(i: int) -> None:
            await writer.xadd(key, {FIELD: raw_message(f"L{i}:")})

        return await paced_sends(rate, int(rate * seconds), send)


async def latency(run: Run) -> Result:
    """XADD at a fixed rate; an ``XREAD BLOCK`` reader on another connection timestamps
    delivery. Both clocks are this process's monotonic clock."""
    result = Result()
    sizes = run.sizes
    with bench_servers.redis(run.workdir, run.durable) as server:
        async with _readers(server.port, "live", 1) as seens:
            sent = await _paced_xadd(server.port, "live", sizes.latency_rate, sizes.latency_seconds)
            await settle(seens[0], len(sent))
    record_latency(result, sent, seens[0], "redis")
    return result


async def fanout(run: Run) -> Result:
    """XADD at a fixed rate to one stream that ``fanout_readers`` XREAD loops follow."""
    result = Result()
    sizes = run.sizes
    with bench_servers.redis(run.workdir, run.durable) as server:
        async with _readers(server.port, "fan", sizes.fanout_readers) as seens:
            cpu = CpuMeter(server.pid)
            sent = await _paced_xadd(server.port, "fan", sizes.fanout_rate, sizes.fanout_seconds)
            await settle_all(seens, len(sent))
            result.extras.update(cpu.read())
    record_fanout(result, sent, seens)
    return result


# -- 5.: catch-up read ----------------------------------------------------------------------------


def _xrange_all(port: int, key: str, expected: int, seconds: float) -> int:
    """Read ``key`` with ``XRANGE key (last + COUNT 1000`` until it returns nothing."""
    count = 0
    low: bytes = b"-"
    stop = Deadline(seconds)
    with _sync(port) as client:
        while count <= expected and not stop.expired():
            entries = cast(list[Entry], client.xrange(key, min=low, max="+", count=1000))
            if not entries:
                break
            count += len(entries)
            low = b"(" + entries[-1][0]
    return count


async def catchup(run: Run) -> Result:
    """Load with large pipelines, then read the whole stream back with XRANGE pages."""
    result = Result()
    sizes = run.sizes
    with bench_servers.redis(run.workdir, run.durable) as server:
        progress(f"redis: loading {sizes.catchup_messages:,} messages")
        loaded = await asyncio.to_thread(
            _pipeline_all,
            server.port,
            "catchup",
            sizes.catchup_messages,
            FILL_PIPELINE,
            sizes.fill_seconds,
        )
        result.count("catch-up messages loaded", sizes.catchup_messages, loaded)
        progress("redis: reading")
        cpu = CpuMeter(server.pid)
        start = time.perf_counter()
        count = await asyncio.to_thread(
            _xrange_all, server.port, "catchup", loaded, sizes.fill_seconds
        )
        throughput(result, "catchup", count, time.perf_counter() - start, cpu)
        result.count("catch-up messages read", loaded, count)
    return result


# -- 8.: memory -----------------------------------------------------------------------------------


async def rss(run: Run) -> Result:
    """Server RSS idle, then with N one-message streams, then plus M blocked XREAD readers."""
    result = Result()
    sizes = run.sizes
    with bench_servers.redis(run.workdir, run.durable) as server:
        await asyncio.sleep(1)
        result.values["rss_idle"] = rss_mb(server.pid)
        async with _client(server.port) as client:
            pipe = client.pipeline(transaction=False)
            for i in range(sizes.rss_channels):
                pipe.xadd(f"ch:{i}", {FIELD: PAYLOAD})
            made = len(await pipe.execute())
            result.count("channels created", sizes.rss_channels, made)
            result.count("streams stored", made, int(await client.dbsize()))
        result.values["rss_channels"] = rss_mb(server.pid)
        progress(f"redis: opening {sizes.rss_readers:,} blocked readers")
        async with _blocked_readers(server.port, sizes.rss_readers) as opened:
            await asyncio.sleep(1)
            result.values["rss_loaded"] = rss_mb(server.pid)
        result.count("idle live readers", sizes.rss_readers, opened)
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
        await stop_tasks(tasks)
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
