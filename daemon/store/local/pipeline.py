"""Writer threads: every channel's group commit, pipelined off the event loop.

Why not the store's thread pool: handing each group to an executor and back costs a loop round
trip per commit cycle, and the disk sat idle while the loop resolved the previous group's
futures and planned the next one. Here ``submit`` pushes each staged batch straight into the
channel's ``Pipe``. A writer thread takes everything pushed so far as one group, writes it and
fdatasyncs once, reports to the loop (``call_soon_threadsafe``) and at once takes whatever was
pushed meanwhile, so a cycle costs disk time only while appends keep coming.

A pipe is held by at most one thread at a time (``scheduled``), so a channel's groups reach the
disk, and their reports the loop, in the order the batches were staged; different channels
commit in parallel on up to ``threads`` threads, which start on demand and end when idle.

A failed group poisons its pipe: batches pushed behind it are dropped unwritten. The loop fails
them all, rewinds its pending state, and the next append starts with a fresh pipe.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .disk import Disk
from .writer import (
    GroupPlan,
    GroupResult,
    Staged,
    end_of,
    plan_group,
    sync_blocking,
    write_group_blocking,
)

log = logging.getLogger("chanctl.store")
WRITER_THREADS = 4
IDLE_EXIT_S = 30.0  # a writer thread with nothing to do for this long ends
Active = tuple[str, int, int]  # (path, fd, size) of the segment a channel's writer appends to


@dataclass(slots=True)
class Outcome:
    """What one trip of a writer thread did to a pipe, reported to the loop in order."""

    items: int  # batches written (all of them failed when ``result.error`` is set)
    plan: GroupPlan | None  # None for a background fsync alone
    result: GroupResult
    synced: bool  # the requested background fsync was part of this trip


@dataclass(slots=True)
class _Job:
    items: list[Staged]
    sync: bool
    active: Active


class WriterPool:
    """The writer threads and the queue of pipes waiting for one. ``lock`` guards every pipe's
    hand-off fields; the queue is a SimpleQueue, so handing a pipe over wakes one thread with a
    single futex call and nothing else the loop has to wait for (waking a thread is the costly
    part of a hand-off on a busy machine)."""

    def __init__(self, threads: int = WRITER_THREADS, idle_exit_s: float = IDLE_EXIT_S) -> None:
        self.lock = threading.Lock()
        self._ready: queue.SimpleQueue[Pipe | None] = queue.SimpleQueue()
        self._max = max(1, threads)
        self._idle_exit_s = idle_exit_s
        self._threads = 0
        self._idle = 0  # threads waiting for a pipe (about to, or just woken: approximate)

    def schedule(self, pipe: Pipe) -> None:
        """Hand a pipe to a thread, starting one if none is idle (up to the limit)."""
        self._ready.put(pipe)
        with self.lock:
            start = self._idle == 0 and self._threads < self._max
            self._threads += start
        if start:
            threading.Thread(target=self._serve, name="chanctl-writer", daemon=True).start()

    def close(self) -> None:
        """End every thread (the store drained every log first, so none has work)."""
        with self.lock:
            count = self._threads
        for _ in range(count):
            self._ready.put(None)

    def _next(self) -> Pipe | None:
        """The next pipe with work, waiting for one; None when this thread should end. The
        caller already counted itself idle."""
        try:
            pipe = self._ready.get(timeout=self._idle_exit_s)
        except queue.Empty:
            pipe = None
        with self.lock:
            self._idle -= 1
            if pipe is None:
                self._threads -= 1
        return pipe

    def _serve(self) -> None:
        """A writer thread: serve a pipe trip after trip while it has work (handing it back to
        the queue when other pipes wait), until no pipe comes for a while."""
        with self.lock:
            self._idle += 1
        pipe = self._next()
        while pipe is not None:
            with self.lock:
                job = pipe.take()
            out = pipe.execute(job) if job is not None else None
            with self.lock:  # nothing in here may release the GIL: the loop takes this lock
                if out is not None:
                    pipe.settle(out)  # queued before anyone else can take the pipe
                more = bool(pipe.pending) or pipe.want_sync
                pipe.scheduled = more
                stay = more and self._ready.empty()
                # Idle from here on: once the loop has been told, this thread takes the next
                # pipe, so an append arriving meanwhile needs no new thread.
                self._idle += not stay
            if out is not None:
                pipe.notify_loop()
            if stay:
                continue  # pipelined: straight on with what was pushed during the fsync
            if more:
                self._ready.put(pipe)  # others are waiting: take turns
            pipe = self._next()


class Pipe:
    """One channel's hand-off to the writer threads, from idle to idle.

    The log creates a pipe when appends start (with the end of the active segment and its
    pinned fd) and lets it go when nothing is in flight any more, so idle channels keep none.
    The loop's side (``push``, ``request_sync``) and a thread's (``take``, ``execute``,
    ``settle``) meet under the pool's lock; ``report`` runs on the loop, once per trip, in order.
    ``active`` then belongs to the thread, which advances it as it writes and rolls segments.
    A poisoned pipe does no more I/O: whatever reaches it is dropped.
    """

    __slots__ = (
        "pool",
        "disk",
        "chan_dir",
        "mode",
        "report",
        "loop",
        "pending",
        "want_sync",
        "scheduled",
        "poisoned",
        "active",
        "reports",
    )

    def __init__(
        self,
        pool: WriterPool,
        disk: Disk,
        chan_dir: str,
        mode: str,  # the fsync policy
        active: Active,
        report: Callable[[Outcome], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.pool = pool
        self.disk = disk
        self.chan_dir = chan_dir
        self.mode = mode
        self.active = active
        self.report = report
        self.loop = loop
        self.pending: list[Staged] = []
        self.want_sync = False
        self.scheduled = False
        self.poisoned = False
        self.reports: list[Outcome] = []  # settled trips the loop has not taken yet

    # -- the loop's side ------------------------------------------------------------------------

    def push(self, item: Staged) -> None:
        """Queue a batch for the writer. An idle pipe is handed to a thread only after the
        loop has run what is ready now (``call_soon``): appends that arrive together, such as
        the clients an ack just released, then share one group instead of the first going
        alone. A busy pipe needs no hand-off: its thread takes the batch after its fsync."""
        with self.pool.lock:
            self.pending.append(item)
            if self.scheduled:
                return
            self.scheduled = True
        self.loop.call_soon(self.pool.schedule, self)

    def request_sync(self) -> None:
        """fdatasync the active segment after whatever is pushed so far (interval policy)."""
        with self.pool.lock:
            self.want_sync = True
            if self.scheduled:
                return
            self.scheduled = True
        self.loop.call_soon(self.pool.schedule, self)

    # -- a writer thread's side -----------------------------------------------------------------

    def take(self) -> _Job | None:
        """Everything pushed so far, as one job, or None when there is nothing to do (the
        pool's lock is held)."""
        items, self.pending = self.pending, []
        sync, self.want_sync = self.want_sync, False
        if self.poisoned or not (items or sync):
            return None  # poisoned: the loop fails these, staged behind a failure
        return _Job(items, sync, self.active)

    def execute(self, job: _Job) -> Outcome:
        """Write (and per policy fsync) one job; never raises: failures are reported."""
        if not job.items:
            try:
                sync_blocking(self.disk, job.active[1])
                return Outcome(0, None, GroupResult(phase="ack"), True)
            except OSError as exc:
                return Outcome(0, None, GroupResult(error=exc, phase="background fsync"), True)
        try:
            plan = plan_group(self.chan_dir, job.active, job.items, self.mode)
            if job.sync:
                plan.runs[-1].sync = True
            return Outcome(len(job.items), plan, write_group_blocking(self.disk, plan), job.sync)
        except Exception as exc:  # a bug must not leave submitters waiting forever
            log.exception("%s: appending failed unexpectedly", self.chan_dir)
            err = OSError(errno.EIO, f"internal error: {exc!r}")
            return Outcome(len(job.items), None, GroupResult(error=err, phase="append"), job.sync)

    def settle(self, out: Outcome) -> None:
        """Advance (or poison) the pipe and queue the report (the pool's lock is held)."""
        if out.result.error is not None:
            self.poisoned = True
            self.pending.clear()
            self.want_sync = False
        elif out.plan is not None:
            self.active = end_of(out.plan, out.result)
        self.reports.append(out)

    def notify_loop(self) -> None:
        """Have the loop take the queued reports. Outside the lock, since waking the loop
        writes to its self-pipe (releasing the GIL); reports stay in order whichever thread
        wakes it, as ``_deliver`` takes them from one list."""
        try:
            self.loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            log.debug("%s: a group finished after the event loop closed", self.chan_dir)

    def _deliver(self) -> None:
        with self.pool.lock:
            reports, self.reports = self.reports, []
        for out in reports:
            self.report(out)
