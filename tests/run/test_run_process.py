"""W2-W5: the wrapper as a process supervisor. Signals are forwarded exactly once, `stop` ends
the whole process group, a killed wrapper takes its job along and is reported lost, and
orphans are reaped. Guards the promises of reliability.md W2-W5."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
from clikit import Chanctl
from daemonkit import TestEnv, wait_for
from runkit import client, helper, line_count, of_type, start_run, wait_record

FORWARDED = ("SIGUSR1", "SIGTERM", "SIGUSR2", "SIGHUP", "SIGINT", "SIGWINCH")


def _ready(name: str) -> None:
    wait_record(name, lambda r: r["type"] == "stdout" and r["data"] in ("ready", "up"))


def _logged(log: Path) -> Counter[str]:
    return Counter(line.split()[0] for line in log.read_text().splitlines())


def test_signals_to_the_wrapper_reach_the_job_exactly_once(ch: Chanctl, tenv: TestEnv) -> None:
    log = tenv.root / "signals.log"
    wrapper = start_run(ch, "sig", *helper("signals.py", log, len(FORWARDED)), opts=("-q",))
    _ready("sig")
    for n, name in enumerate(FORWARDED, 1):
        sent = time.monotonic()
        os.kill(wrapper.proc.pid, getattr(signal, name))
        wait_for(lambda: line_count(log) >= n, 5, f"{name} to reach the job")  # noqa: B023
        got, at = log.read_text().splitlines()[-1].split()
        assert got == name and float(at) - sent < 0.5, f"{name} took {float(at) - sent:.3f}s"
    assert wrapper.wait() == 0, wrapper.stderr
    assert _logged(log) == Counter(FORWARDED), "each signal must arrive exactly once"


def test_ctrl_c_on_a_terminal_is_delivered_once(ch: Chanctl, tenv: TestEnv) -> None:
    """The terminal signals the wrapper's process group; the job has its own, so it gets the
    forwarded SIGINT only, not a second one straight from the terminal."""
    import pty

    log = tenv.root / "tty.log"
    master, slave = pty.openpty()
    # setsid + TIOCSCTTY (in a tiny exec shim): the pty becomes the wrapper's controlling
    # terminal, with the wrapper's group in the foreground, as in an interactive shell.
    shim = (
        "import fcntl,os,sys,termios;os.setsid();fcntl.ioctl(0,termios.TIOCSCTTY,0);"
        "os.execvp(sys.argv[1],sys.argv[1:])"
    )
    argv = ch.argv("run", "tty", "-q", "--", *helper("signals.py", log, 1))
    proc = subprocess.Popen(
        [sys.executable, "-c", shim, *argv],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=ch.env(),
        cwd=tenv.root,
    )
    os.close(slave)
    try:
        _ready("tty")
        os.write(master, b"\x03")  # Ctrl-C
        assert proc.wait(20) == 0
    finally:
        os.close(master)
    assert _logged(log) == Counter({"SIGINT": 1})


def test_stop_kills_the_whole_group(ch: Chanctl) -> None:
    job = "sleep 1000 & sleep 1000 & echo up; wait"
    wrapper = start_run(ch, "grp", "sh", "-c", job, opts=("-q", "--stop-timeout", "5s"))
    _ready("grp")
    family = psutil.Process(wrapper.proc.pid).children(recursive=True)
    assert len(family) >= 3  # sh and its two sleeps
    began = time.monotonic()
    assert ch("send", "grp", "stop", "--wait").code == 0
    assert time.monotonic() - began < 5, "TERM alone must have ended it, no SIGKILL needed"
    assert wrapper.wait() == 128 + signal.SIGTERM
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_stop_escalates_to_sigkill_after_the_timeout(ch: Chanctl) -> None:
    job = "trap '' TERM; sleep 1000 & echo up; wait"
    wrapper = start_run(ch, "stubborn", "sh", "-c", job, opts=("-q", "--stop-timeout", "1s"))
    _ready("stubborn")
    family = psutil.Process(wrapper.proc.pid).children(recursive=True)
    began = time.monotonic()
    assert ch("send", "stubborn", "stop", "--wait").code == 0
    assert 0.9 < time.monotonic() - began < 10
    assert wrapper.wait() == 128 + signal.SIGKILL
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_a_killed_wrapper_takes_its_job_along_and_shows_as_lost(ch: Chanctl) -> None:
    job = "sleep 1000 & sleep 1000 & echo up; wait"
    wrapper = start_run(ch, "w4", "sh", "-c", job, opts=("-q", "--heartbeat", "0.3s"))
    _ready("w4")
    group = _job_group("w4")
    assert len(group) == 3  # sh and its two sleeps
    first = client().producer("w4")
    assert (first["state"], first["pid"]) == ("attached", wrapper.proc.pid)
    os.kill(wrapper.proc.pid, signal.SIGKILL)
    wrapper.wait()
    # The death signal ends sh; the group guard sends the rest of the group SIGTERM.
    gone, alive = psutil.wait_procs(group, timeout=2)
    assert not alive, f"left behind: {alive}"
    wait_for(lambda: client().producer("w4")["state"] == "lost", 5, "the producer to be lost")
    assert "lost (pid" in ch.ok("info", "w4").text
    assert "lost (pid" in ch.ok("ls").text
    again = start_run(ch, "w4", "true")  # a lost producer needs no --takeover
    assert again.wait() == 0, again.stderr
    epochs = [json.loads(r["data"])["epoch"] for r in of_type("w4", "start")]
    assert epochs == [first["epoch"], first["epoch"] + 1]


def test_a_live_producer_is_replaced_only_with_takeover(ch: Chanctl) -> None:
    first = start_run(ch, "tk", "sh", "-c", "echo up; exec sleep 1000", opts=("-q",))
    _ready("tk")
    refused = ch("run", "tk", "--", "true")
    assert refused.code == 125 and "already has a live producer" in refused.err
    took = start_run(ch, "tk", "sh", "-c", "echo took over", opts=("--takeover", "--no-close"))
    assert took.wait() == 0, took.stderr
    os.kill(first.proc.pid, signal.SIGTERM)  # the old job ends; its exit record is fenced
    assert first.wait() == 128 + signal.SIGTERM
    assert "fenced" in first.stderr
    assert [r["data"] for r in of_type("tk", "exit")] == ["0"]


def test_orphans_are_reaped_and_waited_for(ch: Chanctl) -> None:
    wrapper = start_run(ch, "w5", *helper("orphans.py", 100, 0.5), opts=("-q",))
    parent = psutil.Process(wrapper.proc.pid)
    first_seen: dict[int, float] = {}
    orphans: set[int] = set()
    deadline = time.monotonic() + 30
    while wrapper.proc.poll() is None and time.monotonic() < deadline:
        now = time.monotonic()
        for proc in _children(parent):
            orphans.add(proc.pid)
            if _is_zombie(proc):
                age = now - first_seen.setdefault(proc.pid, now)
                assert age < 0.2, f"zombie {proc.pid} left unreaped for {age:.2f}s"
        time.sleep(0.02)  # the sampling interval of this check
    assert wrapper.wait() == 0, wrapper.stderr
    assert len(orphans) >= 50, "the orphans were re-parented to the wrapper"
    assert not [pid for pid in orphans if psutil.pid_exists(pid)]


def _job_group(name: str) -> list[psutil.Process]:
    """Every process in the job's process group (its leader's pid is in the start record)."""
    leader = json.loads(of_type(name, "start")[0]["data"])["pid"]
    return [p for p in psutil.process_iter() if _pgid(p.pid) == leader]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children()
    except psutil.NoSuchProcess:
        return []


def _is_zombie(proc: psutil.Process) -> bool:
    try:
        return bool(proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
