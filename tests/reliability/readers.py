"""C12 of reliability.md: tailers that follow a channel through crashes and restarts.

Each tailer reads one channel from the start with one of the three read styles (SSE,
long-poll, catch-up loop) and, after every disconnect (the daemon killed, restarting, ending a
connection), reconnects from the last ``Stream-Next-Offset`` it was given, as a real client
would. It checks each response against its own position as it goes (a response must start
where the previous one ended and its next offset must count exactly the messages it carried),
so a poll-skip or a repeated message shows up as a problem naming the offsets; at the end the
test compares what each tailer saw with the recovered log.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import aiohttp

from chanctl.protocol import format_offset, parse_offset

KINDS = ("sse", "sse", "long-poll", "long-poll", "catch-up")  # per channel: 2 + 2 + 1
_RETRY_S = 0.02
_IDLE_S = 0.02  # a catch-up loop that is up to date polls again after this


@dataclass
class Tailer:
    kind: str  # sse | long-poll | catch-up
    channel: str
    seq: int = 0  # the next offset to read (as a message count)
    got: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    requests: int = 0
    reconnects: int = 0  # after a connection error (the daemon died or was restarting)

    def take(self, start: int, msgs: list[str], next_seq: int) -> None:
        """Record one response: it must continue exactly where the last one ended."""
        if start != self.seq or next_seq != start + len(msgs):
            self.problems.append(
                f"C12 {self.kind} on {self.channel}: response from {start} with {len(msgs)} "
                f"message(s) said next {next_seq}, reader was at {self.seq}"
            )
            return
        self.got += msgs
        self.seq = next_seq

    def check(self, log: list[str]) -> list[str]:
        """The reader saw exactly the recovered log, in order: no gap, no duplicate."""
        if self.got == log:
            return self.problems
        first = next(
            (i for i, (a, b) in enumerate(zip(self.got, log, strict=False)) if a != b), None
        )
        where = first if first is not None else min(len(self.got), len(log))
        return [
            *self.problems,
            f"C12 {self.kind} on {self.channel}: saw {len(self.got)} messages, log has "
            f"{len(log)}; first difference at {where}: {self.got[where : where + 2]} vs "
            f"{log[where : where + 2]}",
        ]


class Tailers:
    """Ten tailers (two channels x (2 SSE, 2 long-poll, 1 catch-up)) on one daemon socket."""

    def __init__(self, sock: str, channels: tuple[str, ...]) -> None:
        self.sock = sock
        self.all = [Tailer(kind, ch) for ch in channels for kind in KINDS]
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(_follow(self.sock, t)) for t in self.all]

    def snapshot(self) -> dict[str, set[str]]:
        """Every id any tailer has seen so far, per channel."""
        seen: dict[str, set[str]] = {}
        for t in self.all:
            seen.setdefault(t.channel, set()).update(t.got)
        return seen

    async def finish(self, logs: dict[str, list[str]], timeout: float) -> list[str]:
        """Wait until every tailer reached the end of its channel's log, stop them, and return
        the problems found (each tailer's view against the log)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and any(t.seq < len(logs[t.channel]) for t in self.all):
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return [p for t in self.all for p in t.check(logs[t.channel])]


async def _follow(sock: str, t: Tailer) -> None:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=2)
    async with aiohttp.ClientSession(
        connector=aiohttp.UnixConnector(path=sock), timeout=timeout
    ) as s:
        while True:
            t.requests += 1
            try:
                if t.kind == "sse":
                    await _sse(s, t)
                else:
                    await _poll(s, t, live=t.kind == "long-poll")
            except (aiohttp.ClientError, OSError, TimeoutError):
                t.reconnects += 1
                await asyncio.sleep(_RETRY_S)  # daemon down or restarting: come back later
            except ValueError as exc:  # a body or event that is not what it claims to be
                t.problems.append(f"C12 {t.kind} on {t.channel}: bad response: {exc!r}")
                return


def _url(t: Tailer, live: str | None) -> str:
    query = f"offset={format_offset(t.seq)}" + (f"&live={live}" if live else "")
    return f"http://d/v1/stream/{t.channel}?{query}"


async def _poll(s: aiohttp.ClientSession, t: Tailer, live: bool) -> None:
    start = t.seq
    async with s.get(_url(t, "long-poll" if live else None)) as r:
        body = await r.read()
        if r.status == 204:
            return
        if r.status != 200:
            await asyncio.sleep(_RETRY_S)
            return
        msgs = json.loads(body)
        t.take(start, msgs, parse_offset(r.headers["Stream-Next-Offset"]))
        if not live and not msgs:
            await asyncio.sleep(_IDLE_S)


async def _sse(s: aiohttp.ClientSession, t: Tailer) -> None:
    """Follow one SSE connection: each data event is followed by a control event with the
    offset after it; only a complete pair counts (a cut-off event is read again later)."""
    async with s.get(_url(t, "sse")) as r:
        if r.status != 200:
            await r.read()
            await asyncio.sleep(_RETRY_S)
            return
        buf = b""
        pending: list[str] = []
        async for chunk in r.content.iter_any():
            buf += chunk
            while b"\n\n" in buf:
                raw, buf = buf.split(b"\n\n", 1)
                kind, data = _parse_event(raw)
                if kind == "data":
                    pending = json.loads(data)
                elif kind == "control":
                    next_seq = parse_offset(json.loads(data)["streamNextOffset"])
                    t.take(t.seq, pending, next_seq)
                    pending = []


def _parse_event(raw: bytes) -> tuple[str, str]:
    kind, lines = "", []
    for line in raw.decode().split("\n"):
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            value = line[5:]
            lines.append(value[1:] if value.startswith(" ") else value)
    return kind, "\n".join(lines)
