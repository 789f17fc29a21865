"""C1, C2 and C12 of reliability.md: acknowledged appends survive kill -9, exactly once, in
order, in every fsync mode, and readers following the channels through the crash see each
message once, in order, and (under ``fsync=always``) only what survives it.

Guards against acks sent before the fsync (C1) or before the bytes reach the kernel (C2: a
Python-side buffer would lose them), duplicate appends from idempotent producers that retry
across a crash, torn records served after recovery, offsets that move or name other bytes after
a restart (P6), and readers that skip or repeat messages across a reconnect, or saw data that
the crash then took back.
"""

from __future__ import annotations

import asyncio
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from .daemonproc import DaemonProc
from .history import History
from .killload import (
    CHANNELS,
    JSON,
    PRODUCERS,
    create,
    read_all,
    retry_in_doubt,
    start_publishers,
    verify,
)
from .readers import Tailers
from .report import Report
from .tiers import scale, seconds

__all__ = ["JSON", "read_all"]  # test_failpoints reuses them


@dataclass
class Totals:
    rounds: int = 0
    acked: int = 0
    rereads: int = 0
    reader_msgs: int = 0
    reconnects: int = 0


async def _round(
    d: DaemonProc, rng: random.Random, report: Report, count: int, totals: Totals
) -> None:
    """One kill -9 round: load plus tailers, SIGKILL at a random moment, restart, CHECK."""
    await asyncio.to_thread(d.start)
    for ch in CHANNELS:
        create(d, ch)
    history = report.history = History()
    tailers = Tailers(str(d.sock), CHANNELS)
    tailers.start()
    publishers = start_publishers(d, history, count)
    await asyncio.sleep(rng.uniform(0.05, seconds(1.5, 15.0)))
    before = tailers.snapshot()
    d.kill9()
    in_doubt = await asyncio.gather(*publishers)
    acked = sum(len(history.acked(ch)) for ch in CHANNELS)
    assert 0 < acked < len(PRODUCERS) * count, "the kill must land while appends run"
    await asyncio.to_thread(d.start)
    problems = await retry_in_doubt(d, in_doubt)
    result = await verify(d, history, reread_sample=scale(64, 256))
    problems += result.problems
    problems += await tailers.finish(result.logs, timeout=30)
    if d.fsync == "always":  # durable-only visibility: nothing seen was taken back
        for ch, seen in before.items():
            problems += [
                f"C12 {ch}: a reader saw {m}, gone after the crash"
                for m in sorted(seen - set(result.logs[ch]))
            ]
    report.expect(problems)
    assert d.stop() == 0
    totals.rounds += 1
    totals.acked += result.acked
    totals.rereads += result.rereads
    totals.reader_msgs += sum(len(t.got) for t in tailers.all)
    totals.reconnects += sum(t.reconnects for t in tailers.all)


def kill9_rounds(tmp_path: Path, fsync: str, rounds: int, count: int) -> Totals:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    totals = Totals()
    for i in range(rounds):
        base = tmp_path / f"r{i}"
        base.mkdir()
        d = DaemonProc(base / "data", base / "s.sock", base / "daemon.log", fsync=fsync)
        report = Report(base / "report", d, seed, notes={"round": i, "count": count})
        try:
            with report.guard():
                asyncio.run(_round(d, rng, report, count, totals))
        finally:
            d.stop()
        shutil.rmtree(base)  # passed: tier 2 runs 500 rounds, keep only failures
    print(
        f"\n{fsync}: {totals.rounds} kill -9 rounds, {totals.acked} acknowledged appends "
        f"checked, {totals.rereads} P6 rereads, 10 tailers read {totals.reader_msgs} messages "
        f"with {totals.reconnects} reconnects after errors, seed {seed}"
    )
    return totals


@pytest.mark.slow
def test_c1_kill9_under_concurrent_load(tmp_path: Path) -> None:
    totals = kill9_rounds(tmp_path, "always", scale(20, 500), scale(2500, 25000))
    assert totals.rounds >= 20 and totals.acked > 0 and totals.reader_msgs > 0


@pytest.mark.slow
@pytest.mark.parametrize("fsync", ["never", "interval:500"])
def test_c2_kill9_in_lazy_fsync_modes(tmp_path: Path, fsync: str) -> None:
    """A process crash loses nothing acknowledged even without fsync: acks follow write()."""
    totals = kill9_rounds(tmp_path, fsync, scale(4, 100), scale(2500, 25000))
    assert totals.rounds >= 4 and totals.acked > 0
