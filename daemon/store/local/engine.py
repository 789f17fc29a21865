"""LocalStore: the local-disk ChannelStore (segmented, checksummed, group-committed logs).

Channels are opened lazily (``get`` recovers a channel from disk the first time it is asked
for), segment descriptors live in one bounded pool, and all blocking file I/O runs in the
store's own threads, so 10,000 channels cost neither 10,000 fds nor a stalled event loop.
Durability follows ``settings.fsync``: ``always`` acks after one shared fdatasync per group,
``interval:<ms>`` and ``never`` ack once the bytes are written to the kernel.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor

from ...config import Settings
from ..base import (
    AppendBatch,
    ChannelCheck,
    ChannelConfig,
    ChannelExists,
    ChannelMissing,
    ChannelState,
    ChannelSummary,
    Committed,
    Problem,
    RawReadResult,
    ReadResult,
    Retention,
    StorageFailed,
    StorageFull,
    summary_of,
)
from .channel_log import ChannelLog
from .disk import Disk
from .fdpool import DEFAULT_MAX_FDS, FdPool
from .fsck import verify_log
from .layout import (
    ChannelPeek,
    create_blocking,
    delete_blocking,
    load_blocking,
    peek_channels_blocking,
    scan_root_blocking,
    unlink_segments_blocking,
    write_checkpoints_blocking,
)
from .meta import META_FILE, ChannelMeta, encode_dir_name, meta_to_json
from .producers import DEFAULT_PRODUCER_CAP
from .reader import read_log
from .records import encode_state, max_record_bytes
from .segment import Segment, segment_name
from .shared import Shared
from .staging import stage

log = logging.getLogger("chanctl.store")
_NO_RETENTION = Retention()
_PEEK_BATCH = 256  # channel directories peeked per executor call


class LocalStore:
    """ChannelStore on local disk; see the package docs and ``base.ChannelStore``."""

    def __init__(
        self,
        settings: Settings,
        disk: Disk | None = None,
        *,
        max_open_fds: int = DEFAULT_MAX_FDS,
        producer_cap: int = DEFAULT_PRODUCER_CAP,
        io_threads: int = 8,
    ) -> None:
        """``disk`` swaps the I/O seam (fault-injection tests); the keyword knobs exist for
        tests and the resource budgets, the daemon uses the defaults."""
        self.settings = settings
        self._disk = disk if disk is not None else Disk()
        self._root = os.path.join(os.fspath(settings.data_dir), "channels")
        policy = settings.fsync
        self._shared = Shared(
            disk=self._disk,
            pool=FdPool(self._disk, max_open_fds),
            executor=ThreadPoolExecutor(io_threads, thread_name_prefix="chanctl-store"),
            segment_bytes=settings.segment_bytes,
            max_record=max_record_bytes(settings.limits.max_body_bytes),
            mode=policy.mode,
            interval_s=policy.interval_ms / 1000,
            producer_cap=producer_cap,
        )
        self._sync = policy.mode != "never"
        self._dirs: dict[str, str] = {}  # every channel on disk: name -> directory name
        self._logs: dict[str, ChannelLog] = {}  # the opened ones
        self._opening: dict[str, asyncio.Future[None]] = {}
        self._busy: set[str] = set()  # being created or deleted
        # What the directories of channels not opened yet tell (None: unreadable, logged).
        # Only this daemon writes them and it opens a channel before touching it, so a peek
        # stays true until the channel is opened, which drops it.
        self._peeks: dict[str, ChannelPeek | None] = {}
        self._peek_lock = asyncio.Lock()  # one peek pass at a time: the next reuses its work
        self._meta_lock = asyncio.Lock()
        self._stopping = False

    @property
    def fsync_policy(self) -> str:
        return str(self.settings.fsync)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._dirs = await self._shared.run(scan_root_blocking, self._disk, self._root)
        log.info(
            "store at %s: %d channels, fsync=%s", self._root, len(self._dirs), self.fsync_policy
        )

    async def stop(self) -> None:
        """Drain and fsync every log, wake waiters, write tail checkpoints, close files."""
        self._stopping = True
        tails = []
        for lg in list(self._logs.values()):
            await lg.drain(final_sync=True)
            lg.wake()
            tail = lg.durable_tail()
            if lg.failed is None and lg.ckpt_at != (tail.path, tail.size):
                tails.append((lg.dir, tail))
                lg.ckpt_at = (tail.path, tail.size)
        if tails:
            await self._shared.run(write_checkpoints_blocking, self._disk, tails)
        self._shared.pool.close_all()
        self._shared.writers.close()
        self._shared.executor.shutdown(wait=True)

    # -- channels -----------------------------------------------------------------------------

    async def create(self, name: str, config: ChannelConfig, initial: AppendBatch) -> ChannelState:
        if name in self._dirs or name in self._busy:
            raise ChannelExists(name)
        self._check_running()
        self._busy.add(name)
        try:
            return await self._create(name, config, initial)
        finally:
            self._busy.discard(name)

    async def _create(self, name: str, config: ChannelConfig, initial: AppendBatch) -> ChannelState:
        base = config.fork.seq if config.fork is not None else 0
        dirname = encode_dir_name(name)
        chan_dir = os.path.join(self._root, dirname)
        state = ChannelState(name=name, config=config, first_seq=base, next_seq=base)
        state.durable_seq = base
        lg = ChannelLog(self._shared, chan_dir, state, [])
        item = stage(state, initial, self._shared.max_record, self._shared.producer_cap)
        head = b"".join(encode_state(base, time.time_ns(), False, None, []))
        empty = not (initial.messages or initial.producer or initial.stream_seq or initial.close)
        body = head if empty else b"".join([head, *item.bufs])
        meta = meta_to_json(ChannelMeta(name, config))
        try:
            await self._shared.run(
                create_blocking, self._disk, self._root, dirname, base, meta, body, self._sync
            )
        except FileExistsError:
            raise ChannelExists(name) from None
        except OSError as exc:
            raise _storage_error(f"creating channel {name!r}", exc) from exc
        seg = Segment(base, os.path.join(chan_dir, segment_name(base)), len(body), sealed=False)
        seg.indexed, seg.end_seq, seg.last_time = True, item.next_seq, item.time
        if not empty:
            seg.note_record(item.first_seq, len(head))
        lg.segments.append(seg)
        state.durable_seq, state.durable_closed = item.next_seq, item.closed_after
        state.size_bytes = len(body)
        self._dirs[name] = dirname
        self._logs[name] = lg
        return state

    async def get(self, name: str) -> ChannelState | None:
        lg = self._logs.get(name) or await self._open(name)
        return None if lg is None else lg.state

    def names(self) -> list[str]:
        return list(self._dirs)

    async def summaries(self, names: Collection[str] | None = None) -> list[ChannelSummary]:
        wanted = list(self._dirs) if names is None else [n for n in names if n in self._dirs]
        await self._peek(wanted)
        out: list[ChannelSummary] = []
        for name in wanted:
            lg = self._logs.get(name)
            peek = self._peeks.get(name)
            if lg is not None:
                out.append(summary_of(lg.state))
            elif peek is not None and name in self._dirs:
                out.append(peek.summary())
        return out

    async def _peek(self, names: list[str]) -> None:
        """Learn what the directories of unopened, unpeeked ``names`` tell, in batches spread
        over the store's threads (10,000 channels cost 10,000 small metadata reads, once)."""
        async with self._peek_lock:
            todo = [n for n in names if n not in self._logs and n not in self._peeks]
            batches = [todo[i : i + _PEEK_BATCH] for i in range(0, len(todo), _PEEK_BATCH)]
            dirs = [[os.path.join(self._root, self._dirs[n]) for n in b] for b in batches]
            results = await asyncio.gather(
                *(self._shared.run(peek_channels_blocking, self._disk, d) for d in dirs)
            )
            for batch, found in zip(batches, results, strict=True):
                for name, peek in zip(batch, found, strict=True):
                    self._remember_peek(name, peek)

    def _remember_peek(self, name: str, peek: ChannelPeek | str) -> None:
        if name in self._logs or name not in self._dirs:
            return  # opened or deleted meanwhile: the peek is already stale
        if isinstance(peek, str):
            log.error("channel %r: cannot read its metadata: %s", name, peek)
            self._peeks[name] = None
        else:
            self._peeks[name] = peek

    async def _open(self, name: str) -> ChannelLog | None:
        """Open (recover) a channel once, however many callers ask at the same time."""
        while True:
            lg = self._logs.get(name)
            if lg is not None or name not in self._dirs:
                return lg
            running = self._opening.get(name)
            if running is None:
                break
            await asyncio.shield(running)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._opening[name] = done
        try:
            lg = await self._load(name, self._dirs[name])
            if name in self._dirs:  # not deleted meanwhile
                self._logs[name] = lg
                self._peeks.pop(name, None)  # the live state supersedes it
            return lg
        finally:
            del self._opening[name]
            done.set_result(None)

    async def _load(self, name: str, dirname: str) -> ChannelLog:
        chan_dir = os.path.join(self._root, dirname)
        sh = self._shared
        try:
            meta, rec = await sh.run(
                load_blocking, self._disk, chan_dir, sh.max_record, sh.producer_cap, self._sync
            )
        except (OSError, ValueError) as exc:
            raise StorageFailed(f"channel {name!r} cannot be opened: {exc}") from exc
        segments = []
        for base, path, size, mtime in rec.sealed:
            seg = Segment(base, path, size, sealed=True)
            seg.last_time = mtime
            segments.append(seg)
        tail = rec.tail
        active = Segment(tail.base, tail.path, tail.size, sealed=False)
        active.indexed, active.end_seq, active.last_time = True, tail.end_seq, tail.last_time
        for seq, pos in tail.entries:
            active.note_record(seq, pos)
        segments.append(active)
        state = ChannelState(
            name=name,
            config=meta.config,
            first_seq=segments[0].base,
            next_seq=tail.end_seq,
            durable_seq=tail.end_seq,
            closed=tail.closed,
            durable_closed=tail.closed,
            producers=tail.producers,
            last_stream_seq=tail.stream_seq,
            size_bytes=sum(s.size for s in segments),
            last_write=tail.last_time,
            deleted=meta.deleted,
            fork_refs=meta.fork_refs,
        )
        lg = ChannelLog(sh, chan_dir, state, segments)
        if rec.checkpoint_at is not None:
            lg.ckpt_at = (tail.path, rec.checkpoint_at)
        return lg

    async def _need(self, name: str) -> ChannelLog:
        lg = self._logs.get(name) or await self._open(name)
        if lg is None:
            raise ChannelMissing(name)
        return lg

    # -- appends and reads --------------------------------------------------------------------

    def submit(self, name: str, batch: AppendBatch) -> asyncio.Future[Committed]:
        lg = self._logs.get(name)
        if lg is None:
            raise ChannelMissing(name)
        self._check_running()
        return lg.submit(batch)

    async def read(
        self, name: str, start_seq: int, max_bytes: int, max_messages: int = 1 << 30
    ) -> ReadResult:
        lg = await self._need(name)
        got = await read_log(lg, start_seq, max_bytes, max_messages, raw=False)
        return ReadResult(got.messages, got.next_seq, got.next_seq >= lg.state.durable_seq)

    async def read_raw(
        self, name: str, start_seq: int, max_bytes: int, max_messages: int = 1 << 30
    ) -> RawReadResult:
        lg = await self._need(name)
        got = await read_log(lg, start_seq, max_bytes, max_messages, raw=True)
        data = got.chunks[0] if len(got.chunks) == 1 else b"".join(got.chunks)
        up_to_date = got.next_seq >= lg.state.durable_seq
        return RawReadResult(data, got.lengths, got.next_seq, up_to_date)

    async def wait(self, name: str, seq: int, timeout: float) -> bool:
        lg = await self._need(name)
        return await lg.wait(seq, timeout, lambda: self._stopping)

    async def verify(self, name: str) -> ChannelCheck:
        try:
            lg = await self._need(name)
        except StorageFailed as exc:  # could not even be opened: that is what fsck reports
            out = ChannelCheck(name, os.path.join(self._root, self._dirs.get(name, "")))
            out.corrupt = Problem(None, META_FILE, None, str(exc))
            return out
        return await verify_log(lg)

    # -- deletion and metadata ----------------------------------------------------------------

    async def delete(self, name: str) -> None:
        try:
            lg: ChannelLog | None = await self._need(name)
        except StorageFailed:
            lg = None  # a channel that cannot be opened can still be removed
        dirname = self._dirs.pop(name)
        self._logs.pop(name, None)
        self._peeks.pop(name, None)
        self._busy.add(name)  # no re-create until the old directory is gone
        try:
            if lg is not None:
                await lg.drain(final_sync=False)
                lg.state.deleted = lg.removed = True
                lg.forget_files()
                lg.wake()
            await self._shared.run(delete_blocking, self._disk, self._root, dirname, self._sync)
        except OSError as exc:
            raise _storage_error(f"deleting channel {name!r}", exc) from exc
        finally:
            self._busy.discard(name)

    async def set_deleted(self, name: str, deleted: bool) -> None:
        lg = await self._need(name)
        lg.state.deleted = deleted
        await self._write_meta(lg)
        lg.wake()

    async def set_fork_refs(self, name: str, refs: int) -> None:
        lg = await self._need(name)
        lg.state.fork_refs = refs
        await self._write_meta(lg)

    async def _write_meta(self, lg: ChannelLog) -> None:
        async with self._meta_lock:  # serialize, so the last call's values win on disk
            st = lg.state
            data = meta_to_json(ChannelMeta(st.name, st.config, st.deleted, st.fork_refs))
            path = os.path.join(lg.dir, META_FILE)
            try:
                await self._shared.run(self._disk.write_atomic, path, data, self._sync)
            except OSError as exc:
                raise _storage_error(f"updating {st.name!r} metadata", exc) from exc

    # -- retention ----------------------------------------------------------------------------

    async def enforce_retention(
        self, now: float, keep_below: Mapping[str, int] | None = None
    ) -> None:
        pins = keep_below or {}
        await self._peek(list(self._dirs))
        for name in list(self._dirs):
            if name not in self._logs and not _may_trim(self._peeks.get(name)):
                continue  # nothing it could drop: leave it closed
            try:
                lg = await self._open(name)
            except StorageFailed as exc:  # one broken channel must not stop the others
                log.warning("retention: cannot open channel %r: %s", name, exc)
                continue
            if lg is None:
                continue
            victims = lg.retention_victims(now, pins.get(name, 0))
            if victims:
                lg.drop_segments(victims)
                paths = [seg.path for seg in victims]
                await self._shared.run(
                    unlink_segments_blocking, self._disk, lg.dir, paths, self._sync
                )

    def _check_running(self) -> None:
        if self._stopping:
            raise StorageFailed("the store is shutting down")


def _may_trim(peek: ChannelPeek | None) -> bool:
    """Could retention drop anything from this unopened channel? Not without limits, and not
    with a single segment: the active segment is never dropped. (Most channels have one.)"""
    return peek is not None and peek.segments > 1 and peek.meta.config.retention != _NO_RETENTION


def _storage_error(doing: str, exc: OSError) -> StorageFailed | StorageFull:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(f"{doing}: disk full ({exc.strerror})")
    return StorageFailed(f"{doing}: {exc.strerror or exc}")
