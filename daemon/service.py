"""The Durable Streams service: protocol semantics over any ``ChannelStore``.

``StreamService`` is the one object the HTTP layer talks to. It enforces creation rules, appends
with idempotent producers and Stream-Seq, closure, forks, TTL / Expires-At expiry (lazily on
access and by a periodic sweep) and reads in the shared offset space. It raises ``StreamError``
subclasses (or lets a storage ``StoreError`` through); it never builds HTTP responses.

Example::

    service = StreamService(MemoryStore(), settings)
    await service.start()
    await service.create(CreateRequest("logs/app", content_type="text/plain"))
    await service.append(AppendRequest("logs/app", "text/plain", b"hello"))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from . import appends, lifecycle, reads, retention
from .config import Settings
from .core import ServiceCore
from .errors import NotFound
from .model import (
    AppendRequest,
    AppendResult,
    ChannelInfo,
    Chunk,
    CreateRequest,
    CreateResult,
    Metadata,
)
from .store.base import ChannelState, ChannelStore, ChannelSummary

log = logging.getLogger("chanctl.daemon.service")

SWEEP_INTERVAL_S = 1.0  # how late an idle expired channel may linger (access expires it at once)


class StreamService:
    def __init__(self, store: ChannelStore, settings: Settings) -> None:
        self.core = ServiceCore(store, settings)
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def store(self) -> ChannelStore:
        return self.core.store

    @property
    def settings(self) -> Settings:
        return self.core.settings

    # -- lifecycle of the service itself -------------------------------------------------------

    async def start(self) -> None:
        """Start the expiry and retention sweep (idempotent). The store must be started."""
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="chanctl-sweep")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    # -- writes --------------------------------------------------------------------------------

    async def create(self, req: CreateRequest) -> CreateResult:
        return await lifecycle.create(self.core, req)

    async def append(self, req: AppendRequest) -> AppendResult:
        return await appends.append(self.core, req)

    async def delete(self, name: str) -> None:
        await lifecycle.delete(self.core, name)

    # -- reads ---------------------------------------------------------------------------------

    async def metadata(self, name: str) -> Metadata:
        """HEAD: does not renew a sliding TTL."""
        st = await self.core.lookup(name)
        return Metadata(
            content_type=st.config.content_type,
            next_seq=st.durable_seq,
            first_seq=await reads.first_readable(self.core, st),
            closed=st.durable_closed,
            ttl_s=st.config.ttl_s,
            expires_at=st.config.expires_at,
            fsync_policy=self.store.fsync_policy,
            corrupt_seq=st.corrupt_seq,
            retention=st.config.retention,
        )

    async def open_read(self, name: str, offset: str) -> tuple[ChannelState, int]:
        """Look a channel up for reading and resolve the request's offset. Renews the TTL."""
        st = await self.core.lookup(name)
        self.core.touch(name)
        return st, await reads.resolve_offset(self.core, st, offset)

    async def reopen(self, st: ChannelState) -> ChannelState:
        """The channel's state again after waiting: it may have been deleted meanwhile, or even
        deleted and created anew, which for the waiting reader is the same as gone."""
        now = await self.core.lookup(st.name)
        if now.config.created_at != st.config.created_at:
            raise NotFound(f"channel {st.name!r} was deleted and created again")
        self.core.touch(st.name)
        return now

    async def read(self, st: ChannelState, seq: int, max_bytes: int | None = None) -> Chunk:
        limit = self.settings.limits.read_chunk_bytes if max_bytes is None else max_bytes
        return await reads.read_chunk(self.core, st, seq, limit)

    def tail(self, st: ChannelState) -> Chunk:
        return reads.tail_chunk(st)

    def still_live(self, st: ChannelState) -> bool:
        """For a reader holding ``st`` across a wait: is this incarnation of the channel still
        readable? Engines mark a deleted channel's state object, so no lookup is needed (a
        channel re-created under the same name has a new state object). Renews the TTL."""
        if st.deleted or self.core.expired(st):
            return False
        self.core.touch(st.name)
        return True

    async def wait(self, st: ChannelState, seq: int, timeout: float) -> bool:
        return await reads.wait_for_data(self.core, st, seq, timeout)

    async def channels(self) -> list[ChannelInfo]:
        """Every live channel (not soft-deleted, not expired), sorted by name. Built from store
        summaries: listing never opens a channel, so what only opening can tell may be None."""
        found = sorted(await self.store.summaries(), key=lambda ch: ch.name)
        return [_info(ch) for ch in found if not ch.deleted and not self.core.expired(ch)]

    # -- expiry --------------------------------------------------------------------------------

    async def sweep(self, now: float | None = None) -> None:
        """Expire every channel whose lifetime has ended, accessed or not. Judged on summaries,
        so channels nobody uses stay closed until they actually expire."""
        now = time.time() if now is None else now
        tracked = set(self.core.expiring)
        for ch in await self.store.summaries(tracked):
            tracked.discard(ch.name)
            if ch.deleted:
                self.core.expiring.discard(ch.name)
            elif self.core.expired(ch, now):
                await self.core.expire(ch.name, now)
        self.core.expiring -= tracked  # gone from the store

    async def enforce_retention(self, now: float | None = None) -> None:
        """Apply every channel's retention limits, keeping what live forks still read.

        Under the lineage lock, so that no fork is created between computing the pins and
        dropping segments (a new fork's history must not vanish under it)."""
        now = time.time() if now is None else now
        async with self.core.lineage:
            pins = retention.fork_pins(await self.store.summaries())
            await self.store.enforce_retention(now, pins)

    async def _sweep_forever(self) -> None:
        await self.index_lifetimes()
        last_retention = 0.0
        every = self.settings.retention_interval_s
        while True:
            await asyncio.sleep(min(SWEEP_INTERVAL_S, every))
            now = time.time()
            try:
                await self.sweep(now)
                if now - last_retention >= every:
                    last_retention = now
                    await self.enforce_retention(now)
            except Exception:  # the sweep must outlive any one bad channel
                log.exception("expiry/retention sweep failed; retrying in %.0f s", SWEEP_INTERVAL_S)

    async def index_lifetimes(self) -> None:
        """Learn which existing channels have a TTL or expiry, so idle ones expire too. From
        summaries: only those channels are tracked, and none is opened for it."""
        try:
            found = await self.store.summaries()
        except Exception:
            log.exception("cannot list channels to index their lifetimes")
            return
        for ch in found:
            if not ch.deleted:
                self.core.expired(ch)  # tracks it when it has a lifetime


def _info(ch: ChannelSummary) -> ChannelInfo:
    config = ch.config
    fork = config.fork
    return ChannelInfo(
        name=ch.name,
        content_type=config.content_type,
        next_seq=ch.next_seq,
        size_bytes=ch.size_bytes,
        closed=ch.closed,
        last_write=ch.last_write,
        extra={
            "created_at": config.created_at,
            "ttl_s": config.ttl_s,
            "expires_at": config.expires_at,
            "forked_from": None if fork is None else fork.source,
            "retention": retention.as_json(config.retention),
        },
    )
