"""W3: a signal of `chanctl run` never reaches a recycled pid (chanctl/wrapper/jobgroup.py).

The decision is tested with made-up /proc tables (a recycled leader pid, a stranger in the
job's old group id, members below the wrapper); the signalling with real processes: once the
job's leader is reaped nothing is sent to any pid by number, and through the real wrapper a
signal still reaches the member a job left behind, one by one through a pidfd. The group
guard of a SIGKILLed wrapper leaves a group alone whose leader pid has another start time. The
stop of a whole group by `killpg` while the leader lives is test_run_process.py's W3 tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psutil
import pytest
from clikit import Chanctl
from runkit import start_run, wait_record

from chanctl.wrapper import spawn
from chanctl.wrapper.jobgroup import JobGroup, ProcStat, Target, choose, parse_stat, read_stat

WRAPPER = 500
LEADER = ProcStat(pid=700, ppid=WRAPPER, pgrp=700, start=10_000)


def _table(*stats: ProcStat) -> dict[int, ProcStat]:
    return {s.pid: s for s in stats}


def test_while_the_leader_is_unreaped_the_group_is_signalled_whole() -> None:
    zombie_or_alive = _table(LEADER)
    assert choose(LEADER, False, zombie_or_alive, WRAPPER) == Target(group=700)


def test_a_recycled_leader_pid_gets_no_signal() -> None:
    """pid 700 now belongs to a stranger (another start time) that made group 700 its own."""
    stranger = ProcStat(pid=700, ppid=1, pgrp=700, start=99_000)
    its_child = ProcStat(pid=701, ppid=700, pgrp=700, start=99_100)
    table = _table(ProcStat(WRAPPER, 1, WRAPPER, 5_000), stranger, its_child)
    for reaped in (True, False):  # even if we wrongly believed the leader unreaped
        assert choose(LEADER, reaped, table, WRAPPER) == Target()


def test_after_the_leader_only_our_own_members_are_signalled() -> None:
    orphan = ProcStat(pid=710, ppid=WRAPPER, pgrp=700, start=10_050)  # re-parented to us
    grandchild = ProcStat(pid=711, ppid=710, pgrp=700, start=10_060)
    left_group = ProcStat(pid=712, ppid=710, pgrp=712, start=10_070)  # setsid: not the group's
    # A recycled group 700 whose creator already exited: same pgrp, not below the wrapper.
    foreign = ProcStat(pid=720, ppid=1, pgrp=700, start=99_000)
    older = ProcStat(pid=730, ppid=WRAPPER, pgrp=700, start=9_000)  # before our leader: no
    table = _table(orphan, grandchild, left_group, foreign, older)
    target = choose(LEADER, True, table, WRAPPER)
    assert target.group is None
    assert sorted(m.pid for m in target.members) == [710, 711]


def test_a_reaped_leader_is_never_signalled_by_group_even_if_the_table_is_stale() -> None:
    assert choose(LEADER, True, _table(LEADER), WRAPPER) == Target()


def test_parse_stat_survives_odd_process_names() -> None:
    raw = b"42 (a) b (c) d) S 7 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 123456 0 0\n"
    assert parse_stat(42, raw) == ProcStat(42, 7, 42, 123456)
    assert parse_stat(42, b"42 (x) S 1") is None


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    """Record every signal the code under test sends, and send it for real."""
    calls: list[tuple[str, int, int]] = []

    def wrap(name: str, real: Callable[[int, int], Any]) -> Callable[[int, int], Any]:
        def call(target: int, signum: int) -> Any:
            calls.append((name, target, signum))
            return real(target, signum)

        return call

    monkeypatch.setattr(os, "killpg", wrap("killpg", os.killpg))
    monkeypatch.setattr(os, "kill", wrap("kill", os.kill))
    monkeypatch.setattr(signal, "pidfd_send_signal", wrap("pidfd", signal.pidfd_send_signal))
    return calls


def test_after_the_job_exits_no_signal_is_sent_to_any_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    proc = subprocess.Popen(["sleep", "30"], process_group=0)
    group = JobGroup(proc.pid)
    calls = _spy(monkeypatch)
    assert group.alive() and group.signal(signal.SIGUSR1) is True  # rule 1: killpg, leader ours
    assert ("killpg", proc.pid, signal.SIGUSR1) in calls
    assert proc.wait(5) == -signal.SIGUSR1  # reaped (by Popen): the pid number is free now
    calls.clear()
    assert group.signal(signal.SIGTERM) is False
    assert group.alive() is False
    sent = [c for c in calls if c[0] != "pidfd" or c[2] != 0]
    assert sent == [], f"signals after the job was reaped: {sent}"  # only the pidfd probe
    assert all(c == ("pidfd", group.pidfd, 0) for c in calls)


def test_a_straggler_of_the_job_is_signalled_by_pidfd_through_the_wrapper(
    ch: Chanctl,
) -> None:
    """The leader exits at once; its background sleep keeps the group (and the run) alive. A
    SIGTERM to the wrapper reaches the sleep, though the group id is no longer used."""
    job = "sleep 1000 >/dev/null 2>&1 & echo up"
    wrapper = start_run(ch, "straggler", "sh", "-c", job, opts=("-q",))
    wait_record("straggler", lambda r: r["type"] == "stdout" and r["data"] == "up")
    parent = psutil.Process(wrapper.proc.pid)

    def orphan() -> list[psutil.Process]:
        return [p for p in parent.children() if p.name() == "sleep"]

    deadline = time.monotonic() + 10
    while not orphan() and time.monotonic() < deadline:  # sh exited: sleep is re-parented
        time.sleep(0.02)
    (sleeper,) = orphan()
    assert wrapper.proc.poll() is None  # the run waits for its group to empty
    began = time.monotonic()
    wrapper.proc.send_signal(signal.SIGTERM)
    assert wrapper.wait() == 0, wrapper.stderr  # the job's own status (sh exited 0)
    assert time.monotonic() - began < 5
    assert not sleeper.is_running()


def _guard(pgid: int, born: int) -> None:
    """The group guard as `chanctl run` starts it, acting at once (its 'parent' is gone)."""
    argv = [sys.executable, "-I", "-S", "-c", spawn._GUARD, str(pgid), "-1", str(born), "0.5"]
    subprocess.run(argv, timeout=15, check=True)


def test_the_group_guard_leaves_a_recycled_group_alone() -> None:
    """The guard (for a SIGKILLed wrapper) is told the leader's start time; a process with
    that pid but another start time is a stranger, and so is its group."""
    stranger = subprocess.Popen(["sleep", "30"], process_group=0)
    try:
        stat = read_stat(stranger.pid)
        assert stat is not None
        _guard(stranger.pid, stat.start - 1)  # our leader was born earlier: pid recycled
        assert stranger.poll() is None
        _guard(stranger.pid, stat.start)  # the same process: it is ours, and ended
        assert stranger.wait(5) == -signal.SIGTERM
    finally:
        stranger.kill()
        stranger.wait()
