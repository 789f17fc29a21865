"""One channel's log: its segments, its pending state and its single writer (style rule 6).

``submit`` runs synchronously on the event loop: it assigns sequence numbers, updates the
*pending* ChannelState (what the service validates the next append against), decides whether the
batch starts a new segment, encodes the record and pushes it into the channel's pipe. A writer
thread (``pipeline``) takes everything pushed so far, writes it with one ``writev`` and one
``fdatasync``, and reports; ``_on_report`` then advances the durable horizon, resolves the
futures in order, feeds the tail cache and wakes waiters. Batches pushed while a group is on its
way to disk form the next group, which the thread starts as soon as the previous fsync returns.

Every queued batch carries an undo entry, so when a group fails the pending state can be rewound
to the durable one exactly. ENOSPC rewinds and lets later appends try again; any other write or
fsync error makes the log fail-stop (no retried fsync is ever followed by an ack: fsyncgate).
Everything here runs on the event loop; methods that need the loop-only invariants say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace

from ..base import AppendBatch, ChannelState, Committed, StorageFailed, StorageFull, StoreError
from .layout import write_checkpoint_blocking
from .pipeline import Outcome, Pipe
from .records import encode_state
from .segment import Segment, segment_name
from .shared import Shared
from .staging import Pending, rewind, stage
from .tail import TailState
from .tailcache import TailCache
from .writer import GroupResult, Roll

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
        self.cache: TailCache | None = None  # once someone follows the channel (watch)
        self._inflight: list[Pending] = []  # pushed, not reported yet; oldest first
        self._pipe: Pipe | None = None  # to the writer threads, while appends are in flight
        self._pin: tuple[str, int] | None = None  # the writer's segment fd, while it may use it
        self._tail = (0, 0, 0)  # (size, base, end seq) of the writer's segment, while pinned
        self._syncing = False  # a background fsync is on its way
        self._idle: asyncio.Future[None] | None = None  # drain() waits for the writer on it
        self._ckpt_task: asyncio.Task[None] | None = None
        self._waiters: list[asyncio.Future[bool]] = []
        self._dirty = False  # written but not fsynced (interval / never)
        self._last_sync = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self.ckpt_at: tuple[str, int] | None = None  # (segment, position) tail.ckpt describes
        self._ckpt_cost = 0  # size of the last checkpoint written

    # -- appends ----------------------------------------------------------------------------

    def submit(self, batch: AppendBatch) -> asyncio.Future[Committed]:
        if self.failed is not None:
            raise type(self.failed)(str(self.failed))
        if self._pin is None:
            try:
                self._start()
            except OSError as exc:
                msg = f"channel {self.state.name!r}: opening the segment failed: {exc.strerror}"
                log.error("%s", msg)
                raise StorageFailed(msg) from exc
        sh = self.shared
        try:
            roll = self._roll_if_full()
            item = stage(self.state, batch, sh.max_record, sh.producer_cap)
        except BaseException:
            self._maybe_idle()
            raise
        size, base, _ = self._tail
        if roll is not None:
            item.roll = roll
            size, base = sum(map(len, roll.state)), item.first_seq
        self._tail = (size + item.size, base, item.next_seq)
        assert self._pipe is not None
        item.future = self._pipe.loop.create_future()
        self._inflight.append(item)
        self._pipe.push(item)
        return item.future

    def _roll_if_full(self) -> Roll | None:
        """A new segment for the next batch when the writer's segment is full (and holds a
        message): its STATE records are the pending state as of just before that batch."""
        size, base, end = self._tail
        if size < self.shared.segment_bytes or end <= base:
            return None
        st = self.state
        path = os.path.join(self.dir, segment_name(st.next_seq))
        state = encode_state(
            st.next_seq, time.time_ns(), st.closed, st.last_stream_seq, st.producers.items()
        )
        return Roll(path, state)

    def _start(self) -> None:
        """Wake the writer from idle: pin the active segment's fd and hand its end over."""
        active = self.segments[-1]
        fd = self.shared.pool.acquire(active.path)
        self._pin = (active.path, fd)
        end = active.end_seq if active.end_seq is not None else active.base
        self._tail = (active.size, active.base, end)
        sh, loop = self.shared, asyncio.get_running_loop()
        tail = (active.path, fd, active.size)
        self._pipe = Pipe(sh.writers, sh.disk, self.dir, sh.mode, tail, self._on_report, loop)

    def _maybe_idle(self) -> None:
        """Once nothing is in flight: unpin the fd, let the pipe go, tell drain()."""
        if self._pin is None or self._inflight or self._syncing:
            return
        self.shared.pool.release(*self._pin)
        self._pin = self._pipe = None
        if self._idle is not None:
            self._idle.set_result(None)
            self._idle = None

    def _on_report(self, out: Outcome) -> None:
        """A writer thread finished a trip (in push order): ack or fail its batches."""
        if out.synced:
            self._syncing = False
        group = self._inflight[: out.items]
        del self._inflight[: out.items]
        if out.result.error is None:
            if group:
                self._committed(group, out.result.new_fds)
        else:
            self._fail(group, out.result)
        self._maybe_idle()
        if self.failed is None:
            self._after_commit()

    def _committed(self, group: list[Pending], new_fds: list[tuple[str, int]]) -> None:
        """The group is on disk (per policy): advance segments and horizon, ack, wake."""
        seg = self.segments[-1]
        pos = seg.size
        cache = self.cache
        if cache is not None and not cache.watched():
            self.cache = cache = None  # nobody follows the channel any more
        for item in group:
            if item.roll is not None:
                self._grow(seg, pos)
                seg = self._roll_to(item, dict(new_fds)[item.roll.path])
                pos = seg.size
            seg.note_record(item.first_seq, pos)
            pos += item.size
            seg.end_seq, seg.last_time = item.next_seq, item.time
            if cache is not None:
                cache.add(item.first_seq, item.next_seq, item.time, item.lengths, item.payload)
        self._grow(seg, pos)
        last = group[-1]
        self.state.durable_seq = last.next_seq
        self.state.durable_closed = last.closed_after
        self._dirty = self._dirty or self.shared.mode != "always"
        for item in group:
            fut = item.future
            if fut is not None and not fut.done():
                fut.set_result(Committed(item.first_seq, item.next_seq, item.closed_after))
        self.wake()

    def _grow(self, seg: Segment, pos: int) -> None:
        self.state.size_bytes += pos - seg.size
        seg.size = seg.durable_size = pos

    def _roll_to(self, item: Pending, fd: int) -> Segment:
        """Seal the active segment; the one the writer created for ``item`` takes over, and
        the writer's pin moves with it."""
        assert item.roll is not None and self._pin is not None
        self.segments[-1].sealed = True
        seg = Segment(item.first_seq, item.roll.path, sum(map(len, item.roll.state)), False)
        seg.indexed = True
        seg.end_seq = seg.base
        self.segments.append(seg)
        self.state.size_bytes += seg.size
        pool = self.shared.pool
        pool.release(*self._pin)
        pool.adopt(seg.path, fd, pinned=True)
        self._pin = (seg.path, fd)
        return seg

    def _fail(self, group: list[Pending], result: GroupResult) -> None:
        """Rewind the pending state and fail this group and everything queued after it.
        Fatal failures (anything but a rolled-back full disk) make the log fail-stop."""
        items, self._inflight = group + self._inflight, []  # the pipe is poisoned: let it go
        if self._syncing:  # dropped behind the failure: still owed
            self._syncing, self._dirty = False, True
        for item in reversed(items):
            rewind(self.state, item.undo)
        err = result.error
        detail = f"{result.phase} failed: {err.strerror if err else 'unknown'}"
        exc_type: type[StoreError]
        if result.full:
            exc_type, msg = StorageFull, f"channel {self.state.name!r}: disk full ({detail})"
            log.warning("%s; the append was rolled back", msg)
        else:
            exc_type = StorageFailed
            msg = f"channel {self.state.name!r}: {detail}; read-only until the daemon restarts"
            self.failed = StorageFailed(msg)
            log.error("%s", msg)
        for item in items:
            if item.future is not None and not item.future.done():
                item.future.set_exception(exc_type(msg))

    def _after_commit(self) -> None:
        """Start a checkpoint or a background fsync when one is due."""
        if self._ckpt_task is None and self._checkpoint_due():
            self._ckpt_task = asyncio.get_running_loop().create_task(self._checkpoint())
        if self._dirty and self.shared.mode == "interval" and not self._syncing:
            if self._sync_due():
                self._request_sync()
            else:
                self._arm_timer()

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
        finally:
            self._ckpt_task = None

    def durable_tail(self) -> TailState:
        """The tail as of the durable horizon: the pending state rewound past queued batches."""
        seg = self.segments[-1]
        view = replace(self.state, producers=dict(self.state.producers))
        for item in reversed(self._inflight):
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
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._syncing and self.failed is None:
            if self._sync_due():
                self._request_sync()
            else:
                self._arm_timer()

    def _request_sync(self) -> None:
        """fdatasync the active segment behind whatever is in flight (interval policy, or at
        stop); an error is fatal, like a group's."""
        self._dirty, self._last_sync = False, time.monotonic()
        if self._pin is None:
            try:
                self._start()
            except OSError as exc:
                self._fail([], GroupResult(error=exc, phase="background fsync"))
                return
        assert self._pipe is not None
        self._syncing = True
        self._pipe.request_sync()

    async def drain(self, final_sync: bool) -> None:
        """Let the writer finish everything in flight; optionally fsync what is unsynced."""
        await self._until_idle()
        while self._ckpt_task is not None:
            await asyncio.shield(self._ckpt_task)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if final_sync and self._dirty and self.failed is None:
            self._request_sync()
            await self._until_idle()

    async def _until_idle(self) -> None:
        while self._pin is not None:
            if self._idle is None:
                self._idle = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._idle)

    # -- waiters ----------------------------------------------------------------------------

    async def wait(self, seq: int, timeout: float, stopping: Callable[[], bool]) -> bool:
        """The timeout settles the same future a commit would (with False): a woken reader
        resumes one loop iteration after the commit, not the two of ``asyncio.wait_for``."""
        st = self.state
        if st.durable_seq > seq or st.durable_closed or st.deleted or stopping():
            return True
        self.watch()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(fut)
        timer = loop.call_later(timeout, _settle, fut, False)
        try:
            return await fut
        finally:
            timer.cancel()
            # Still listed unless wake() took the whole list meanwhile: a reader cancelled
            # (its client left) or timed out can race a commit's wake-up.
            if fut.cancelled() or not fut.result():
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)

    def watch(self) -> None:
        """A reader follows the channel: keep what gets committed next in memory for it."""
        if self.cache is None:
            self.cache = TailCache(self.shared.tail_budget)
        self.cache.watch()

    def wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            _settle(fut, True)

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
        if self.cache is not None:
            self.cache.clear()  # give its share of the store's budget back


def _settle(fut: asyncio.Future[bool], woken: bool) -> None:
    if not fut.done():
        fut.set_result(woken)
