"""The mixed workload of the R7 soak (reliability.md): one real daemon, many kinds of clients.

Publishers (plain and idempotent, single and batched appends; some idempotent appends are cut
off right after they were sent and retried with the same producer tuple), steering messages on
the control lanes, a churn of channels that are created, appended to, closed with a final
append, checked and deleted, and a trickle of requests the daemon must refuse. Every append is
recorded in one ``History``. Readers of every kind (catch-up, long-poll, SSE over HTTP, and
``chanctl tail`` processes) are cut at random about every 2 s, mid-response, and resume from
the last offset they were given, checking as they go that each response continues exactly
where the previous one ended. ``finish`` runs CHECK P1-P5 on every lane and compares what
each reader saw with the final log.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from chanctl.protocol import format_offset, parse_offset

from .daemonproc import request
from .history import History, Op, check
from .loadkit import JSON, SseParser
from .readers import Tailer
from .soakbad import BAD_REQUESTS, producer_headers, send_and_hang_up
from .tiers import seconds

CHANNELS = ("soak-a", "soak-b")
LANES = (*CHANNELS, *(f"{ch}#control" for ch in CHANNELS))  # labels; "#control": its steering
PUBLISHERS = (  # producer id, channel, idempotent, largest batch
    ("plain-1", "soak-a", False, 1),
    ("idem-1", "soak-a", True, 1),
    ("plain-n", "soak-b", False, 8),
    ("idem-n", "soak-b", True, 8),
)
READERS = (  # kind, lane; plus the `chanctl tail` processes of CLI_READERS
    *((kind, ch) for ch in CHANNELS for kind in ("sse", "long-poll", "catch-up")),
    ("long-poll", "soak-a#control"),
    ("sse", "soak-b#control"),
)
CLI_READERS = ("soak-a", "soak-b#control")
CUT_EVERY_S = (1.0, 3.0)  # a reader is disconnected after a uniform draw from this range
PACE_S = seconds(0.05, 0.2)  # a publisher waits up to this between appends (tier 2: an hour
# of ids must fit in the test's memory, and a leak shows in requests and connections anyway)
PAD = "x" * 400  # messages carry 0-400 bytes of it, so the tail caches fill during the warm-up
CUT_APPEND_P = 0.03  # share of idempotent appends cut off right after sending
CLIENT_ERRORS = (aiohttp.ClientError, OSError)


def lane_path(label: str) -> str:
    name, _, lane = label.partition("#")
    return f"/v1/{'control' if lane else 'stream'}/{name}"


def ident(value: Any) -> str:
    """The message id a stored value carries: its first word (output lanes), or the argument
    of a ``set soak=ID`` steering message (control lanes)."""
    # Interned: ten readers holding an hour of ids share one string per message.
    if isinstance(value, str):
        return sys.intern(value.split(" ", 1)[0])
    return sys.intern(str(value["data"]).rsplit("=", 1)[1])


@dataclass
class Counts:
    acked: int = 0  # acknowledged messages
    appends: int = 0  # acknowledged append requests
    cut_appends: int = 0  # idempotent appends cut off after sending, then retried
    steers: int = 0
    churned: int = 0  # channels created, closed, checked and deleted
    refused: int = 0  # bad requests refused with the expected status
    cli_runs: int = 0  # `chanctl tail` processes started
    reader_errors: int = 0  # connection errors readers saw (not counting their own cuts)


@dataclass
class Soak:
    sock: Path
    seed: int
    cli_env: dict[str, str]
    history: History = field(default_factory=History)
    idempotent: set[str] = field(default_factory=set)
    counts: Counts = field(default_factory=Counts)
    problems: list[str] = field(default_factory=list)
    readers: list[Tailer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._stop = asyncio.Event()
        self._writers: list[asyncio.Task[None]] = []
        self._reader_tasks: list[asyncio.Task[None]] = []

    def prime(self) -> None:
        """Create both lanes of every channel and append once to each (which opens its
        segment file), so that the idle baseline has everything the load keeps open."""
        for label in LANES:
            status, _, body = request(str(self.sock), "PUT", lane_path(label), headers=JSON)
            assert status in (200, 201), (label, status, body)
            op = self.history.invoke("prime:0", label)
            value: Any = (
                "prime:0" if "#" not in label else {"type": "steer", "data": "set soak=prime:0"}
            )
            status, headers, body = request(
                str(self.sock), "POST", lane_path(label), json.dumps([value]).encode(), JSON
            )
            assert status == 204, (label, status, body)
            op.status, op.seq = "ok", parse_offset(headers["stream-next-offset"]) - 1

    def start(self) -> None:
        writers: list[Coroutine[Any, Any, None]] = [self._publish(*p) for p in PUBLISHERS]
        writers += [self._steer(), self._churn(), self._refusals()]
        self._writers = [asyncio.create_task(w) for w in writers]
        for kind, label in READERS:
            t = Tailer(kind, label)
            self.readers.append(t)
            self._reader_tasks.append(asyncio.create_task(self._follow(t)))
        for label in CLI_READERS:
            t = Tailer("chanctl-tail", label)
            self.readers.append(t)
            self._reader_tasks.append(asyncio.create_task(self._cli_tail(t)))

    async def stop_writers(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._writers)

    async def finish(self, timeout: float) -> dict[str, list[str]]:
        """CHECK every lane, wait until each reader has reached the end of its lane, stop
        the readers and compare what they saw with the log; returns the final logs."""
        logs: dict[str, list[str]] = {}
        async with self._session() as s:
            for label in LANES:
                logs[label] = [ident(v) for v in await read_lane(s, lane_path(label))]
                idem = self.idempotent if "#" not in label else set()
                self.problems += check(self.history, label, logs[label], idem)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and any(t.seq < len(logs[t.channel]) for t in self.readers):
            await asyncio.sleep(0.05)
        for task in self._reader_tasks:
            task.cancel()
        ends = await asyncio.gather(*self._reader_tasks, return_exceptions=True)
        self.problems += [
            f"{t.kind} on {t.channel} crashed: {end!r}"
            for t, end in zip(self.readers, ends, strict=True)
            if isinstance(end, Exception)  # CancelledError is a BaseException: stopped by us
        ]
        for t in self.readers:
            self.problems += t.check(logs[t.channel])
        return logs

    def _session(self) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
        return aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(self.sock)), timeout=timeout
        )

    async def _pause(self, low: float, high: float) -> None:
        await asyncio.sleep(self.rng.uniform(low, high))

    # -- writers ---------------------------------------------------------------------------------

    async def _publish(self, pid: str, channel: str, idem: bool, batch: int) -> None:
        if idem:
            self.idempotent.add(pid)
        n = pseq = 0
        async with self._session() as s:
            while not self._stop.is_set():
                k = self.rng.randint(1, batch)
                ops = [self.history.invoke(f"{pid}:{n + i}", channel) for i in range(k)]
                n += k
                pads = (PAD[: self.rng.randrange(len(PAD))] for _ in ops)
                body = json.dumps(
                    [f"{o.msg_id} {pad}" for o, pad in zip(ops, pads, strict=True)]
                ).encode()
                headers = {**JSON, **(producer_headers(pid, pseq) if idem else {})}
                cut = idem and self.rng.random() < CUT_APPEND_P
                if cut:  # sent in full, then the connection closes without reading the reply
                    await send_and_hang_up(self.sock, lane_path(channel), body, headers)
                    self.counts.cut_appends += 1
                await self._append(s, channel, ops, body, headers, retry=cut)
                pseq += 1
                await self._pause(0, PACE_S)

    async def _append(
        self,
        s: aiohttp.ClientSession,
        label: str,
        ops: list[Op],
        body: bytes,
        headers: dict[str, str],
        retry: bool = False,
    ) -> Mapping[str, str] | None:
        """POST ``ops`` as one batch and record the outcome; returns the reply's headers when
        the append was accepted. A 204 from an idempotent producer means "already have it",
        which only a retry may get."""
        try:
            async with s.post(f"http://d{lane_path(label)}", data=body, headers=headers) as r:
                await r.read()
                status, rh = r.status, r.headers
        except CLIENT_ERRORS as exc:
            for op in ops:
                op.status = "info"
            self.problems.append(f"append of {ops[0].msg_id}.. to {label} failed: {exc!r}")
            return None
        duplicate = status == 204 and "Producer-Id" in headers
        if status in (200, 204) and (retry or not duplicate):
            end = parse_offset(rh["Stream-Next-Offset"])
            for i, op in enumerate(ops):
                op.status = "ok"
                op.seq = None if duplicate else end - len(ops) + i
            self.counts.acked += len(ops)
            self.counts.appends += 1
            return rh
        for op in ops:
            op.status = "fail"
        self.problems.append(f"append of {ops[0].msg_id}.. to {label} got HTTP {status}")
        return None

    async def _steer(self) -> None:
        """Steering messages on both control lanes (no wrapper runs: they are only stored,
        served and checked like any other append)."""
        n = 0
        async with self._session() as s:
            while not self._stop.is_set():
                label = f"{self.rng.choice(CHANNELS)}#control"
                op = self.history.invoke(f"steer:{n}", label)
                n += 1
                body = json.dumps({"type": "steer", "data": f"set soak={op.msg_id}"}).encode()
                if await self._append(s, label, [op], body, JSON) is not None:
                    self.counts.steers += 1
                await self._pause(0.05, 0.3)

    async def _churn(self) -> None:
        k = 0
        async with self._session() as s:
            while not self._stop.is_set():
                await self._churn_one(s, k)
                k += 1
                await self._pause(0.3, 1.0)

    async def _churn_one(self, s: aiohttp.ClientSession, k: int) -> None:
        """Create, append, close with a final append, refuse one more, CHECK, delete."""
        name, pid = f"soak-churn-{k}", f"churn-{k}"
        history = History()  # its own: CHECK runs on each churned channel before it goes
        url = f"http://d{lane_path(name)}"
        expect = _Expect(self.problems, name)
        async with s.put(url, headers=JSON) as r:
            expect.status("create", r.status, 201)
        appends = self.rng.randint(1, 4)
        for i in range(appends + 1):
            op = history.invoke(f"{pid}:{i}", name)
            headers = {**JSON, **producer_headers(pid, i)}
            if i == appends:
                headers["Stream-Closed"] = "true"
            rh = await self._append(s, name, [op], json.dumps([op.msg_id]).encode(), headers)
            if i == appends:
                expect.true("close", rh is not None and rh.get("Stream-Closed") == "true")
        async with s.post(url, data=json.dumps([f"late-{k}:0"]), headers=JSON) as r:
            expect.status("append after close", r.status, 409)
            expect.true("Stream-Closed on 409", r.headers.get("Stream-Closed") == "true")
        log = [ident(v) for v in await read_lane(s, lane_path(name))]
        self.problems += check(history, name, log, {pid})
        async with s.delete(url) as r:
            expect.status("delete", r.status, 204)
        async with s.get(f"{url}?offset=-1") as r:
            expect.status("read after delete", r.status, 404)
        self.counts.churned += 1

    async def _refusals(self) -> None:
        """Requests the daemon must refuse, round robin; none may append (their ids would be
        phantoms in CHECK) or make the daemon log an error."""
        n = 0
        async with self._session() as s:
            while not self._stop.is_set():
                name, send, want = BAD_REQUESTS[n % len(BAD_REQUESTS)]
                try:
                    status = await send(self.sock, s, f"bad:{n}")
                except CLIENT_ERRORS as exc:
                    self.problems.append(f"bad request {name}: {exc!r}")
                else:
                    if status in want:
                        self.counts.refused += 1
                    else:
                        self.problems.append(f"bad request {name}: HTTP {status}, want {want}")
                n += 1
                await self._pause(0.1, 0.5)

    # -- readers ---------------------------------------------------------------------------------

    async def _follow(self, t: Tailer) -> None:
        """Read one lane forever; every ~2 s the connection is cut wherever it is (waiting for
        a long-poll, inside an SSE stream, or partway through a catch-up body)."""
        loop = asyncio.get_running_loop()
        async with self._session() as s:
            while True:
                t.requests += 1
                try:
                    async with asyncio.timeout_at(loop.time() + self.rng.uniform(*CUT_EVERY_S)):
                        while True:
                            await (self._sse if t.kind == "sse" else self._poll)(s, t)
                except TimeoutError:
                    pass
                except CLIENT_ERRORS:
                    self.counts.reader_errors += 1
                    await asyncio.sleep(0.05)
                except ValueError as exc:
                    t.problems.append(f"{t.kind} on {t.channel}: bad response: {exc!r}")
                    return
                if t.kind == "catch-up":
                    await self._cut_mid_body(s, t)
                t.reconnects += 1

    def _url(self, t: Tailer, live: str | None) -> str:
        query = f"offset={format_offset(t.seq)}" + (f"&live={live}" if live else "")
        return f"http://d{lane_path(t.channel)}?{query}"

    async def _poll(self, s: aiohttp.ClientSession, t: Tailer) -> None:
        start, live = t.seq, t.kind == "long-poll"
        async with s.get(self._url(t, "long-poll" if live else None)) as r:
            body = await r.read()
            if r.status == 204:  # long-poll timed out with nothing new
                return
            if r.status != 200:
                t.problems.append(f"{t.kind} on {t.channel}: HTTP {r.status} {body[:200]!r}")
                await asyncio.sleep(0.05)
                return
            msgs = [ident(v) for v in json.loads(body)]
            t.take(start, msgs, parse_offset(r.headers["Stream-Next-Offset"]))
        if not live and not msgs:
            await asyncio.sleep(0.05)

    async def _sse(self, s: aiohttp.ClientSession, t: Tailer) -> None:
        """One SSE connection: only a data event followed by its control event (the offset
        after it) counts, so a cut between the two means reading that batch again."""
        async with s.get(self._url(t, "sse")) as r:
            if r.status != 200:
                t.problems.append(f"sse on {t.channel}: HTTP {r.status}")
                await r.read()
                await asyncio.sleep(0.05)
                return
            parser = SseParser()
            pending: list[str] = []
            async for chunk in r.content.iter_any():
                for event, data in parser.feed(chunk):
                    if event == "data":
                        pending = [ident(v) for v in json.loads(data)]
                    elif event == "control":
                        next_seq = parse_offset(json.loads(data)["streamNextOffset"])
                        t.take(t.seq, pending, next_seq)
                        pending = []

    async def _cut_mid_body(self, s: aiohttp.ClientSession, t: Tailer) -> None:
        """A catch-up response is over in a blink, so its cut is explicit: read the head and a
        few bytes of the body, then close the socket."""
        try:
            async with s.get(self._url(t, None)) as r:
                await r.content.read(self.rng.randint(1, 64))
                r.close()
        except CLIENT_ERRORS:
            self.counts.reader_errors += 1

    async def _cli_tail(self, t: Tailer) -> None:
        """``chanctl tail --json`` from the next unseen seq, SIGKILLed every ~2 s (its socket
        closes wherever it is) and started again, as a user hitting Ctrl-C and rerunning it
        with ``--from`` would."""
        loop = asyncio.get_running_loop()
        name, _, lane = t.channel.partition("#")
        while True:
            argv = ["tail", name, "--json", "--from", str(t.seq), *(["--control"] if lane else [])]
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "chanctl.cli",
                *argv,
                env=self.cli_env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            self.counts.cli_runs += 1
            t.requests += 1
            assert proc.stdout is not None and proc.stderr is not None
            try:
                async with asyncio.timeout_at(loop.time() + self.rng.uniform(*CUT_EVERY_S)):
                    while line := await proc.stdout.readline():
                        rec = json.loads(line)
                        value = json.loads(rec["data"]) if rec["type"] == "json" else rec
                        t.take(int(rec["seq"]), [ident(value)], int(rec["seq"]) + 1)
                    err = await proc.stderr.read()
                    t.problems.append(f"chanctl tail exited {await proc.wait()}: {err[-500:]!r}")
                    return
            except TimeoutError:
                pass
            finally:
                if proc.returncode is None:
                    proc.kill()
                await proc.wait()
            t.reconnects += 1


async def read_lane(s: aiohttp.ClientSession, path: str) -> list[Any]:
    """Every value of a lane, from the start, following Stream-Next-Offset until up to date."""
    out: list[Any] = []
    offset = "-1"
    while True:
        async with s.get(f"http://d{path}?offset={offset}") as r:
            body = await r.read()
            assert r.status == 200, (path, r.status, body[:200])
            out += json.loads(body)
            offset = r.headers["Stream-Next-Offset"]
            if r.headers.get("Stream-Up-To-Date") == "true":
                return out


@dataclass
class _Expect:
    problems: list[str]
    where: str

    def status(self, what: str, got: int, want: int) -> None:
        if got != want:
            self.problems.append(f"{self.where}: {what} got HTTP {got}, want {want}")

    def true(self, what: str, ok: bool) -> None:
        if not ok:
            self.problems.append(f"{self.where}: {what} failed")
