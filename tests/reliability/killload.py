"""The daemon-process crash workload of C1, C2, C4 and C10: publishers, retries and CHECK.

Four publishers (two idempotent, two plain) append one message at a time to two channels of a
real daemon (``DaemonProc``) and record every operation in a ``History``. After the fault the
test restarts the daemon, lets the idempotent publishers resend their one in-doubt append with
the same producer tuple, and runs ``verify``: P1-P5 on the recovered log (``history.check``),
P6 by reading again from every acknowledged offset, and P7 by appending once more.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import aiohttp

from chanctl.protocol import format_offset, parse_offset

from . import daemonproc
from .daemonproc import DaemonProc, request
from .history import History, Op, check, check_rereads

CHANNELS = ("c1-a", "c1-b")
PRODUCERS = (("idem-0", True, 0), ("idem-1", True, 1), ("plain-0", False, 0), ("plain-1", False, 1))
IDEMPOTENT = frozenset(p for p, idem, _ in PRODUCERS if idem)
JSON = {"Content-Type": "application/json"}
CLIENT_ERRORS = (TimeoutError, aiohttp.ClientError, OSError)


def create(d: DaemonProc, name: str) -> None:
    status, _, body = request(str(d.sock), "PUT", f"/v1/stream/{name}", headers=JSON)
    assert status in (200, 201), body


def read_all(d: DaemonProc, name: str) -> list[str]:
    """Every message of a channel, following Stream-Next-Offset until up to date."""
    return daemonproc.read_all(d.sock, name)


def session(d: DaemonProc) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(d.sock)))


# -- publishing ----------------------------------------------------------------------------------


async def publish(
    d: DaemonProc, history: History, pid: str, idem: bool, channel: str, count: int
) -> Op | None:
    """Append ``count`` messages one at a time; return the op left indeterminate, if any.

    Stops at the first connection error (the daemon died); a refused append (an HTTP error
    status) is recorded as failed and the publisher goes on."""
    async with session(d) as s:
        for n in range(count):
            op = history.invoke(f"{pid}:{n}", channel)
            try:
                await append(s, op, pid if idem else None, n)
            except CLIENT_ERRORS:
                op.status = "info"
                return op
    return None


async def append(
    s: aiohttp.ClientSession, op: Op, producer: str | None, n: int, close: bool = False
) -> int:
    """One append of message ``op.msg_id``; records the outcome in ``op``, returns the status."""
    headers = dict(JSON)
    if producer is not None:
        headers.update({"Producer-Id": producer, "Producer-Epoch": "0", "Producer-Seq": str(n)})
    if close:
        headers["Stream-Closed"] = "true"
    body = json.dumps([op.msg_id])
    async with s.post(f"http://d/v1/stream/{op.channel}", data=body, headers=headers) as r:
        await r.read()
        if r.status == 204 and producer is not None:
            op.status = "ok"  # a duplicate: accepted earlier, at an offset this reply omits
        elif r.status in (200, 204):
            op.status = "ok"
            op.seq = parse_offset(r.headers["Stream-Next-Offset"]) - 1
        else:
            op.status = "fail"
        return r.status


def start_publishers(
    d: DaemonProc, history: History, count: int, channels: Sequence[str] = CHANNELS
) -> list[asyncio.Task[Op | None]]:
    return [
        asyncio.create_task(publish(d, history, pid, idem, channels[ch % len(channels)], count))
        for pid, idem, ch in PRODUCERS
    ]


async def retry_in_doubt(d: DaemonProc, in_doubt: Collection[Op | None]) -> list[str]:
    """Idempotent producers resend their in-doubt append with the same tuple after the restart:
    it must be accepted exactly once (200 if it was lost, 204 if it had been written)."""
    problems: list[str] = []
    async with session(d) as s:
        for op in in_doubt:
            if op is None or op.msg_id.rsplit(":", 1)[0] not in IDEMPOTENT:
                continue
            pid, n = op.msg_id.rsplit(":", 1)
            status = await append(s, op, pid, int(n))
            if status not in (200, 204):
                problems.append(f"retry of in-doubt {op.msg_id} got {status}")
    return problems


# -- CHECK ---------------------------------------------------------------------------------------


@dataclass
class Verified:
    problems: list[str]
    logs: dict[str, list[str]]  # each channel's log after the P7 append
    acked: int  # acknowledged appends checked
    rereads: int  # P6 reads


async def verify(
    d: DaemonProc,
    history: History,
    channels: Sequence[str] = CHANNELS,
    rereads: bool = True,
    reread_sample: int | None = None,
) -> Verified:
    """CHECK P1-P7 of reliability.md 4.0 on every channel after the restart. P6 reads again
    from every acknowledged offset, or from ``reread_sample`` of them per channel."""
    out = Verified([], {}, 0, 0)
    async with session(d) as s:
        for ch in channels:
            base, log = await read_from(s, ch)
            h = history if base == 0 else _trimmed(history, ch, base)
            out.problems += check(h, ch, log, set(IDEMPOTENT))
            acked = [o.seq for o in history.acked(ch) if o.seq is not None and o.seq >= base]
            out.acked += len(history.acked(ch))
            if reread_sample is not None and len(acked) > reread_sample:
                # Every read returns the rest of the log, so all offsets cost O(n^2) bytes:
                # tier 1 takes the first, the last and a random sample in between.
                rng = random.Random(len(acked))
                middle = rng.sample(acked[1:-1], reread_sample - 2)
                acked = sorted({acked[0], acked[-1], *middle})
            if rereads:
                got = await asyncio.gather(*(read_at(s, ch, seq) for seq in acked))
                again = {seq: msgs for seq, msgs in zip(acked, got, strict=True) if msgs}
                out.problems += check_rereads(ch, log, base, again)
                out.rereads += len(acked)
            problems, appended = await _p7(s, ch, base + len(log))
            out.problems += problems
            out.logs[ch] = [*log, f"p7-{ch}:0"] if appended else log
    return out


async def read_from(s: aiohttp.ClientSession, name: str) -> tuple[int, list[str]]:
    """(first retained seq, every message from there), following Stream-Next-Offset."""
    out: list[str] = []
    offset, base = "-1", None
    while True:
        async with s.get(f"http://d/v1/stream/{name}?offset={offset}") as r:
            body = await r.read()
            assert r.status == 200, (name, r.status, body)
            msgs = json.loads(body)
            offset = r.headers["Stream-Next-Offset"]
            if base is None:
                base = parse_offset(offset) - len(msgs)
            out += msgs
            if r.headers.get("Stream-Up-To-Date") == "true":
                return base, out


async def read_at(s: aiohttp.ClientSession, name: str, seq: int) -> list[str]:
    """One read starting at ``seq``; empty when retention dropped it meanwhile (410)."""
    async with s.get(f"http://d/v1/stream/{name}?offset={format_offset(seq)}") as r:
        body = await r.read()
        if r.status == 410:
            return []
        return list(json.loads(body)) if r.status == 200 else [f"HTTP {r.status}"]


async def _p7(s: aiohttp.ClientSession, name: str, end: int) -> tuple[list[str], bool]:
    """P7: a new append succeeds and lands right after everything recovered; returns the
    problems and whether the message was appended."""
    async with s.post(f"http://d/v1/stream/{name}", data=f'["p7-{name}:0"]', headers=JSON) as r:
        await r.read()
        if r.status == 409 and r.headers.get("Stream-Closed") == "true":
            return [], False  # a closed channel (C4's close path) rightly takes no more appends
        got = r.headers.get("Stream-Next-Offset")
        want = format_offset(end + 1)
        if r.status not in (200, 204) or got != want:
            return [
                f"P7 {name}: append after restart got {r.status} next {got}, want {want}"
            ], False
    return [], True


def _trimmed(history: History, channel: str, base: int) -> History:
    """The history as ``check`` should see a channel whose first ``base`` messages retention
    removed: acknowledged ops below ``base`` are gone by design, the rest shift down."""
    ops = []
    for o in history.ops:
        if o.channel != channel:
            continue
        if o.status == "ok" and o.seq is not None:
            if o.seq < base:
                continue
            o = Op(o.msg_id, o.channel, o.status, o.seq - base)
        ops.append(o)
    return History(ops)
