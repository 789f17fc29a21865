"""C1 and C7 of reliability.md: acknowledged appends survive kill -9, exactly once, in order.

Guards against acks sent before the fsync, duplicate appends from idempotent producers that retry
across a crash, torn records served after recovery, and offsets that move after a restart.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import aiohttp
import pytest

from chanctl.protocol import format_offset, parse_offset

from .daemonproc import DaemonProc, request
from .history import History, Op, check

CHANNELS = ("c1-a", "c1-b")
PRODUCERS = (("idem-0", True, 0), ("idem-1", True, 1), ("plain-0", False, 0), ("plain-1", False, 1))
JSON = {"Content-Type": "application/json"}


def _create(d: DaemonProc, name: str) -> None:
    status, _, body = request(str(d.sock), "PUT", f"/v1/stream/{name}", headers=JSON)
    assert status in (200, 201), body


def read_all(d: DaemonProc, name: str) -> list[str]:
    """Every message of a channel, following Stream-Next-Offset until up to date."""
    out: list[str] = []
    offset = "-1"
    while True:
        status, headers, body = request(str(d.sock), "GET", f"/v1/stream/{name}?offset={offset}")
        assert status == 200, body
        out += json.loads(body)
        offset = headers["stream-next-offset"]
        if headers.get("stream-up-to-date") == "true":
            return out


async def _publish(
    sock: str, history: History, pid: str, idem: bool, channel: str, count: int
) -> Op | None:
    """Append ``count`` messages one at a time; return the op left indeterminate, if any."""
    conn = aiohttp.UnixConnector(path=sock)
    async with aiohttp.ClientSession(connector=conn) as s:
        for n in range(count):
            op = history.invoke(f"{pid}:{n}", channel)
            try:
                await _append(s, op, pid if idem else None, n)
            except (TimeoutError, aiohttp.ClientError, OSError):
                op.status = "info"
                return op
    return None


async def _append(s: aiohttp.ClientSession, op: Op, producer: str | None, n: int) -> None:
    headers = dict(JSON)
    if producer is not None:
        headers.update({"Producer-Id": producer, "Producer-Epoch": "0", "Producer-Seq": str(n)})
    body = json.dumps([op.msg_id])
    async with s.post(f"http://d/v1/stream/{op.channel}", data=body, headers=headers) as r:
        await r.read()
        if r.status in (200, 204):
            op.status = "ok"
            op.seq = parse_offset(r.headers["Stream-Next-Offset"]) - 1
        else:
            op.status = "fail"


async def _load_and_kill(d: DaemonProc, history: History, rng: random.Random, n: int) -> list[Op]:
    tasks = [
        asyncio.create_task(_publish(str(d.sock), history, pid, idem, CHANNELS[ch], n))
        for pid, idem, ch in PRODUCERS
    ]
    await asyncio.sleep(rng.uniform(0.05, 1.5))
    d.kill9()
    left = await asyncio.gather(*tasks)
    return [op for op in left if op is not None]


def _retry_idempotent(d: DaemonProc, op: Op) -> None:
    """An idempotent producer resends its in-doubt append with the same tuple after restart."""
    pid, n = op.msg_id.rsplit(":", 1)
    headers = {**JSON, "Producer-Id": pid, "Producer-Epoch": "0", "Producer-Seq": n}
    status, h, body = request(
        str(d.sock), "POST", f"/v1/stream/{op.channel}", json.dumps([op.msg_id]).encode(), headers
    )
    assert status in (200, 204), (status, body)
    assert h["producer-seq"] == n
    op.status = "ok"


@pytest.mark.slow
def test_c1_kill9_under_concurrent_load(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    total_acked = 0
    for iteration in range(8):
        base = tmp_path / f"it{iteration}"
        base.mkdir()
        d = DaemonProc(base / "data", base / "s.sock", base / "daemon.log")
        d.start()
        for ch in CHANNELS:
            _create(d, ch)
        history = History()
        in_doubt = asyncio.run(_load_and_kill(d, history, rng, 2500))
        acked = sum(len(history.acked(ch)) for ch in CHANNELS)
        assert 0 < acked < len(PRODUCERS) * 2500, "the kill must land while appends run"
        total_acked += acked
        d.start()
        for op in in_doubt:
            if op.msg_id.startswith("idem"):
                _retry_idempotent(d, op)
        idempotent = {p for p, idem, _ in PRODUCERS if idem}
        for ch in CHANNELS:
            log = read_all(d, ch)
            problems = check(history, ch, log, idempotent)
            assert not problems, f"seed {seed} iteration {iteration}: {problems[:20]}"
            # P7: appends work after recovery and land after everything recovered.
            status, h, _ = request(str(d.sock), "POST", f"/v1/stream/{ch}", b'["after"]', JSON)
            assert status in (200, 204)
            assert h["stream-next-offset"] == format_offset(len(log) + 1)
        assert d.stop() == 0
    print(f"C1: 8 kill -9 rounds, {total_acked} acknowledged appends checked, seed {seed}")
