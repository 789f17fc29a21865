"""R2 and R6 of reliability.md: slow and numerous live readers against the real daemon.

R2 guards against a daemon that buffers without bound for a reader that does not keep up (or
keeps a stalled connection, and its last response, forever after its write deadline), and
against a slow reader slowing everybody else down. R6 guards against lost wake-ups when many
long-pollers wait on one channel, and against a herd that costs the daemon more than a core.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from daemonkit import StartDaemon, TestEnv

from .loadkit import (
    JSON,
    MiB,
    Sampler,
    SseParser,
    create_json,
    local_daemon,
    percentile,
    read_all,
    shm_dir,
    summary,
)
from .tiers import scale, seconds

PACER = Path(__file__).with_name("pace_appends.py")
PAD = "x" * 900  # ~1 KiB per message on the wire


@dataclass
class Seen:
    """What one reader received: message ids in order, delivery latencies, resumptions."""

    ids: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    offset: str = "-1"  # Stream-Next-Offset of the last complete control event
    connections: int = 0
    cut: bool = False  # the daemon ended a connection before the channel closed
    closed: bool = False

    def take(self, event: str, data: bytes) -> None:
        if event == "data":
            now = time.time()
            for msg in json.loads(data):
                self.ids.append(msg["id"])
                self.latencies.append(now - msg["t"])
        elif event == "control":
            ctrl = json.loads(data)
            self.offset = ctrl["streamNextOffset"]
            self.closed = bool(ctrl.get("streamClosed"))


def _session(sock: str, bufsize: int = 2**16) -> aiohttp.ClientSession:
    conn = aiohttp.UnixConnector(path=sock, limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    return aiohttp.ClientSession(connector=conn, timeout=timeout, read_bufsize=bufsize)


async def _follow_sse(
    s: aiohttp.ClientSession, name: str, seen: Seen, slow: Callable[[], bool] = lambda: False
) -> None:
    """Read SSE from ``seen.offset`` until the channel is closed, reconnecting whenever the
    daemon ends the stream. While ``slow()``, read 1 KiB every 50 ms (20 KiB/s)."""
    while not seen.closed:
        seen.connections += 1
        url = f"http://d/v1/stream/{name}?offset={seen.offset}&live=sse"
        parser = SseParser()
        try:
            async with s.get(url) as r:
                assert r.status == 200, await r.text()
                while data := await r.content.read(1024 if slow() else 65536):
                    for event, payload in parser.feed(data):
                        seen.take(event, payload)
                    if slow():
                        await asyncio.sleep(0.05)
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
            pass
        if not seen.closed:
            seen.cut = True


async def _publish(
    s: aiohttp.ClientSession, name: str, producer: int, batches: int, per_batch: int
) -> None:
    for b in range(batches):
        now = time.time()
        msgs = [
            {"id": f"p{producer}:{b * per_batch + i}", "t": now, "pad": PAD}
            for i in range(per_batch)
        ]
        async with s.post(f"http://d/v1/stream/{name}", data=json.dumps(msgs), headers=JSON) as r:
            assert r.status == 204, await r.text()


def _assert_complete(seen: Seen, expected: list[str], who: str) -> None:
    assert len(seen.ids) == len(expected), (
        f"{who}: got {len(seen.ids)} messages, expected {len(expected)}"
        f" ({len(set(seen.ids))} distinct)"
    )
    assert seen.ids == expected, f"{who}: order or content differs from the channel"


def test_r2_slow_consumer_bounded_memory_and_no_loss(
    tenv: TestEnv, start_daemon: StartDaemon
) -> None:
    total = scale(64, 1024) * MiB
    per_batch, producers, normal = 64, 4, scale(4, 20)
    batches = total // (per_batch * 1024 * producers)
    deadline = seconds(2, 10)
    d = local_daemon(start_daemon, f"write_deadline_s={deadline}")
    create_json(tenv.socket, "r2")
    sampler = Sampler(d.pid)
    slow, fast = Seen(), [Seen() for _ in range(normal)]
    slow_on = True

    async def scenario() -> float:
        nonlocal slow_on
        async with _session(str(tenv.socket)) as s, _session(str(tenv.socket), 4096) as slow_s:
            readers = [asyncio.create_task(_follow_sse(s, "r2", seen)) for seen in fast]
            # 20 KiB/s, far slower than the publishers, until they are done; then it catches
            # up at full speed from wherever the daemon left it.
            slow_task = asyncio.create_task(_follow_sse(slow_s, "r2", slow, lambda: slow_on))
            await asyncio.sleep(0.2)
            sampler.start()
            t0 = time.monotonic()
            await asyncio.gather(
                *(_publish(s, "r2", p, batches, per_batch) for p in range(producers))
            )
            elapsed = time.monotonic() - t0
            # Stay slow for longer than the write deadline, however fast publishing went.
            await asyncio.sleep(max(0.0, t0 + 2 * deadline + 1 - time.monotonic()))
            slow_on = False
            async with s.post("http://d/v1/stream/r2", headers={"Stream-Closed": "true"}) as r:
                assert r.status == 204
            await asyncio.wait_for(asyncio.gather(*readers, slow_task), 120)
            return elapsed

    elapsed = asyncio.run(scenario())
    usage = sampler.stop()
    expected = [m["id"] for m in read_all(tenv.socket, "r2")]
    count = batches * per_batch * producers
    lat = [x for seen in fast for x in seen.latencies]
    print(
        f"\nR2: {count} messages ({count * 1024 / MiB:.0f} MiB) by {producers} publishers in "
        f"{elapsed:.1f}s; {normal} normal readers: delivery {summary(lat)}; slow reader: "
        f"{slow.connections} connection(s), cut by the daemon: {slow.cut}; daemon {usage.line()}"
    )
    assert len(expected) == count
    for i, seen in enumerate(fast):
        _assert_complete(seen, expected, f"normal reader {i}")
    _assert_complete(slow, expected, "slow reader")
    # Served from disk at its own pace, or cut at the write deadline and resumed: both are
    # fine, but a cut reader must have resumed (more than one connection).
    assert slow.connections == 1 or slow.cut
    assert usage.rss_max < usage.rss_start + 32 * MiB, usage.line()
    # Loose: latency is taken when the test's own readers parse the event, on a shared CPU.
    assert percentile(lat, 0.99) < seconds(3.0, 1.0), summary(lat)


async def _poll(
    s: aiohttp.ClientSession, name: str, until: int, got: list[tuple[int, float]], wakes: list[int]
) -> None:
    """Long-poll from the start until ``until`` messages arrived."""
    offset = "-1"
    while len(got) < until:
        url = f"http://d/v1/stream/{name}?offset={offset}&live=long-poll"
        async with s.get(url) as r:
            body = await r.read()
            assert r.status in (200, 204), body
            offset = r.headers["Stream-Next-Offset"]
        if r.status == 200:
            wakes[0] += 1
            now = time.time()
            got += [(m["n"], now - m["t"]) for m in json.loads(body)]


def test_r6_long_poll_herd_no_lost_wakeup(tenv: TestEnv, start_daemon: StartDaemon) -> None:
    pollers, appends = scale(100, 1000), scale(500, 10_000)
    with shm_dir() as data:  # the fan-out is measured, not the fsync latency of a CI disk
        d = local_daemon(start_daemon, args=("--data-dir", str(data)))
        _herd(tenv, d.pid, pollers, appends)
        d.stop()


def _herd(tenv: TestEnv, pid: int, pollers: int, appends: int) -> None:
    create_json(tenv.socket, "r6")
    sampler = Sampler(pid)
    got: list[list[tuple[int, float]]] = [[] for _ in range(pollers)]
    wakes = [0]
    pacer = [sys.executable, str(PACER), str(tenv.socket), "r6", str(appends), "0.005"]

    async def scenario() -> float:
        async with _session(str(tenv.socket)) as s:
            tasks = [asyncio.create_task(_poll(s, "r6", appends, g, wakes)) for g in got]
            await asyncio.sleep(0.5)  # let every poller park
            sampler.start()
            proc = await asyncio.create_subprocess_exec(*pacer, stdout=asyncio.subprocess.PIPE)
            out, _ = await proc.communicate()
            assert proc.returncode == 0, out
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
            return float(out)

    elapsed = asyncio.run(scenario())
    usage = sampler.stop()
    lat = [x for g in got for _, x in g]
    print(
        f"\nR6: {pollers} long-pollers, {appends} appends in {elapsed:.1f}s "
        f"({appends / elapsed:.0f}/s), {wakes[0]} long-poll responses with data; "
        f"append-to-delivery {summary(lat)}; daemon {usage.line()}"
    )
    order = [m["n"] for m in read_all(tenv.socket, "r6")]
    assert sorted(order) == list(range(appends)), "an append is missing or doubled"
    for i, g in enumerate(got):
        assert [n for n, _ in g] == order, f"poller {i} missed, repeated or reordered messages"
    assert usage.cpu_cores < 1.0, usage.line()
    assert percentile(lat, 0.99) < seconds(1.0, 0.05), summary(lat)
