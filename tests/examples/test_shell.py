"""examples/shell: two scripts hand work to each other by channel name with `chanctl pub`
and `chanctl wait`, in a strict order, and sleep while they wait (no polling loop)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from daemonkit import TestEnv
from examplekit import EXAMPLES

COUNT = 3


def _finish(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    """Exit status and CPU seconds of the script with every process it waited for."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{proc.args} did not finish in {timeout}s")
        time.sleep(0.05)


def _cpu_of_one_call(env: dict[str, str], cwd: Path) -> float:
    """What one `chanctl` process costs here (interpreter start-up and imports)."""
    subprocess.run(["chanctl", "pub", "shell-probe", "x"], env=env, cwd=cwd, check=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    probe = ["chanctl", "wait", "shell-probe", "--for", "match=x", "-q"]  # met at once
    subprocess.run(probe, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_hand_off_in_order_without_polling(tenv: TestEnv, ex_env: dict[str, str]) -> None:
    bindir = os.path.dirname(sys.executable)  # where `chanctl` is installed
    env = {**ex_env, "PATH": f"{bindir}:{ex_env['PATH']}", "BUILD_SECONDS": "0.4"}
    log = tenv.root / "handoff.log"
    with open(log, "ab") as out:  # O_APPEND: the two scripts' lines interleave as they happen
        started = time.monotonic()
        reviewer = subprocess.Popen(
            ["bash", str(EXAMPLES / "shell/reviewer.sh"), "job7", str(COUNT)],
            env=env,
            stdout=out,
            stderr=subprocess.PIPE,
            cwd=tenv.root,
        )
        builder = subprocess.Popen(
            ["bash", str(EXAMPLES / "shell/builder.sh"), "job7", str(COUNT)],
            env=env,
            stdout=out,
            stderr=subprocess.PIPE,
            cwd=tenv.root,
        )
        b_code, b_cpu = _finish(builder, 60)
        r_code, r_cpu = _finish(reviewer, 60)
        wall = time.monotonic() - started
    assert (b_code, r_code) == (0, 0), (builder.stderr.read(), reviewer.stderr.read())  # type: ignore[union-attr]

    expected = []
    for i in range(1, COUNT + 1):
        expected += [f"builder: built item-{i}", f"reviewer: reviewing item-{i}"]
        expected += [f"builder: item-{i} approved"]
    expected.append(f"reviewer: all {COUNT} items reviewed")
    assert log.read_text().splitlines() == expected

    # The reviewer spent most of the run waiting for the builder (3 x 0.4 s of "building"
    # alone). Its CPU time is what its 2 x COUNT + 1 chanctl processes cost to start, not a
    # loop spinning while it waited.
    one = _cpu_of_one_call(env, tenv.root)
    calls = 2 * COUNT + 1
    print(
        f"\nwall {wall:.2f}s, cpu: reviewer {r_cpu:.2f}s, builder {b_cpu:.2f}s, one call {one:.3f}s"
    )
    assert r_cpu < calls * one * 1.5 + 0.3
