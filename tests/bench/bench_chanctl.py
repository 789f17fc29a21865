"""The chanctl half: the five workloads as plain Durable Streams HTTP over the unix socket.

The bench speaks the wire protocol with aiohttp instead of using chanctl's own client, so the
figures are what any HTTP client sees and a slow client library cannot hide a fast daemon (or
the reverse). Channels are ``application/json`` streams; a message is a 100-byte JSON string.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import bench_servers
from bench_common import (
    JSON_TYPE,
    CpuMeter,
    Deadline,
    Result,
    Sizes,
    json_batch,
    json_message,
    paced_sends,
    progress,
    record_latency,
    rss_mb,
    settle,
    tag_seq,
    throughput,
)

from chanctl.protocol import H_NEXT_OFFSET, H_UP_TO_DATE, parse_offset

BASE = "http://localhost/v1/stream/"
HEADERS = {"Content-Type": JSON_TYPE}
# Where py-spy writes the daemon's collapsed stacks, one file per workload; set by --profile.
PROFILE_DIR: Path | None = None


class BenchError(RuntimeError):
    """The daemon answered a benchmark request with an unexpected status."""


def _session(sock: Path, connections: int = 1) -> aiohttp.ClientSession:
    """A client session whose pool holds at most ``connections`` unix-socket connections."""
    connector = aiohttp.UnixConnector(path=str(sock), limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60, sock_connect=10)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


def _daemon(
    workdir: Path, workload: str
) -> contextlib.AbstractContextManager[bench_servers.Server]:
    """The daemon with ``--fsync always``, under py-spy when --profile asked for it."""
    profile = PROFILE_DIR / f"{workload}.txt" if PROFILE_DIR else None
    return bench_servers.chanctl(workdir, fsync="always", profile=profile)


def _socket(server: bench_servers.Server) -> Path:
    if server.socket_path is None:
        raise BenchError("the daemon was started without a unix socket")
    return server.socket_path


async def _expect(resp: aiohttp.ClientResponse, ok: Sequence[int], what: str) -> bytes:
    body = await resp.read()
    if resp.status not in ok:
        raise BenchError(f"{what}: HTTP {resp.status}: {body[:200]!r}")
    return body


async def create(session: aiohttp.ClientSession, name: str) -> None:
    """PUT a JSON channel (201 new, 200 if it already exists with the same config)."""
    async with session.put(BASE + name, headers=HEADERS) as resp:
        await _expect(resp, (200, 201), f"create {name}")


async def append(session: aiohttp.ClientSession, name: str, body: bytes) -> None:
    """POST one message (a JSON value) or many (a JSON array) and wait for the durable ack."""
    async with session.post(BASE + name, data=body, headers=HEADERS) as resp:
        await _expect(resp, (200, 204), f"append to {name}")


async def appends(workdir: Path, sizes: Sizes) -> Result:
    """16 clients, each on its own connection, POSTing one message and awaiting the ack."""
    result = Result()
    with _daemon(workdir, "appends") as server:
        sock = _socket(server)
        async with _session(sock) as admin:
            await create(admin, "appends")
        stop = Deadline(sizes.append_seconds)
        message = json_message("a:")

        async def one_client() -> int:
            done = 0
            async with _session(sock) as session:
                while not stop.expired() and done < 10_000_000:
                    await append(session, "appends", message)
                    done += 1
            return done

        cpu = CpuMeter(server.pid)
        start = time.perf_counter()
        counts = await asyncio.gather(*(one_client() for _ in range(sizes.append_clients)))
        throughput(result, "appends", sum(counts), time.perf_counter() - start, cpu)
    return result


async def _post_batches(
    session: aiohttp.ClientSession, name: str, sizes: Sizes, stop: Deadline, limit: int
) -> int:
    """JSON-array POSTs of ``batch_messages`` each, ``batches_in_flight`` at a time."""
    body = json_batch(sizes.batch_messages)
    sent = 0

    async def worker() -> int:
        nonlocal sent
        done = 0
        while sent < limit and not stop.expired():
            sent += sizes.batch_messages
            await append(session, name, body)
            done += sizes.batch_messages
        return done

    return sum(await asyncio.gather(*(worker() for _ in range(sizes.batches_in_flight))))


async def batches(workdir: Path, sizes: Sizes) -> Result:
    """One client streaming ~1000-message JSON arrays with a few POSTs in flight."""
    result = Result()
    with _daemon(workdir, "batches") as server:
        async with _session(_socket(server), sizes.batches_in_flight) as session:
            await create(session, "batches")
            cpu = CpuMeter(server.pid)
            start = time.perf_counter()
            stop = Deadline(sizes.batch_seconds)
            count = await _post_batches(session, "batches", sizes, stop, 1_000_000_000)
            throughput(result, "batches", count, time.perf_counter() - start, cpu)
    return result


async def catchup(workdir: Path, sizes: Sizes) -> Result:
    """GET ?offset=… from the start, following Stream-Next-Offset until Stream-Up-To-Date,
    counting bytes only; the message count comes from the offsets (they count messages).

    The data is loaded by one daemon and read through a second one started on the same data
    directory: the read then measures the log on disk (a reader catching up on history), not
    whatever the writer kept in memory, and the restart time is worth knowing too.
    """
    result = Result()
    loaded = await _load(workdir, sizes, result)
    start = time.perf_counter()
    with _daemon(workdir, "catchup") as server:
        result.extras["restart_s"] = time.perf_counter() - start
        async with _session(_socket(server)) as session:
            progress("chanctl: reading")
            cpu = CpuMeter(server.pid)
            start = time.perf_counter()
            count, nbytes = await _read_all(session, "catchup", Deadline(sizes.fill_seconds))
            throughput(result, "catchup", count, time.perf_counter() - start, cpu)
            result.extras["catchup_mb"] = nbytes / 1e6
            if count < loaded:
                result.notes.append(f"chanctl catch-up: read {count:,} of {loaded:,} messages")
    return result


async def _load(workdir: Path, sizes: Sizes, result: Result) -> int:
    """Fill channel ``catchup`` with batched appends through a daemon that is then stopped."""
    with bench_servers.chanctl(workdir, fsync="always") as server:
        async with _session(_socket(server), sizes.batches_in_flight) as session:
            await create(session, "catchup")
            progress(f"chanctl: loading {sizes.catchup_messages:,} messages")
            fill = Deadline(sizes.fill_seconds)
            loaded = await _post_batches(session, "catchup", sizes, fill, sizes.catchup_messages)
    if loaded < sizes.catchup_messages:
        result.notes.append(f"chanctl catch-up: only {loaded:,} messages loaded in time")
    return loaded


async def _read_all(session: aiohttp.ClientSession, name: str, stop: Deadline) -> tuple[int, int]:
    """(messages, bytes) read from the start until the daemon says we are up to date."""
    offset, nbytes, requests = "-1", 0, 0
    while not stop.expired() and requests < 10_000_000:
        async with session.get(BASE + name, params={"offset": offset}) as resp:
            if resp.status != 200:
                await _expect(resp, (200,), f"read {name}")
            async for chunk in resp.content.iter_any():
                nbytes += len(chunk)
            offset = resp.headers[H_NEXT_OFFSET]
            requests += 1
            if resp.headers.get(H_UP_TO_DATE, "").lower() == "true":
                break
    return parse_offset(offset) if offset != "-1" else 0, nbytes


class SseReader:
    """A minimal SSE client for one channel: records when each numbered message arrives.

    It parses only what latency needs: ``event:`` and ``data:`` lines, dispatching at the blank
    line that ends an event. Data events carry a JSON array of messages (JSON mode).
    """

    def __init__(self, resp: aiohttp.ClientResponse, seen: dict[int, int]) -> None:
        self.resp = resp
        self.seen = seen
        self.ready = asyncio.Event()  # set at the first control event: the reader is live

    async def run(self) -> None:
        event, data = "", []
        async for raw in self.resp.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            elif not line:
                self._dispatch(event, "\n".join(data))
                event, data = "", []

    def _dispatch(self, event: str, data: str) -> None:
        now = time.perf_counter_ns()
        if event == "control":
            self.ready.set()
        elif event == "data":
            for message in json.loads(data):
                seq = tag_seq(message, "L") if isinstance(message, str) else None
                if seq is not None:
                    self.seen[seq] = now


@contextlib.asynccontextmanager
async def sse(session: aiohttp.ClientSession, name: str, offset: str) -> AsyncIterator[SseReader]:
    """An open ``live=sse`` GET whose reader runs as a task until the block exits."""
    params = {"offset": offset, "live": "sse"}
    async with session.get(BASE + name, params=params) as resp:
        if resp.status != 200:
            await _expect(resp, (200,), f"sse {name}")
        reader = SseReader(resp, {})
        task = asyncio.create_task(reader.run())
        try:
            yield reader
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await task


async def latency(workdir: Path, sizes: Sizes) -> Result:
    """POST one message at a time at a fixed rate; an SSE reader on another connection
    timestamps delivery with this process's monotonic clock."""
    result = Result()
    total = int(sizes.latency_rate * sizes.latency_seconds)
    with _daemon(workdir, "latency") as server:
        sock = _socket(server)
        async with _session(sock) as writer, _session(sock) as rd:
            await create(writer, "live")
            async with sse(rd, "live", "now") as reader:
                await asyncio.wait_for(reader.ready.wait(), timeout=10)

                async def send(i: int) -> None:
                    await append(writer, "live", json_message(f"L{i}:"))

                sent = await paced_sends(sizes.latency_rate, total, send)
                await settle(reader.seen, total)
                seen = dict(reader.seen)
    record_latency(result, sent, seen, "chanctl")
    return result


async def rss(workdir: Path, sizes: Sizes) -> Result:
    """Daemon RSS idle, then with N one-message channels, then plus M idle SSE readers."""
    result = Result()
    with _daemon(workdir, "rss") as server:
        sock = _socket(server)
        await asyncio.sleep(1)
        result.values["rss_idle"] = rss_mb(server.pid)
        progress(f"chanctl: creating {sizes.rss_channels:,} channels")
        stop = Deadline(sizes.setup_seconds)
        start = time.perf_counter()
        made = await _make_channels(sock, sizes.rss_channels, stop)
        result.extras["create_per_s"] = made / (time.perf_counter() - start)
        result.values["rss_channels"] = rss_mb(server.pid)
        progress(f"chanctl: opening {sizes.rss_readers} idle SSE readers")
        async with _idle_readers(sock, min(made, sizes.rss_readers), stop) as n:
            await asyncio.sleep(1)
            result.values["rss_loaded"] = rss_mb(server.pid)
            if n < sizes.rss_readers or made < sizes.rss_channels:
                result.notes.append(f"chanctl rss: {made:,} channels, {n} readers in time")
    return result


async def _make_channels(sock: Path, count: int, stop: Deadline, workers: int = 16) -> int:
    """Create ``count`` channels with one message each, ``workers`` requests at a time."""
    todo = iter(range(count))
    made = 0
    message = json_message("r:")

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal made
        for i in todo:
            if stop.expired():
                return
            await create(session, f"ch-{i}")
            await append(session, f"ch-{i}", message)
            made += 1

    async with _session(sock, workers) as session:
        await asyncio.gather(*(worker(session) for _ in range(workers)))
    return made


@contextlib.asynccontextmanager
async def _idle_readers(sock: Path, count: int, stop: Deadline) -> AsyncIterator[int]:
    """``count`` SSE readers at the tail of channels ch-0…, each its own connection."""
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(_session(sock, count + 1))
        opened = 0
        for i in range(count):
            if stop.expired():
                break
            reader = await stack.enter_async_context(sse(session, f"ch-{i}", "now"))
            await asyncio.wait_for(reader.ready.wait(), timeout=max(stop.left(), 1))
            opened += 1
        yield opened
