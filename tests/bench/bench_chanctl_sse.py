"""Live readers over the daemon's SSE endpoint (``GET ?live=sse``), spoken as raw HTTP.

chanctl's client library follows a channel with long-poll: one HTTP request per answer. The
daemon also serves Server-Sent Events (one response per reader, events pushed as appends land),
which the library does not use yet. Workloads 4 and 6 measure both, so the table shows how much
of a gap to the peers is the library's transport rather than the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from bench_common import WARM_SEQ, filler, stop_tasks, tag_seq, wait_until

from chanctl.protocol import encode_message

MAX_EVENTS = 10_000_000


class SseReader:
    """One ``live=sse`` response: records when each numbered payload (``L<n>:``) arrives.

    It parses only what the bench needs: ``event:`` and ``data:`` lines, dispatching at the
    blank line that ends an event. Data events carry a JSON array of chanctl envelopes.
    """

    def __init__(self, seen: dict[int, int]) -> None:
        self.seen = seen

    async def run(self, resp: aiohttp.ClientResponse) -> None:
        event, data = "", []
        for _ in range(MAX_EVENTS):
            raw = await resp.content.readline()
            if not raw:
                return
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            elif not line:
                if event == "data":
                    self._dispatch("\n".join(data))
                event, data = "", []

    def _dispatch(self, data: str) -> None:
        now = time.perf_counter_ns()
        for value in json.loads(data):
            text = value.get("data") if isinstance(value, dict) else None
            seq = tag_seq(text, "L") if isinstance(text, str) else None
            if seq is not None:
                self.seen[seq] = now


async def _follow(session: aiohttp.ClientSession, channel: str, seen: dict[int, int]) -> None:
    """Follow ``channel`` from its start until cancelled."""
    params = {"offset": "-1", "live": "sse"}
    async with session.get(f"http://localhost/v1/stream/{channel}", params=params) as resp:
        if resp.status != 200:
            raise RuntimeError(f"SSE read of {channel}: HTTP {resp.status}")
        await SseReader(seen).run(resp)


async def _post(session: aiohttp.ClientSession, channel: str, data: str) -> None:
    body = "[" + encode_message("message", data, time.time()) + "]"
    headers = {"Content-Type": "application/json"}
    async with session.post(f"http://localhost/v1/stream/{channel}", data=body, headers=headers):
        pass


@contextlib.asynccontextmanager
async def readers(sock: Path, channel: str, count: int) -> AsyncIterator[list[dict[int, int]]]:
    """``count`` SSE readers of an existing channel, each its own connection, proven live by a
    warm-up message every one of them has received before the block body runs."""
    seens: list[dict[int, int]] = [{} for _ in range(count)]
    connector = aiohttp.UnixConnector(path=str(sock), limit=count + 1)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(_follow(session, channel, seen)) for seen in seens]
        try:
            await _post(session, channel, filler(f"L{WARM_SEQ}:", 100))
            await wait_until(lambda: all(WARM_SEQ in seen for seen in seens), tasks, 60)
            for seen in seens:
                seen.clear()
            yield seens
        finally:
            await stop_tasks(tasks)
