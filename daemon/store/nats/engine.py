"""NatsStore: channels kept in NATS JetStream, shared by every daemon on the same cluster.

One stream per channel (its retention and replication are then per channel, and deleting a
channel is deleting its stream), one record (JetStream message) per group of whole batches,
a KV bucket as the catalog of names and metadata. See the package docs for the mapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from ...config import NatsSettings, Settings
from ..base import (
    AppendBatch,
    ChannelCheck,
    ChannelConfig,
    ChannelExists,
    ChannelMissing,
    ChannelState,
    ChannelSummary,
    Committed,
    RawReadResult,
    ReadResult,
    StorageFailed,
    StoreError,
    summary_of,
)
from ..local.meta import ChannelMeta
from .catalog import Catalog, Entry
from .channel import Chan, Durable
from .conn import Api, connect
from .opener import catch_up, new_state, open_chan, peek_summary, where_of
from .reader import collect, to_messages, to_raw
from .retention import NO_RETENTION, trim
from .shared import Shared
from .sidetable import KvTable, open_tables
from .tail import follow
from .verify import verify_chan
from .writer import kick

if TYPE_CHECKING:
    from nats.aio.client import Client

log = logging.getLogger("chanctl.store.nats")
CHECKPOINT_EVERY = 1000  # records between producer checkpoints (bounds the replay on open)
DRAIN_TIMEOUT_S = 30.0
PEEK_CONCURRENCY = 64
PEEK_TTL_S = 5.0  # summaries of channels open elsewhere: sweeps ask every few seconds


class RecordTooLarge(StoreError):
    """One batch does not fit in a NATS message (the server's ``max_payload``)."""

    status = 413


class NatsStore:
    """ChannelStore over NATS JetStream; see ``base.ChannelStore`` and the package docs."""

    def __init__(self, settings: Settings) -> None:
        if settings.nats is None:
            raise ValueError("NatsStore needs settings.nats")
        self.settings = settings
        self.ns: NatsSettings = settings.nats
        self._nc: Client | None = None
        self._sh: Shared | None = None
        self._catalog: Catalog | None = None
        self._chans: dict[str, Chan] = {}
        self._subs: dict[str, Any] = {}
        self._opening: dict[str, asyncio.Future[Chan | None]] = {}
        self._checkpointing: set[str] = set()
        self._peeks: dict[str, tuple[float, Entry, ChannelSummary]] = {}
        self._stopping = False

    @property
    def fsync_policy(self) -> str:
        """What an acknowledgement means: R>1 means a majority of servers stored it; on R1
        durability is the server's ``sync_interval`` (2 minutes unless configured)."""
        sync = self.ns.server_sync or "unknown"
        return f"nats:R{self.ns.replicas},sync_interval={sync}"

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        nc = self._nc = await connect(self.ns, lambda: self._stopping)
        self._sh = Shared(Api(nc, self.ns), self.ns, on_commit=self._after_commit)
        bucket = f"{self.ns.namespace}_chanctl"
        js = nc.jetstream(timeout=self.ns.request_timeout_s)
        self._catalog = Catalog(js, bucket, self.ns.replicas)
        self._catalog.listener = self._on_catalog
        await self._catalog.start()
        if self.ns.replicas < 3 and self.ns.server_sync != "always":
            log.warning(
                "NATS R%d without sync_interval: always: an OS crash on the NATS host can lose "
                "acknowledged appends (set sync_interval: always, or --replicas 3)",
                self.ns.replicas,
            )
        log.info(
            "store: NATS %s (namespace %s): %d channels, %s",
            ",".join(self.ns.servers), self.ns.namespace, len(self.names()), self.fsync_policy,
        )  # fmt: skip

    async def stop(self) -> None:
        """Let queued appends finish, checkpoint producers, end waiters, disconnect."""
        self._stopping = True
        writers = [c.writer for c in self._chans.values() if c.writer is not None]
        if writers:
            await asyncio.wait(writers, timeout=DRAIN_TIMEOUT_S)
        for name, chan in list(self._chans.items()):
            with contextlib.suppress(Exception):
                if chan.since_checkpoint:
                    await self._checkpoint(name)
            await self._unfollow(name)
            chan.stopping = True
            await chan.wake()
        if self._catalog is not None:
            await self._catalog.stop()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()

    # -- channels -----------------------------------------------------------------------------

    async def create(self, name: str, config: ChannelConfig, initial: AppendBatch) -> ChannelState:
        cat, sh = self._ready()
        if name in cat.entries:
            raise ChannelExists(name)
        _check_size(sh, initial)
        entry = Entry(f"{self.ns.namespace}_ch_{os.urandom(10).hex()}", ChannelMeta(name, config))
        chan = Chan(where_of(entry, self.ns.namespace), new_state(name, entry), Durable(0), 0)
        chan.durable.next = chan.state.next_seq
        chan.caught_up.set()
        await sh.api.add_stream(entry.stream, chan.where.subject)
        try:
            fut = chan.enqueue(initial)
            kick(sh, chan)
            await fut
            await cat.claim(entry)
        except BaseException:
            with contextlib.suppress(Exception):
                await sh.api.delete_stream(entry.stream)
            raise
        self._chans[name] = chan
        await self._follow(name, chan)
        return chan.state

    async def get(self, name: str) -> ChannelState | None:
        chan = self._chans.get(name) or await self._open(name)
        return None if chan is None else chan.state

    def names(self) -> list[str]:
        return [] if self._catalog is None else list(self._catalog.entries)

    async def summaries(self, names: Collection[str] | None = None) -> list[ChannelSummary]:
        cat, sh = self._ready()
        wanted = list(cat.entries) if names is None else [n for n in names if n in cat.entries]
        gate = asyncio.Semaphore(PEEK_CONCURRENCY)

        async def one(name: str) -> ChannelSummary | None:
            chan, entry = self._chans.get(name), cat.entries.get(name)
            if chan is not None:
                return summary_of(chan.state)
            if entry is None:
                return None
            cached = self._peeks.get(name)
            if cached is not None and cached[0] > time.monotonic() and cached[1] is entry:
                return cached[2]
            async with gate:
                try:
                    got = await peek_summary(sh, name, entry)
                except (StoreError, ValueError) as exc:
                    log.error("channel %r: cannot summarise it: %s", name, exc)
                    return None
            self._peeks[name] = (time.monotonic() + PEEK_TTL_S, entry, got)
            return got

        found = await asyncio.gather(*(one(n) for n in wanted))
        return [s for s in found if s is not None]

    async def _open(self, name: str) -> Chan | None:
        """Open a channel once, however many callers ask at the same time."""
        running = self._opening.get(name)
        if running is not None:
            return await asyncio.shield(running)
        cat, sh = self._ready()
        entry = cat.entries.get(name)
        if entry is None:
            return None
        done: asyncio.Future[Chan | None] = asyncio.get_running_loop().create_future()
        self._opening[name] = done
        try:
            chan = await open_chan(sh, cat, name, entry)
            if chan is not None:
                await self._follow(name, chan)
                await catch_up(chan)
                if cat.entries.get(name) is entry or _same_stream(cat.entries.get(name), entry):
                    self._chans[name] = chan
                else:
                    await self._unfollow(name)
                    chan = None
            done.set_result(chan)
            return chan
        except BaseException as exc:
            done.set_exception(exc)
            done.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            del self._opening[name]

    async def _need(self, name: str) -> Chan:
        chan = self._chans.get(name) or await self._open(name)
        if chan is None:
            raise ChannelMissing(name)
        return chan

    async def _follow(self, name: str, chan: Chan) -> None:
        cat, _ = self._ready()
        self._subs[name] = await follow(cat.js, chan, chan.last_sseq)

    async def _unfollow(self, name: str) -> None:
        sub = self._subs.pop(name, None)
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    # -- appends and reads --------------------------------------------------------------------

    def submit(self, name: str, batch: AppendBatch) -> Awaitable[Committed]:
        chan = self._chans.get(name)
        if chan is None or chan.state.deleted:
            raise ChannelMissing(name)
        _, sh = self._ready()
        if self._stopping:
            raise StorageFailed("the store is shutting down")
        if not sh.api.nc.is_connected:
            raise StorageFailed("NATS is unreachable; retry once it is back")
        _check_size(sh, batch)
        fut = chan.enqueue(batch)
        kick(sh, chan)
        return fut

    async def read(
        self, name: str, start_seq: int, max_bytes: int, max_messages: int = 1 << 30
    ) -> ReadResult:
        chan = await self._need(name)
        spans, nxt = await collect(self._ready()[1], chan, start_seq, max_bytes, max_messages)
        return ReadResult(to_messages(spans), nxt, nxt >= chan.state.durable_seq)

    async def read_raw(
        self, name: str, start_seq: int, max_bytes: int, max_messages: int = 1 << 30
    ) -> RawReadResult:
        chan = await self._need(name)
        spans, nxt = await collect(self._ready()[1], chan, start_seq, max_bytes, max_messages)
        data, lengths = to_raw(spans) if spans else (b"", [])
        return RawReadResult(data, lengths, nxt, nxt >= chan.state.durable_seq)

    async def wait(self, name: str, seq: int, timeout: float) -> bool:
        chan = await self._need(name)
        return await chan.wait(seq, timeout)

    async def verify(self, name: str) -> ChannelCheck:
        chan = await self._need(name)
        return await verify_chan(self._ready()[1], chan)

    # -- deletion and metadata ----------------------------------------------------------------

    async def delete(self, name: str) -> None:
        cat, sh = self._ready()
        entry = cat.entries.get(name)
        if entry is None:
            raise ChannelMissing(name)
        await cat.remove(name)
        self._drop(name)
        await self._unfollow(name)
        await sh.api.delete_stream(entry.stream)
        sh.cache.forget(entry.stream)
        with contextlib.suppress(StorageFailed):
            await cat.drop_checkpoint(entry.stream)

    def _drop(self, name: str) -> None:
        """Forget an open channel that is gone (here or through another daemon)."""
        chan = self._chans.pop(name, None)
        if chan is not None:
            chan.state.deleted = True
            chan.fail_all(ChannelMissing(name))
            asyncio.get_running_loop().create_task(chan.wake())

    async def set_deleted(self, name: str, deleted: bool) -> None:
        chan = await self._need(name)
        await self._update_meta(name, deleted=deleted)
        chan.state.deleted = deleted
        await chan.wake()

    async def set_fork_refs(self, name: str, refs: int) -> None:
        chan = await self._need(name)
        await self._update_meta(name, fork_refs=refs)
        chan.state.fork_refs = refs

    async def _update_meta(self, name: str, **changes: Any) -> None:
        cat, _ = self._ready()
        entry = cat.entries.get(name)
        if entry is None:
            raise ChannelMissing(name)
        meta = entry.meta
        new = ChannelMeta(
            meta.name, meta.config, changes.get("deleted", meta.deleted),
            changes.get("fork_refs", meta.fork_refs),
        )  # fmt: skip
        await cat.update(Entry(entry.stream, new))

    def _on_catalog(self, name: str, entry: Entry | None) -> None:
        """Another daemon changed the catalog: follow it in the open channel."""
        chan = self._chans.get(name)
        if chan is None:
            return
        if entry is None or entry.stream != chan.where.stream:
            self._drop(name)
            asyncio.get_running_loop().create_task(self._unfollow(name))
            return
        if (chan.state.deleted, chan.state.fork_refs) != (entry.meta.deleted, entry.meta.fork_refs):
            chan.state.deleted, chan.state.fork_refs = entry.meta.deleted, entry.meta.fork_refs
            asyncio.get_running_loop().create_task(chan.wake())

    # -- retention and checkpoints ------------------------------------------------------------

    async def enforce_retention(
        self, now: float, keep_below: Mapping[str, int] | None = None
    ) -> None:
        cat, sh = self._ready()
        pins = keep_below or {}
        for name, entry in list(cat.entries.items()):
            if entry.meta.config.retention == NO_RETENTION:
                continue
            chan = await self._open_quietly(name)
            if chan is not None:
                await trim(sh, cat, chan, now, pins.get(name, 0))

    async def _open_quietly(self, name: str) -> Chan | None:
        try:
            return self._chans.get(name) or await self._open(name)
        except StoreError as exc:
            log.warning("retention: cannot open channel %r: %s", name, exc)
            return None

    def _after_commit(self, name: str) -> None:
        chan = self._chans.get(name)
        if chan is None or chan.since_checkpoint < CHECKPOINT_EVERY or name in self._checkpointing:
            return
        self._checkpointing.add(name)
        task = asyncio.get_running_loop().create_task(self._checkpoint(name))
        task.add_done_callback(lambda t: self._checkpointing.discard(name))

    async def _checkpoint(self, name: str) -> None:
        chan = self._chans.get(name)
        if chan is None:
            return
        cat, _ = self._ready()
        seq, producers = chan.last_sseq, dict(chan.durable.producers)
        chan.since_checkpoint = 0
        try:
            await cat.save_checkpoint(chan.where.stream, seq, producers)
        except Exception as exc:  # best effort: the next one covers it, and replay is exact
            log.warning("channel %r: producer checkpoint failed: %s", name, exc)

    async def side_tables(self) -> list[KvTable]:
        """The namespace's cursor and producer tables (``sidetable.py``), started; the caller
        stops them before it stops the store."""
        if self._nc is None:
            raise StorageFailed("the NATS store is not started")
        js = self._nc.jetstream(timeout=self.ns.request_timeout_s)
        return await open_tables(js, self.ns.namespace, self.ns.replicas)

    def _ready(self) -> tuple[Catalog, Shared]:
        if self._catalog is None or self._sh is None:
            raise StorageFailed("the NATS store is not started")
        return self._catalog, self._sh


def _check_size(sh: Shared, batch: AppendBatch) -> None:
    size = sum(len(m) + 4 for m in batch.messages)
    if size > sh.max_record:
        raise RecordTooLarge(
            f"a {size}-byte batch exceeds what the NATS server accepts in one message "
            f"({sh.max_record} bytes; raise max_payload in nats-server's config)"
        )


def _same_stream(a: Entry | None, b: Entry) -> bool:
    return a is not None and a.stream == b.stream
