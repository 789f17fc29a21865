"""Signals to the job's process group that can never reach a recycled pid (reliability.md W3).

A pid, and a process group id, is only a number: once the process is reaped the kernel may hand
the number to a stranger, and ``killpg`` would signal the stranger's group. The rule:

1. **While the leader is unreaped, its group id is ours.** The job's leader is the wrapper's
   own child, and Linux frees a pid number only when no process uses it any more, as pid or as
   group id; an unreaped leader (running or a zombie) keeps it. A pidfd opened right after the
   spawn says whether the leader is still unreaped (``pidfd_send_signal(fd, 0)`` fails once it
   is reaped), and ``/proc/PID/stat``'s start time, recorded at spawn, must still match. The
   wrapper reaps only while holding ``lock``, and signals the group only while holding it
   too, so the leader cannot be reaped between that check and the ``killpg``.
2. **Once the leader is reaped, the group id is never used again.** Its members may live on
   (a shell's background jobs), but the number may also have been taken by then. They are
   signalled one by one instead: each process in ``/proc`` whose group is the job's and whose
   parent chain leads up to the wrapper (a subreaper: the job's orphans are re-parented to it,
   so all of the job's processes stay below it). Each is opened as a pidfd, its start time
   checked again through ``/proc`` (the pidfd pins the process, so the check and the signal
   are about the same one), then signalled through the pidfd. A process that holds the group's
   number as its pid after the leader was reaped proves the number was recycled: then nobody
   is signalled. New members forked meanwhile are caught by repeating the scan a few rounds.

``choose`` is the pure decision (a table of ``/proc`` entries in, whom to signal out), so the
recycled-pid case is tested with a made-up table.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
ROUNDS = 4  # scans per signal once the leader is gone: members forked meanwhile are caught
RESCAN_S = 1.0


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/PID/stat`` that identify a process and place it in the tree."""

    pid: int
    ppid: int
    pgrp: int
    start: int  # clock ticks after boot: with the pid, unique for the machine's uptime


def parse_stat(pid: int, raw: bytes) -> ProcStat | None:
    """Fields 4, 5 and 22 of ``/proc/PID/stat``; the name (field 2) may hold spaces and ``)``."""
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return ProcStat(pid, int(fields[1]), int(fields[2]), int(fields[19]))
    except (IndexError, ValueError):
        return None


def read_stat(pid: int, proc: Path = PROC) -> ProcStat | None:
    try:
        return parse_stat(pid, (proc / str(pid) / "stat").read_bytes())
    except OSError:
        return None


def snapshot(proc: Path = PROC) -> dict[int, ProcStat]:
    """Every process now in ``/proc`` (those that vanish while it is read are left out)."""
    table: dict[int, ProcStat] = {}
    for name in os.listdir(proc):
        if name.isdigit() and (stat := read_stat(int(name), proc)) is not None:
            table[stat.pid] = stat
    return table


@dataclass(frozen=True)
class Target:
    """Whom one signal reaches: the whole group by ``killpg``, else each member by pidfd."""

    group: int | None = None
    members: tuple[ProcStat, ...] = ()


def choose(leader: ProcStat, reaped: bool, table: Mapping[int, ProcStat], wrapper: int) -> Target:
    """The decision of rule 1 and 2 above. ``leader`` is as recorded at spawn, ``reaped`` says
    whether the wrapper has reaped it, ``table`` is ``/proc`` now (for rule 1 only the leader's
    own entry is needed), ``wrapper`` is the wrapper's pid."""
    holder = table.get(leader.pid)
    if holder is not None and holder.start == leader.start and holder.pgrp == leader.pgrp:
        if not reaped:
            return Target(group=leader.pgrp)
    if holder is not None and holder.start != leader.start:
        return Target()  # the number was recycled: the group id is someone else's now
    members = tuple(
        stat
        for stat in table.values()
        if stat.pgrp == leader.pgrp
        and stat.start >= leader.start
        and stat.pid != leader.pid
        and _descends(stat, table, wrapper)
    )
    return Target(members=members)


def _descends(stat: ProcStat, table: Mapping[int, ProcStat], ancestor: int) -> bool:
    seen = 0
    while stat.ppid != ancestor:
        parent = table.get(stat.ppid)
        seen += 1
        if parent is None or seen > len(table):
            return False
        stat = parent
    return True


class JobGroup:
    """The job's process group as the wrapper may signal it: rule 1, else rule 2."""

    def __init__(self, pid: int) -> None:
        """Call right after the spawn, before anything can reap ``pid``."""
        self.pidfd = os.pidfd_open(pid)
        leader = read_stat(pid)
        if leader is None:
            os.close(self.pidfd)
            raise ProcessLookupError(pid)
        self.leader = leader
        self.wrapper = os.getpid()
        self.lock = threading.Lock()  # held while reaping, and from check to killpg
        self._rescan_at = 0.0  # rule 2: when ``alive`` looks at /proc again

    @contextlib.contextmanager
    def reaping(self) -> Iterator[None]:
        """Hold while calling ``waitpid``: no group signal is between its check and its send."""
        with self.lock:
            self._rescan_at = 0.0  # a child went: the group may be empty now
            yield

    def signal(self, signum: int) -> bool:
        """Signal every process of the job; False when none was left to signal."""
        with self.lock:
            target = self._target()
            if target.group is not None:
                return _killpg(target.group, signum)
        return self._each(target, signum)

    def alive(self) -> bool:
        """Is any process of the job's group left (the run waits for it to empty)?

        Once the leader is reaped this costs a scan of ``/proc``, so it is repeated only after
        a child of the wrapper was reaped, or RESCAN_S later: the group's last process is the
        wrapper's child (its parent, if it were alive, would be in the group too), so its end
        is a SIGCHLD; the timer covers a member that joined the group from outside."""
        with self.lock:
            if not self._unreaped() and time.monotonic() < self._rescan_at:
                return True
            target = self._target()
            if target.group is not None:
                return _killpg(target.group, 0)
            self._rescan_at = time.monotonic() + RESCAN_S if target.members else 0.0
        return bool(target.members)

    def _target(self) -> Target:
        """Under ``lock``. Rule 1 costs one ``/proc`` read; rule 2 a scan of ``/proc``."""
        if not self._unreaped():
            return choose(self.leader, True, snapshot(), self.wrapper)
        stat = read_stat(self.leader.pid)  # an unreaped leader is always there, start unchanged
        return choose(self.leader, False, {} if stat is None else {stat.pid: stat}, self.wrapper)

    def _unreaped(self) -> bool:
        try:
            signal.pidfd_send_signal(self.pidfd, 0)
        except ProcessLookupError:
            return False
        return True

    def _each(self, target: Target, signum: int) -> bool:
        done: set[tuple[int, int]] = set()
        for _ in range(ROUNDS):
            fresh = [m for m in target.members if (m.pid, m.start) not in done]
            if not fresh:
                break
            for member in fresh:
                done.add((member.pid, member.start))
                send_checked(member, signum)
            with self.lock:
                target = self._target()  # members only: a reaped leader stays reaped
        return bool(done)


def send_checked(member: ProcStat, signum: int) -> bool:
    """Signal ``member`` through a pidfd, if the process behind it is still that one."""
    try:
        fd = os.pidfd_open(member.pid)
    except ProcessLookupError:
        return False
    try:
        now = read_stat(member.pid)
        if now is None or (now.start, now.pgrp) != (member.start, member.pgrp):
            return False
        signal.pidfd_send_signal(fd, signum)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def _killpg(pgid: int, signum: int) -> bool:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed its credentials (setuid); nothing we can do
        return True
    return True
