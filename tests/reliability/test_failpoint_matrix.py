"""C4 of reliability.md: the daemon dies (``panic``, exit 137) at the k-th hit of each named
failpoint, for ``fsync=always`` and ``fsync=interval``, and CHECK holds after the restart.

Each failpoint has a driver: a workload that reaches it many times through the daemon's HTTP
API (appends and segment rolls from four publishers on 1 KiB segments; channel creation;
append-and-close; retention on small segments; the tail checkpoints of a clean shutdown; torn
tails repaired when channels are opened). ``k`` is random in 1..50 from a logged seed, so the
crash lands at a different step of the workload each run. Every run asserts the panic fired
(exit status 137: the point was reached), so a driver that stops reaching its point fails
instead of passing vacuously, and a new failpoint without a driver fails the coverage test.

Guards against: a crash between a segment's creation and its directory fsync losing or
corrupting the log, a half-created channel, a close that outlives its final message, retention
leaving holes, a torn checkpoint or metadata file after a crash mid-replace, and recovery that
cannot itself survive a crash halfway through repairing a torn tail.
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from chanctl.daemon.store.local.disk import FAILPOINT_NAMES

from .daemonproc import DaemonProc, request, scratch
from .history import History
from .killload import CHANNELS, CLIENT_ERRORS, JSON, append, session, start_publishers, verify
from .report import Report
from .tiers import scale

MODES = ("always", "interval:20")  # a short interval, so its background fsync runs often
SMALL_SEGMENTS = ("--segment-bytes", "1024")  # a roll every ~15 appends
MAX_K = 50
MANY = 60  # channels for the one-hit-per-channel drivers (more than MAX_K)

Drive = Callable[[DaemonProc, History], Coroutine[Any, Any, list[str]]]


@dataclass(frozen=True)
class Driver:
    drive: Drive  # runs against the armed daemon; returns the channels to CHECK afterwards
    args: tuple[str, ...] = SMALL_SEGMENTS
    prepare: Callable[[DaemonProc, History], list[str]] | None = None  # before arming
    closes: bool = False  # the driver closes its channels with message ``w<i>:1``


async def _publishers(d: DaemonProc, history: History) -> list[str]:
    """Four publishers on two channels until the daemon dies (or 10,000 appends)."""
    async with session(d) as s:
        for ch in CHANNELS:
            async with s.put(f"http://d/v1/stream/{ch}", headers=JSON) as r:
                assert r.status == 201, await r.text()
    await asyncio.gather(*start_publishers(d, history, 2500))
    return list(CHANNELS)


async def _creates(d: DaemonProc, history: History) -> list[str]:
    """Create channels (one append each) until a create crashes the daemon."""
    made: list[str] = []
    async with session(d) as s:
        for i in range(MANY):
            ch = f"fp-{i}"
            op = history.invoke(f"w{i}:0", ch)
            try:
                async with s.put(f"http://d/v1/stream/{ch}", headers=JSON) as r:
                    await r.read()
                    made.append(ch)
                    assert r.status == 201, r.status
                await append(s, op, None, 0)
            except CLIENT_ERRORS:
                op.status = "info"
                break
    return made


async def _closes(d: DaemonProc, history: History) -> list[str]:
    """Channels that get one message, then a final message that closes them."""
    made: list[str] = []
    async with session(d) as s:
        for i in range(MANY):
            ch = f"fp-{i}"
            async with s.put(f"http://d/v1/stream/{ch}", headers=JSON) as r:
                await r.read()
            made.append(ch)
            for n in range(2):
                op = history.invoke(f"w{i}:{n}", ch)
                try:
                    await append(s, op, f"w{i}", n, close=n == 1)
                except CLIENT_ERRORS:
                    op.status = "info"
                    return made
    return made


async def _shutdown_checkpoints(d: DaemonProc, history: History) -> list[str]:
    """Touch many channels, then stop cleanly: each gets its tail checkpoint replaced."""
    made = await _creates(d, history)
    assert d.proc is not None
    d.proc.send_signal(signal.SIGTERM)
    return made


def _torn_tails(d: DaemonProc, history: History) -> list[str]:
    """Channels with one message each, then 24 zero bytes after each log's end (a torn
    write the next open must truncate)."""
    made = asyncio.run(_creates(d, history))
    assert d.stop() == 0
    for chan_dir in sorted((d.data_dir / "channels").iterdir()):
        last = max(chan_dir.glob("*.log"))
        with open(last, "ab") as f:
            f.write(bytes(24))
    return made


async def _open_all(d: DaemonProc, history: History) -> list[str]:
    """Read every channel, so each is opened (and its torn tail repaired) in turn."""
    async with session(d) as s:
        for i in range(MANY):
            try:
                async with s.get(f"http://d/v1/stream/fp-{i}?offset=-1") as r:
                    await r.read()
            except CLIENT_ERRORS:
                break
    return [f"fp-{i}" for i in range(MANY)]


RETENTION = (*SMALL_SEGMENTS, "--max-messages", "20", "--retention-interval", "0.02")

DRIVERS: dict[str, Driver] = {
    "append.before_write": Driver(_publishers),
    "append.after_write": Driver(_publishers),
    "append.before_fsync": Driver(_publishers),
    "append.after_fsync_before_ack": Driver(_publishers),
    "roll.after_create": Driver(_publishers),
    "roll.before_dirsync": Driver(_publishers),
    "create.before_dirsync": Driver(_creates),
    "close.before_fsync": Driver(_closes, closes=True),
    "retention.after_unlink_before_dirsync": Driver(_publishers, RETENTION),
    "meta.before_replace": Driver(_shutdown_checkpoints),
    "recovery.before_truncate": Driver(_open_all, prepare=_torn_tails),
}
# Under interval a close is written without an fsync of its own (like every append), so the
# close-only step before that fsync does not exist there.
UNREACHABLE = {("close.before_fsync", "interval:20")}
CASES = [
    (name, mode) for name in sorted(DRIVERS) for mode in MODES if (name, mode) not in UNREACHABLE
]


# Points outside the daemon: ``chanctl fsck --repair`` works on a stopped daemon's directory
# (its crash test lives with the fsck tests).
NOT_IN_DAEMON = {"fsck.before_truncate"}


def test_c4_every_failpoint_has_a_driver() -> None:
    assert set(DRIVERS) | NOT_IN_DAEMON == FAILPOINT_NAMES


async def _check_after(
    d: DaemonProc, history: History, channels: list[str], closes: bool
) -> list[str]:
    """CHECK every channel that exists; a channel whose create was acknowledged must exist,
    and a closed channel must hold its final message (C9's rule, here at any failpoint)."""
    present, problems = [], []
    for ch in channels:
        status, headers, _ = request(str(d.sock), "HEAD", f"/v1/stream/{ch}")
        if status == 404:
            if history.acked(ch):
                problems.append(f"{ch}: acknowledged writes, but the channel is gone")
            continue
        present.append(ch)
        final = [o for o in history.ops if o.channel == ch and o.msg_id.endswith(":1")]
        if closes and final:  # closed iff the final message is there
            closed = headers.get("stream-closed") == "true"
            if final[0].status == "ok" and not closed:
                problems.append(f"{ch}: close acknowledged, channel open after restart")
            problems += await _final_present(d, ch, final[0].msg_id, closed)
    result = await verify(d, history, present, reread_sample=scale(64, 256))
    return problems + result.problems


async def _final_present(d: DaemonProc, ch: str, final: str, closed: bool) -> list[str]:
    async with session(d) as s:
        async with s.get(f"http://d/v1/stream/{ch}?offset=-1") as r:
            has_final = final in await r.json()
    return [] if has_final == closed else [f"{ch}: closed={closed} but final present={has_final}"]


def _one_run(base: Path, report_dir: Path, name: str, mode: str, k: int, seed: int) -> int:
    """Arm ``name=panic@k``, drive until the daemon dies, restart, CHECK; returns acked ops."""
    driver = DRIVERS[name]
    base.mkdir()
    d = DaemonProc(base / "data", base / "s.sock", base / "daemon.log", mode, driver.args)
    spec = f"{name}=panic@{k}"
    history = History()
    report = Report(report_dir, d, seed, history, spec)
    with report.guard():
        try:
            if driver.prepare is not None:
                d.start()
                driver.prepare(d, history)
            d.start(env={"CHANCTL_FAILPOINTS": spec})
            channels = asyncio.run(driver.drive(d, history))
            assert d.wait_exit(30) == 137, f"{spec}: the daemon did not panic (never reached)"
            d.start()
            report.expect(asyncio.run(_check_after(d, history, channels, driver.closes)))
            assert d.stop() == 0
        finally:
            d.stop()
    return sum(1 for o in history.ops if o.status == "ok")


@pytest.mark.slow
@pytest.mark.parametrize(("name", "mode"), CASES)
def test_c4_panic_at_kth_hit(tmp_path: Path, name: str, mode: str) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    runs = scale(2, 20)
    ks = [rng.randint(1, MAX_K) for _ in range(runs)]
    with scratch(tmp_path) as base:
        acked = sum(
            _one_run(base / f"run{i}", tmp_path / f"report{i}", name, mode, k, seed)
            for i, k in enumerate(ks)
        )
    print(f"\nC4 {name} {mode}: {runs} panics at k={ks}, {acked} acked ops checked, seed {seed}")
