"""C11 of reliability.md: restart hygiene, SIGTERM drain, and restart and recovery times.

Guards against a daemon that rewrites (or re-chmods) files on every start, so idle restarts
slowly change the data directory; a shutdown that acknowledges appends it then loses, answers
a request with a 500 or cuts a live reader mid-event; and start-up costs that grow with the
data (a clean restart must not rescan the logs, and a crash recovery must scan only the
un-checkpointed tail, at a bounded rate).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from chanctl.protocol import parse_offset

from .daemonproc import DaemonProc, request
from .history import History, Op
from .killload import CLIENT_ERRORS, JSON, append, session, verify
from .report import Report
from .tiers import scale

LOCK_FILE = "daemon.lock"  # names the running daemon (pid, start time): rewritten by design
MiB = 1 << 20


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """(mode, sha256) of every file and directory under ``root`` but the lock file."""
    out: dict[str, tuple[int, str]] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if rel == LOCK_FILE:
            continue
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        out[rel] = (st.st_mode, digest)
    return out


def _populate(d: DaemonProc) -> None:
    """A little of everything: several segments, an idempotent producer, a closed channel, a
    binary channel."""
    sock = str(d.sock)
    for name, ctype in (("multi", JSON), ("closed", JSON)):
        assert request(sock, "PUT", f"/v1/stream/{name}", headers=ctype)[0] == 201
    binary = {"Content-Type": "application/octet-stream"}
    assert request(sock, "PUT", "/v1/stream/bin", headers=binary)[0] == 201
    for n in range(60):
        producer = {"Producer-Id": "p", "Producer-Epoch": "0", "Producer-Seq": str(n)}
        body = json.dumps([f"m{n}" * 20]).encode()
        assert request(sock, "POST", "/v1/stream/multi", body, {**JSON, **producer})[0] == 200
        assert request(sock, "POST", "/v1/stream/bin", bytes([n]) * 100, binary)[0] == 204
    close = {**JSON, "Stream-Closed": "true"}
    assert request(sock, "POST", "/v1/stream/closed", b'["last"]', close)[0] == 204


def test_c11_idle_restarts_leave_the_data_directory_byte_identical(tmp_path: Path) -> None:
    d = DaemonProc(
        tmp_path / "data",
        tmp_path / "s.sock",
        tmp_path / "d.log",
        "always",
        ("--segment-bytes", "1024"),
    )
    d.start()
    _populate(d)
    assert d.stop() == 0
    before = snapshot(d.data_dir)
    assert sum(1 for k in before if k.endswith(".log")) > 5, "several segments expected"
    report = Report(tmp_path / "report", d, 0)
    for i in range(5):
        d.start()
        assert d.stop() == 0
        after = snapshot(d.data_dir)
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        report.expect([f"restart {i + 1} changed {k}" for k in changed])
    print(f"\nC11: 5 idle restarts, {len(before)} files and directories unchanged (sha256, mode)")


# -- SIGTERM drain -------------------------------------------------------------------------------


async def _publisher(
    d: DaemonProc, history: History, pid: str, out: list[tuple[Op, float, float, str]]
) -> None:
    """Append until the daemon refuses; record (op, sent, answered, outcome)."""
    async with session(d) as s:
        for n in range(100_000):
            op = history.invoke(f"{pid}:{n}", "busy")
            sent = time.monotonic()
            try:
                outcome = str(await append(s, op, None, n))
            except CLIENT_ERRORS as exc:
                op.status, outcome = "info", type(exc).__name__
            out.append((op, sent, time.monotonic(), outcome))
            if op.status != "ok":
                return


async def _long_poll(d: DaemonProc, offset: str) -> str:
    async with session(d) as s:
        url = f"http://d/v1/stream/idle?offset={offset}&live=long-poll"
        async with s.get(url) as r:
            await r.read()
            return str(r.status)


async def _sse(d: DaemonProc) -> str:
    """Follow an SSE stream to its end; 'clean' when it ended after a complete event."""
    async with session(d) as s:
        async with s.get("http://d/v1/stream/idle?offset=-1&live=sse") as r:
            data = b""
            try:
                async for chunk in r.content.iter_any():
                    data += chunk
            except aiohttp.ClientPayloadError as exc:
                return f"cut: {exc}"
            events = data.count(b"event: control")
            return "clean" if events and data.endswith(b"\n\n") else f"partial: {data[-80:]!r}"


async def _drain_scenario(d: DaemonProc, rng: random.Random) -> tuple[list[str], int, float]:
    history = History()
    async with session(d) as s:
        for name in ("busy", "idle"):
            async with s.put(f"http://d/v1/stream/{name}", headers=JSON) as r:
                assert r.status == 201
        async with s.post("http://d/v1/stream/idle", data='["x"]', headers=JSON) as r:
            tail = r.headers["Stream-Next-Offset"]
    results: list[tuple[Op, float, float, str]] = []
    pubs = [asyncio.create_task(_publisher(d, history, f"p{i}", results)) for i in range(4)]
    polls = [asyncio.create_task(_long_poll(d, tail)) for _ in range(2)]
    sses = [asyncio.create_task(_sse(d)) for _ in range(2)]
    await asyncio.sleep(rng.uniform(0.2, 0.6))
    assert d.proc is not None
    term = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    status = await asyncio.to_thread(d.wait_exit, 20)
    drain_s = time.monotonic() - term
    await asyncio.gather(*pubs)
    problems = [f"daemon exited {status} after SIGTERM"] if status != 0 else []
    problems += [
        f"long-poll ended with {p}, want 204" for p in await asyncio.gather(*polls) if p != "204"
    ]
    problems += [f"SSE ended {e}" for e in await asyncio.gather(*sses) if e != "clean"]
    refused = [answered for op, _, answered, _ in results if op.status != "ok"]
    assert refused, "every publisher stops at its first refusal"
    first_refusal = min(refused)
    for op, sent, _, outcome in results:
        if outcome not in ("200", "204", "503") and not outcome.endswith("Error"):
            problems.append(f"{op.msg_id}: unclean answer {outcome} during drain")
        if op.status == "ok" and sent > first_refusal:
            problems.append(f"{op.msg_id} sent after the drain began was acknowledged")
    d.start()
    result = await verify(d, history, ("busy",))
    return problems + result.problems, result.acked, drain_s


def test_c11_sigterm_drains_cleanly(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    rounds = scale(2, 20)
    for i in range(rounds):
        base = tmp_path / f"r{i}"
        base.mkdir()
        d = DaemonProc(base / "data", base / "s.sock", base / "d.log")
        report = Report(base / "report", d, seed, notes={"round": i})
        try:
            with report.guard():
                d.start()
                problems, acked, drain_s = asyncio.run(_drain_scenario(d, rng))
                report.expect(problems)
                assert d.stop() == 0
        finally:
            d.stop()
        print(f"\nC11 drain round {i}: {acked} acked appends kept, SIGTERM to exit {drain_s:.3f}s")


# -- restart and recovery times ------------------------------------------------------------------


def _interpreter_start() -> float:
    """Start-up of the interpreter plus the daemon's imports, without the daemon's work."""
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", "import chanctl.daemon.server"], check=True)
    return time.monotonic() - t0


def _timed_start(d: DaemonProc, channel: str) -> tuple[float, float]:
    """(exec to health ok, first read of ``channel``): channels are opened, and their tails
    recovered, on first use, so the second figure is the replay of the un-checkpointed tail."""
    t0 = time.monotonic()
    d.start()
    t1 = time.monotonic()
    status, headers, _ = request(str(d.sock), "HEAD", f"/v1/stream/{channel}")
    assert status == 200, headers
    return t1 - t0, time.monotonic() - t1


def _fill(d: DaemonProc, total: int, chunk: int) -> int:
    binary = {"Content-Type": "application/octet-stream"}
    assert request(str(d.sock), "PUT", "/v1/stream/big", headers=binary)[0] == 201
    body = random.Random(0).randbytes(chunk)
    for _ in range(total // chunk):
        status, headers, _ = request(str(d.sock), "POST", "/v1/stream/big", body, binary)
        assert status == 204, status
    return parse_offset(headers["stream-next-offset"])


@pytest.mark.slow
def test_c11_restart_and_recovery_times(tmp_path: Path) -> None:
    """Clean restart < 0.5 s over the interpreter's own start-up; crash recovery of the
    un-checkpointed tail <= 3 s per GiB. Each time is the fastest of its series: on a shared
    machine other processes only ever add time."""
    size = scale(100, 1024) * MiB
    chunk = 256 * 1024
    # One segment for everything, so a crash leaves the whole log as un-checkpointed tail.
    args = ("--segment-bytes", str(2 * size))
    d = DaemonProc(tmp_path / "data", tmp_path / "s.sock", tmp_path / "d.log", "never", args)
    d.start()
    count = _fill(d, size, chunk)
    uncleans = []
    for _ in range(3):
        d.kill9()  # `never` writes tail checkpoints only at a clean stop
        uncleans.append(_timed_start(d, "big"))
    # Interleaved, so a burst of load elsewhere hits both series alike.
    cleans, baselines = [], []
    for _ in range(5):
        assert d.stop() == 0  # clean: writes the tail checkpoint
        baselines.append(_interpreter_start())
        cleans.append(_timed_start(d, "big"))
    assert d.stop() == 0
    baseline = min(baselines)
    empty = DaemonProc(tmp_path / "e", tmp_path / "e.sock", tmp_path / "e.log")
    t_empty = _timed_start_empty(empty)
    empty.stop()
    clean = min(sum(t) for t in cleans)
    replay = min(t[1] for t in uncleans)
    unclean = min(t[0] for t in uncleans) + replay
    per_gib = replay / (size / (1 << 30))
    print(
        f"\nC11 on {size // MiB} MiB ({count} records of {chunk // 1024} KiB): interpreter and "
        f"imports {baseline:.3f}s, empty data dir {t_empty:.3f}s, clean restart {clean:.3f}s "
        f"({clean - baseline:.3f}s over the interpreter), unclean {unclean:.3f}s, of which "
        f"tail replay {replay:.3f}s = {per_gib:.2f}s per GiB"
    )
    assert clean - baseline < 0.5, f"clean restart took {clean - baseline:.3f}s over baseline"
    assert per_gib <= 3.0, f"unclean recovery {per_gib:.2f}s per GiB"


def _timed_start_empty(d: DaemonProc) -> float:
    t0 = time.monotonic()
    d.start()
    return time.monotonic() - t0
