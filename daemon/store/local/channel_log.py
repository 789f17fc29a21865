"""One channel's log: its segments, its pending state and its single writer (style rule 6).

``submit`` runs synchronously on the event loop: it assigns sequence numbers, updates the
*pending* ChannelState (what the service validates the next append against), encodes the record
and queues it. One writer task per channel (started on demand, gone when idle) takes every
queued record, writes them with one ``writev`` and one ``fdatasync`` in a thread, then advances
the durable horizon, resolves the futures in order and wakes waiters. Records submitted while a
group is on its way to disk form the next group.

Every queued batch carries an undo entry, so when a group fails the pending state can be rewound
to the durable one exactly. ENOSPC rewinds and lets later appends try again; any other write or
fsync error makes the log fail-stop (no retried fsync is ever followed by an ack: fsyncgate).
Everything here runs on the event loop; methods that need the loop-only invariants say so.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace

from ..base import (
    AppendBatch,
    ChannelState,
    Committed,
    StorageFailed,
    StorageFull,
    StoreError,
)
from .layout import write_checkpoint_blocking
from .records import encode_state
from .segment import Segment, segment_name
from .shared import Shared
from .staging import Pending, rewind, stage
from .tail import TailState
from .writer import GroupPlan, GroupResult, Run, sync_blocking, write_group_blocking

log = logging.getLogger("chanctl.store")
CHECKPOINT_EVERY = 4 << 20


class ChannelLog:
    """The open, in-memory side of one channel; see the module docstring."""

    def __init__(
        self, shared: Shared, chan_dir: str, state: ChannelState, segments: list[Segment]
    ) -> None:
        self.shared = shared
        self.dir = chan_dir
        self.state = state
        self.segments = segments  # oldest first; the last one is active
        self.failed: StoreError | None = None
        self.removed = False  # the channel was deleted for good
        self.indexing: dict[str, asyncio.Future[None]] = {}
        self._queue: list[Pending] = []
        self._writer: asyncio.Task[None] | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._dirty = False  # written but not fsynced (interval / never)
        self._last_sync = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self.ckpt_at: tuple[str, int] | None = None  # (segment, position) tail.ckpt describes
        self._ckpt_cost = 0  # size of the last checkpoint written

    # -- appends ----------------------------------------------------------------------------

    def submit(self, batch: AppendBatch) -> asyncio.Future[Committed]:
        if self.failed is not None:
            raise type(self.failed)(str(self.failed))
        sh = self.shared
        item = stage(self.state, batch, sh.max_record, sh.producer_cap)
        item.future = asyncio.get_running_loop().create_future()
        self._queue.append(item)
        self._kick()
        return item.future

    def _kick(self) -> None:
        self._timer = None
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def _write_loop(self) -> None:
        """The channel's single writer: drain the queue group by group, then sync if due.
        Nothing awaits between the last check and clearing ``_writer``, so no submit is
        stranded."""
        try:
            while True:
                if self._queue and self.failed is None:
                    group, self._queue = self._queue, []
                    await self._commit(group)
                    if self._checkpoint_due():
                        await self._checkpoint()
                elif self._sync_due():
                    await self.sync()
                else:
                    break
        finally:
            self._writer = None
        self._arm_timer()

    async def _commit(self, group: list[Pending]) -> None:
        active = self.segments[-1]
        try:
            fd = self.shared.pool.acquire(active.path)
        except OSError as exc:
            self._fail(group, GroupResult(error=exc, phase="opening the segment"), fatal=False)
            return
        try:
            plan = self._plan(group, fd)
            result = await self.shared.run(write_group_blocking, self.shared.disk, plan)
        except Exception as exc:  # a bug must not leave submitters waiting forever
            log.exception("channel %r: appending failed unexpectedly", self.state.name)
            internal = OSError(errno.EIO, f"internal error: {exc!r}")
            self._fail(group, GroupResult(error=internal, phase="append"))
            return
        finally:
            self.shared.pool.release(active.path, fd)
        if result.error is None:
            self._committed(plan, group, result)
        else:
            self._fail(group, result)

    def _plan(self, group: list[Pending], fd: int) -> GroupPlan:
        """Split a group into runs per segment, rolling when the active one is full."""
        active = self.segments[-1]
        runs = [Run(active.path, fd, active.size)]
        cuts: list[int] = []
        size, base, end = active.size, active.base, active.end_seq or active.base
        for i, item in enumerate(group):
            if size >= self.shared.segment_bytes and end > base:
                cuts.append(i)
                size, base = 0, item.first_seq
                runs.append(Run(os.path.join(self.dir, segment_name(base)), None, 0))
            run = runs[-1]
            run.bufs += item.bufs
            run.items += 1
            run.has_close = run.has_close or item.closes
            size, end = size + item.size, item.next_seq
        always = self.shared.mode == "always"
        for i, run in enumerate(runs):
            run.sync = always or (i + 1 < len(runs) and self.shared.mode != "never")
        if cuts:
            self._roll_states(group, runs[1:], cuts)
        return GroupPlan(self.dir, runs, self.shared.mode != "never")

    def _roll_states(self, group: list[Pending], runs: list[Run], cuts: list[int]) -> None:
        """STATE headers for new segments: the pending state rewound to each cut point."""
        view = replace(self.state, producers=dict(self.state.producers))
        stop = len(group)
        now_ns = time.time_ns()
        for cut, run in reversed(list(zip(cuts, runs, strict=True))):
            for item in reversed(group[cut:stop]):
                rewind(view, item.undo)
            stop = cut
            run.state = encode_state(
                view.next_seq, now_ns, view.closed, view.last_stream_seq, view.producers.items()
            )

    def _committed(self, plan: GroupPlan, group: list[Pending], result: GroupResult) -> None:
        """The group is on disk (per policy): advance segments and horizon, ack, wake."""
        new_fds = dict(result.new_fds)
        k = 0
        for run in plan.runs:
            if run.fd is None:
                self.segments[-1].sealed = True
                seg = Segment(group[k].first_seq, run.path, sum(map(len, run.state)), False)
                seg.indexed = True
                seg.end_seq = seg.base
                self.segments.append(seg)
                self.state.size_bytes += seg.size
                self.shared.pool.adopt(run.path, new_fds[run.path])
            seg = self.segments[-1]
            pos = seg.size
            for item in group[k : k + run.items]:
                seg.note_record(item.first_seq, pos)
                pos += item.size
                seg.end_seq, seg.last_time = item.next_seq, item.time
            self.state.size_bytes += pos - seg.size
            seg.size = seg.durable_size = pos
            k += run.items
        self.state.durable_seq = group[-1].next_seq
        self.state.durable_closed = group[-1].closed_after
        self._dirty = self._dirty or self.shared.mode != "always"
        for item in group:
            if item.future is not None and not item.future.done():
                item.future.set_result(Committed(item.first_seq, item.next_seq, item.closed_after))
        self.wake()

    def _fail(self, group: list[Pending], result: GroupResult, fatal: bool = True) -> None:
        """Rewind the pending state and fail this group and everything queued after it.
        Fatal failures (anything but a rolled-back full disk) make the log fail-stop."""
        items = group + self._queue
        self._queue = []
        for item in reversed(items):
            rewind(self.state, item.undo)
        err = result.error
        detail = f"{result.phase} failed: {err.strerror if err else 'unknown'}"
        exc_type: type[StoreError]
        if result.full:
            exc_type, msg = StorageFull, f"channel {self.state.name!r}: disk full ({detail})"
            log.warning("%s; the append was rolled back", msg)
        elif not fatal:
            exc_type, msg = StorageFailed, f"channel {self.state.name!r}: {detail}"
            log.error("%s", msg)
        else:
            exc_type = StorageFailed
            msg = f"channel {self.state.name!r}: {detail}; read-only until the daemon restarts"
            self.failed = StorageFailed(msg)
            log.error("%s", msg)
        for item in items:
            if item.future is not None and not item.future.done():
                item.future.set_exception(exc_type(msg))

    # -- checkpoints --------------------------------------------------------------------------

    def _checkpoint_due(self) -> bool:
        """Refresh tail.ckpt every CHECKPOINT_EVERY durable bytes (and never spend more than
        a quarter of the written bytes on it, for channels with huge producer tables). Only
        under ``always``: other policies' bytes are not durable when the writer is here."""
        if self.shared.mode != "always" or self.failed is not None:
            return False
        active = self.segments[-1]
        done = self.ckpt_at[1] if self.ckpt_at and self.ckpt_at[0] == active.path else 0
        return active.size - done >= max(CHECKPOINT_EVERY, 4 * self._ckpt_cost)

    async def _checkpoint(self) -> None:
        tail = self.durable_tail()
        try:
            self._ckpt_cost = await self.shared.run(
                write_checkpoint_blocking, self.shared.disk, self.dir, tail
            )
            self.ckpt_at = (tail.path, tail.size)
        except OSError as exc:  # only a cache: the next start replays more, that is all
            log.warning("channel %r: checkpoint not written: %s", self.state.name, exc)

    def durable_tail(self) -> TailState:
        """The tail as of the durable horizon: the pending state rewound past queued batches."""
        seg = self.segments[-1]
        view = replace(self.state, producers=dict(self.state.producers))
        for item in reversed(self._queue):
            rewind(view, item.undo)
        return TailState(
            base=seg.base,
            path=seg.path,
            size=seg.durable_size,
            end_seq=seg.end_seq if seg.end_seq is not None else seg.base,
            entries=seg.index_entries(),
            producers=view.producers,
            stream_seq=view.last_stream_seq,
            closed=view.closed,
            last_time=seg.last_time,
        )

    # -- fsync policy -----------------------------------------------------------------------

    def _sync_due(self) -> bool:
        if not self._dirty or self.shared.mode != "interval" or self.failed is not None:
            return False
        return time.monotonic() - self._last_sync >= self.shared.interval_s

    def _arm_timer(self) -> None:
        if self._dirty and self.shared.mode == "interval" and self._timer is None:
            delay = max(0.0, self.shared.interval_s - (time.monotonic() - self._last_sync))
            self._timer = asyncio.get_running_loop().call_later(delay, self._kick)

    async def sync(self) -> None:
        """fdatasync the active segment (interval policy, or at stop); errors are fatal."""
        self._dirty, self._last_sync = False, time.monotonic()
        path = self.segments[-1].path
        try:
            fd = self.shared.pool.acquire(path)
            try:
                await self.shared.run(sync_blocking, self.shared.disk, fd)
            finally:
                self.shared.pool.release(path, fd)
        except OSError as exc:
            self._fail([], GroupResult(error=exc, phase="background fsync"))

    async def drain(self, final_sync: bool) -> None:
        """Let the writer finish every queued group; optionally fsync what is unsynced."""
        while self._writer is not None:
            await asyncio.shield(self._writer)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if final_sync and self._dirty and self.failed is None:
            await self.sync()

    # -- waiters ----------------------------------------------------------------------------

    async def wait(self, seq: int, timeout: float, stopping: Callable[[], bool]) -> bool:
        st = self.state
        if st.durable_seq > seq or st.durable_closed or st.deleted or stopping():
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)

    def wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    # -- retention ----------------------------------------------------------------------------

    def retention_victims(self, now: float, keep_below: int = 0) -> list[Segment]:
        """Oldest sealed segments beyond the channel's limits, oldest first. A segment goes
        only if what remains still satisfies every size/count limit (never keep less than a
        limit asks for), or if its newest message is older than max_age; and never if it holds
        a message below ``keep_below`` (history a fork still reads)."""
        ret = self.state.config.retention
        if ret.max_age_s is None and ret.max_bytes is None and ret.max_messages is None:
            return []
        if self.state.corrupt_seq is not None:
            return []  # quarantined: keep every segment as evidence for `chanctl fsck` (C6)
        total_bytes = sum(s.size for s in self.segments)
        total_msgs = self.state.durable_seq - self.segments[0].base
        out: list[Segment] = []
        for seg, nxt in zip(self.segments, self.segments[1:], strict=False):
            if seg.base < keep_below:
                break
            msgs = nxt.base - seg.base
            old = ret.max_age_s is not None and now - seg.last_time > ret.max_age_s
            big = ret.max_bytes is not None and total_bytes - seg.size >= ret.max_bytes
            many = ret.max_messages is not None and total_msgs - msgs >= ret.max_messages
            if not (old or big or many):
                break
            out.append(seg)
            total_bytes -= seg.size
            total_msgs -= msgs
        return out

    def drop_segments(self, victims: list[Segment]) -> None:
        """Forget retention victims now, so reads below the new first_seq get ChannelGone."""
        del self.segments[: len(victims)]
        self.state.first_seq = max(self.state.first_seq, self.segments[0].base)
        for seg in victims:
            self.state.size_bytes -= seg.size
            self.shared.pool.forget(seg.path)

    def forget_files(self) -> None:
        for seg in self.segments:
            self.shared.pool.forget(seg.path)
