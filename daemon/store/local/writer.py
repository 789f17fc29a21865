"""The blocking half of group commit: write one group of records, fsync once, roll segments.

A writer thread (``pipeline``) takes every batch a channel staged since its last group, plans
the group here (``plan_group``) and writes it, so ``write``/``fdatasync`` never block the event
loop. A group is a list of *runs*, one per segment it touches: normally one run on the active
segment; when a batch was staged with a ``Roll`` (the loop decided at submit time that the
active segment is full), a later run creates the next segment first (roll protocol: create the
file, write its STATE header, fsync it and the directory, then write data). The segment being
sealed is fsynced before the new one is created, so what survives a power loss is always a
prefix.

On ENOSPC/EDQUOT everything this group wrote is rolled back (the active segment truncated to
its old size, segments created by the group removed) so no torn record stays behind and appends
can resume once space is freed. Any other error, or a failed rollback, is fatal for the log.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .disk import Disk

log = logging.getLogger("chanctl.store")
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


@dataclass(slots=True)
class Roll:
    """Start a new segment before a batch: its path and STATE records (the pending state as of
    just before the batch, computed on the loop when the batch was staged)."""

    path: str
    state: list[bytes]


class Staged(Protocol):
    """What the writer needs of a staged batch (``staging.Pending``)."""

    @property
    def bufs(self) -> list[bytes]: ...

    @property
    def closes(self) -> bool: ...

    @property
    def roll(self) -> Roll | None: ...


@dataclass
class Run:
    path: str
    fd: int | None  # the pinned active segment; None: this run creates ``path``
    start_size: int  # segment size before the group (0 for a new segment)
    state: list[bytes] = field(default_factory=list)  # STATE records of a new segment
    bufs: list[bytes] = field(default_factory=list)
    items: int = 0  # how many queued batches this run holds
    has_close: bool = False
    sync: bool = False  # fdatasync after writing (always-mode, or sealing before a roll)


@dataclass
class GroupPlan:
    chan_dir: str
    runs: list[Run]
    sync_roll: bool  # roll protocol fsyncs (every policy but ``never``)


@dataclass
class GroupResult:
    new_fds: list[tuple[str, int]] = field(default_factory=list)
    error: OSError | None = None
    phase: str = ""
    full: bool = False  # ENOSPC-like, and everything was rolled back: not fatal


def plan_group(
    chan_dir: str, active: tuple[str, int, int], items: Sequence[Staged], mode: str
) -> GroupPlan:
    """Split staged batches into runs per segment. ``active`` is (path, fd, size) of the
    segment the writer appends to; a batch carrying a Roll starts a run on a new segment."""
    path, fd, size = active
    runs = [Run(path, fd, size)]
    for item in items:
        if item.roll is not None:
            runs.append(Run(item.roll.path, None, 0, item.roll.state))
        run = runs[-1]
        run.bufs += item.bufs
        run.items += 1
        run.has_close = run.has_close or item.closes
    always = mode == "always"
    for i, run in enumerate(runs):
        run.sync = always or (i + 1 < len(runs) and mode != "never")
    return GroupPlan(chan_dir, runs, mode != "never")


def end_of(plan: GroupPlan, result: GroupResult) -> tuple[str, int, int]:
    """(path, fd, size) of the segment the writer appends to after a successful group."""
    last = plan.runs[-1]
    fd = last.fd if last.fd is not None else dict(result.new_fds)[last.path]
    size = last.start_size + sum(map(len, last.state)) + sum(map(len, last.bufs))
    return last.path, fd, size


def write_group_blocking(disk: Disk, plan: GroupPlan) -> GroupResult:
    """Write and (per plan) fsync a group; never raises, failures land in the result."""
    result = GroupResult()
    try:
        for run in plan.runs:
            fd = run.fd if run.fd is not None else _roll(disk, plan, run, result)
            _write_run(disk, fd, run, result)
        result.phase = "ack"
        disk.hit("append.after_fsync_before_ack")
    except OSError as exc:
        result.error = exc
        if exc.errno in _FULL_ERRNOS:
            result.full = _roll_back(disk, plan, result)
        for _, fd in result.new_fds:
            disk.close(fd)
        result.new_fds.clear()
    return result


def _roll(disk: Disk, plan: GroupPlan, run: Run, result: GroupResult) -> int:
    result.phase = "segment roll"
    fd = disk.open_append(run.path, create=True)
    result.new_fds.append((run.path, fd))
    disk.hit("roll.after_create")
    disk.write_all(fd, run.state)
    if plan.sync_roll:
        disk.fdatasync(fd)
    disk.hit("roll.before_dirsync")
    if plan.sync_roll:
        disk.fsync_dir(plan.chan_dir)
    return fd


def _write_run(disk: Disk, fd: int, run: Run, result: GroupResult) -> None:
    if run.bufs:
        result.phase = "write"
        limit = disk.hit("append.before_write")
        disk.write_all(fd, run.bufs, limit)
        disk.hit("append.after_write")
    if run.sync:
        result.phase = "fsync"
        disk.hit("append.before_fsync")
        if run.has_close:
            disk.hit("close.before_fsync")
        disk.fdatasync(fd)


def _roll_back(disk: Disk, plan: GroupPlan, result: GroupResult) -> bool:
    """Undo a group that hit a full disk; False when even that failed (then: fail-stop)."""
    try:
        first = plan.runs[0]
        if first.fd is not None:
            disk.truncate(first.fd, first.start_size)
            disk.fdatasync(first.fd)
        removed = bool(result.new_fds)
        while result.new_fds:
            path, fd = result.new_fds.pop()
            disk.close(fd)
            disk.remove_if_exists(path)
        if removed:
            disk.fsync_dir(plan.chan_dir)
        return True
    except OSError as exc:
        log.error("rolling back a failed append in %s failed too: %s", plan.chan_dir, exc)
        return False


def sync_blocking(disk: Disk, fd: int) -> None:
    """The interval policy's background fsync (same failpoint as a group's fsync)."""
    disk.hit("append.before_fsync")
    disk.fdatasync(fd)
