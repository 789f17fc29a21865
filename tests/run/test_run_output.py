"""W6 and W7: the job's output reaches the channel byte for byte, never blocks the job, and
survives a daemon restart mid-run with nothing lost and nothing doubled.

Guards the durable transport of `run` (spool + idempotent producer, reliability.md W6/W7)."""

from __future__ import annotations

import hashlib
import subprocess
import time

import psutil
from clikit import Chanctl
from daemonkit import StartDaemon, TestEnv, wait_for
from runkit import helper, line_count, records, start_run


def _replay_raw(ch: Chanctl, name: str, type_: str) -> bytes:
    run = ch("replay", name, "--type", type_, "--raw", timeout=120)
    assert run.code == 0, run.err
    return run.out


def test_huge_output_neither_deadlocks_nor_changes_a_byte(ch: Chanctl) -> None:
    want_out, want_err = subprocess.run(
        helper("flood.py", "--expect"), capture_output=True, text=True, check=True
    ).stdout.split()
    began = time.monotonic()
    wrapper = start_run(ch, "flood", *helper("flood.py"), opts=("-q",))
    proc, peak = psutil.Process(wrapper.proc.pid), 0
    while wrapper.proc.poll() is None and time.monotonic() - began < 60:
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)  # the RSS sampling interval
    assert wrapper.wait() == 0, wrapper.stderr
    assert time.monotonic() - began < 60
    assert peak < 64 << 20, f"wrapper RSS peaked at {peak >> 20} MiB"
    assert hashlib.sha256(_replay_raw(ch, "flood", "stderr")).hexdigest() == want_err
    assert hashlib.sha256(_replay_raw(ch, "flood", "stdout")).hexdigest() == want_out


def test_partial_lines_and_long_lines_replay_exactly(ch: Chanctl) -> None:
    job = "printf 'prompt> '; sleep 0.5; printf 'answer\\nlast'"
    wrapper = start_run(ch, "partial", "sh", "-c", job, opts=("-q",))
    assert wrapper.wait() == 0, wrapper.stderr
    data = [(r["data"], (r.get("headers") or {}).get("partial")) for r in records("partial")]
    assert ("prompt> ", "1") in data, "an unfinished line is flushed after a short delay"
    assert _replay_raw(ch, "partial", "stdout") == b"prompt> answer\nlast"


def test_daemon_restart_mid_run_loses_and_doubles_nothing(
    start_daemon: StartDaemon, tenv: TestEnv
) -> None:
    daemon = start_daemon(store="local")
    ch = Chanctl(tenv)
    side = tenv.root / "ticker"
    wrapper = start_run(ch, "w7", *helper("ticker.py", 4, side))
    wait_for(lambda: line_count(wrapper.out) >= 300, 20, "the job to get going")
    daemon.stop()  # SIGTERM: the daemon is away for a while
    down_at = line_count(wrapper.out)
    wait_for(lambda: line_count(wrapper.out) >= down_at + 1000, 20, "the job to run on")
    start_daemon(store="local")
    assert wrapper.wait(60) == 0, wrapper.stderr
    count, worst = side.read_text().split()
    assert float(worst) < 0.5, f"the job was blocked on a write for {float(worst):.2f}s"
    ticks = [r["data"] for r in records("w7") if r["type"] == "stdout"]
    assert ticks == [f"tick {i}" for i in range(int(count))], "lost or doubled lines"
    assert [r["type"] for r in records("w7")][-1] == "exit"
