"""R7 of reliability.md: the soak. Mixed load against the real daemon (local engine, data on
disk, fsync=always) for an hour in tier 2 and 45 s in CI, with every reader cut about every
2 s, mid-response, and resuming from its last Stream-Next-Offset.

Guards against slow leaks that no functional test sees: a task, a descriptor or a buffer left
behind per cut connection, long-poll, SSE stream, deleted channel or refused request; against
ERROR lines caused by ordinary client misbehaviour; and against readers that skip or repeat a
message when they resume. The daemon is sampled from outside (psutil: RSS, fds, threads) and
through ``/v1/health`` (its asyncio task count). After the warm-up the RSS trend must be flat
(tier 2: least-squares slope under 1 MiB per 10 min), fds, threads and tasks must not drift
(median of the first third against the last, within 5% plus a small slack), and once the load
stops and every client has gone, fds and tasks must be back to the idle baseline measured
before the load: a leak of even one task or fd per cut connection (hundreds of cuts in CI)
fails that at once. At the end CHECK P1-P5 runs on every lane and each reader must have seen
its lane's log exactly, with no gap and no duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from daemonkit import http_unix

from .daemonproc import DaemonProc
from .loadkit import MiB
from .report import Report
from .soakload import LANES, Soak
from .tiers import LONG, seconds

DURATION_S = seconds(45, 3600)  # of load, the warm-up included
WARMUP_S = seconds(10, 300)
SAMPLE_S = seconds(0.5, 5)
SLOPE_MAX = 1.0 * MiB  # tier 2: RSS growth per 10 min after the warm-up (least squares)
GROWTH_MAX = 8 * MiB  # tier 1: RSS growth from just after the warm-up to the end of the load
# Server-side ends of live reads, on top of the clients' own cuts; they also bound how long the
# handler of a reader that vanished waits for news before it notices (its "ghost").
DAEMON_ARGS = ("--long-poll-timeout", "2", "--limit", "sse_max_age_s=3")
DRIFT = 0.05  # fds, threads, tasks: last third against first third
SLACK = {"fds": 4, "threads": 3, "tasks": 6}  # absolute, for what one moment has in flight
BACK_SLACK = {"fds": 2, "tasks": 2}  # idle after the load against idle before it
ERROR_LINE = re.compile(r"^\S+ (ERROR|CRITICAL) ", re.MULTILINE)


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the load started
    rss: int
    fds: int
    threads: int
    tasks: int  # asyncio tasks in the daemon, the health request's own included


def take_sample(proc: psutil.Process, sock: Path, t0: float) -> Sample:
    reply = http_unix(sock, "GET", "/v1/health", timeout=30)
    assert reply.status == 200, reply
    with proc.oneshot():
        rss, fds, threads = proc.memory_info().rss, proc.num_fds(), proc.num_threads()
    return Sample(time.monotonic() - t0, rss, fds, threads, int(reply.json()["tasks"]))


class Monitor:
    """Samples the daemon every ``every`` seconds on a thread, beside the asyncio load."""

    def __init__(self, proc: psutil.Process, sock: Path, every: float) -> None:
        self.proc, self.sock, self.every = proc, sock, every
        self.samples: list[Sample] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.t0 = time.monotonic()

    def start(self) -> None:
        self.t0 = time.monotonic()
        self._thread.start()

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join()
        if self.error is not None:  # the daemon died or stopped answering /v1/health
            raise AssertionError(f"sampling failed: {self.error!r}") from self.error
        return self.samples

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.samples.append(take_sample(self.proc, self.sock, self.t0))
            except Exception as exc:
                self.error = exc
                return


def settle(proc: psutil.Process, sock: Path, base: Sample, timeout: float = 15.0) -> Sample:
    """The first idle sample back within the slack of ``base`` (or the last one tried): the
    daemon needs a moment to notice closed connections and end their tasks."""
    deadline = time.monotonic() + timeout
    while True:
        s = take_sample(proc, sock, base.t)
        back = s.fds <= base.fds + BACK_SLACK["fds"] and s.tasks <= base.tasks + BACK_SLACK["tasks"]
        if back or time.monotonic() > deadline:
            return s
        time.sleep(0.1)


def fd_targets(pid: int) -> list[str]:
    out = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            out.append(os.readlink(fd))
    return out


def drift(samples: list[Sample], key: str) -> tuple[float, float, float]:
    """(median of the first third, of the last third, the change allowed)."""
    third = max(1, len(samples) // 3)
    first = statistics.median(getattr(s, key) for s in samples[:third])
    last = statistics.median(getattr(s, key) for s in samples[-third:])
    return first, last, DRIFT * first + SLACK[key]


def cli_env(root: Path, sock: Path) -> dict[str, str]:
    """The environment of the `chanctl tail` processes: this daemon only, never autostart."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANCTL_")}
    xdg = {"RUNTIME_DIR": "run", "DATA_HOME": "data", "STATE_HOME": "state", "CONFIG_HOME": "cfg"}
    for var, name in xdg.items():
        (root / name).mkdir(mode=0o700, parents=True, exist_ok=True)
        env[f"XDG_{var}"] = str(root / name)
    env.update(CHANCTL_URL=f"unix://{sock}", CHANCTL_NO_AUTOSTART="1", PYTHONSAFEPATH="1")
    return env


@dataclass
class Outcome:
    soak: Soak
    base: Sample
    samples: list[Sample]
    end: Sample
    base_fds: list[str]  # what the descriptors are, to name a leak
    end_fds: list[str]
    logs: dict[str, list[str]]
    load_s: float


async def run_soak(d: DaemonProc, seed: int, env: dict[str, str], report: Report) -> Outcome:
    proc = psutil.Process(d.proc.pid if d.proc else 0)
    soak = Soak(d.sock, seed, env)
    report.history = soak.history
    await asyncio.to_thread(soak.prime)
    base = await asyncio.to_thread(take_sample, proc, d.sock, time.monotonic())
    base_fds = fd_targets(proc.pid)
    monitor = Monitor(proc, d.sock, SAMPLE_S)
    monitor.start()
    soak.start()
    await asyncio.sleep(DURATION_S)
    await soak.stop_writers()
    samples = monitor.stop()  # the load is over: what follows is the final check's reading
    load_s = time.monotonic() - monitor.t0
    logs = await soak.finish(timeout=30)
    end = await asyncio.to_thread(settle, proc, d.sock, base)
    return Outcome(soak, base, samples, end, base_fds, fd_targets(proc.pid), logs, load_s)


@pytest.mark.slow
def test_r7_soak_mixed_load_with_random_disconnects(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    d = DaemonProc(
        tmp_path / "data", tmp_path / "s.sock", tmp_path / "daemon.log", extra_args=DAEMON_ARGS
    )
    report = Report(tmp_path / "report", d, seed, notes={"duration_s": DURATION_S})
    try:
        with report.guard():
            d.start()
            out = asyncio.run(run_soak(d, seed, cli_env(tmp_path / "cli", d.sock), report))
            report.expect(out.soak.problems)
            _check_resources(out)
            errors = ERROR_LINE.findall(d.log.read_text(errors="replace"))
            assert not errors, f"{len(errors)} ERROR lines in {d.log}"
    finally:
        d.stop()


def _check_resources(out: Outcome) -> None:
    after = [s for s in out.samples if s.t >= WARMUP_S]
    assert len(after) >= 9, f"only {len(after)} samples after the warm-up"
    fit = statistics.linear_regression([s.t for s in after], [float(s.rss) for s in after])
    per_10min = fit.slope * 600
    growth = statistics.median(s.rss for s in after[-3:]) - statistics.median(
        s.rss for s in after[:3]
    )
    drifts = {key: drift(after, key) for key in ("fds", "threads", "tasks")}
    _print_figures(out, after, per_10min, growth, drifts)
    if LONG:
        assert per_10min < SLOPE_MAX, f"RSS grows {per_10min / MiB:.2f} MiB per 10 min"
    else:
        assert growth < GROWTH_MAX, f"RSS grew {growth / MiB:.1f} MiB after the warm-up"
    for key, (first, last, allowed) in drifts.items():
        assert abs(last - first) <= allowed, f"{key} drifted from {first} to {last} under load"
    for key, slack in BACK_SLACK.items():
        base, end = getattr(out.base, key), getattr(out.end, key)
        new = sorted(set(out.end_fds) - set(out.base_fds)) if key == "fds" else []
        assert end <= base + slack, f"{key}: {end} once idle again, {base} before; new: {new}"


def _print_figures(
    out: Outcome,
    after: list[Sample],
    per_10min: float,
    growth: float,
    drifts: dict[str, tuple[float, float, float]],
) -> None:
    c, readers = out.soak.counts, out.soak.readers
    rss0 = statistics.median(s.rss for s in after[:3])
    load = {k: f"{first:g}..{last:g}" for k, (first, last, _) in drifts.items()}
    print(
        f"\nR7 soak: {out.load_s:.0f} s of load (warm-up {WARMUP_S:.0f} s), "
        f"{len(out.samples)} samples; {c.acked} messages acked in {c.appends} appends "
        f"({c.cut_appends} idempotent appends cut and retried), {c.steers} steering messages, "
        f"{c.churned} channels created/closed/deleted, {c.refused} bad requests refused\n"
        f"readers: {len(readers)} ({c.cli_runs} `chanctl tail` runs), "
        f"{sum(t.reconnects for t in readers)} cuts and resumes, {c.reader_errors} "
        f"connection errors, {sum(len(t.got) for t in readers)} messages read; lanes "
        + ", ".join(f"{lane} {len(out.logs[lane])}" for lane in LANES)
        + f"\nRSS idle {out.base.rss / MiB:.1f} MiB, after warm-up {rss0 / MiB:.1f}, "
        f"end of load {(rss0 + growth) / MiB:.1f} ({growth / MiB:+.2f} MiB), slope "
        f"{per_10min / MiB:+.2f} MiB/10 min; idle before -> load (medians of the first and "
        f"last thirds) -> idle after: fds {out.base.fds} -> {load['fds']} -> {out.end.fds}, "
        f"tasks {out.base.tasks} -> {load['tasks']} -> {out.end.tasks}, threads "
        f"{out.base.threads} -> {load['threads']} -> {out.end.threads}"
    )
