"""State the stream service keeps beside the store, and the lookups every operation shares.

The store owns channel data and the state it must make durable. The service adds what only the
protocol needs: when each channel was last read or written (sliding TTLs), which appends are still
on their way to disk (so a duplicate retry can wait for the original), and one lock that makes
lifecycle changes (create, delete, expiry, fork reference counts) atomic with respect to each
other. Appends never take that lock: they validate and submit without yielding to the event loop,
which is what serializes them per channel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable

from .config import Settings
from .errors import Gone, NotFound
from .expiry import has_lifetime, is_expired
from .store.base import ChannelState, ChannelStore, ChannelSummary, Committed

Lifetime = ChannelState | ChannelSummary  # what expiry needs: name, config, stored times

log = logging.getLogger("chanctl.daemon.service")


class ServiceCore:
    """Shared state and the channel lookups with lazy expiry."""

    def __init__(self, store: ChannelStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.lineage = asyncio.Lock()
        self._access: dict[str, float] = {}
        self._inflight: dict[str, asyncio.Future[Committed]] = {}
        self.expiring: set[str] = set()
        self._kept: set[str] = set()  # expired but quarantined: kept, and said so once
        self.started_at = time.time()

    # -- sliding TTL bookkeeping -------------------------------------------------------------

    def touch(self, name: str, now: float | None = None) -> None:
        """Record a read or write: it renews a sliding TTL (HEAD deliberately does not)."""
        self._access[name] = time.time() if now is None else now

    def last_access(self, st: Lifetime) -> float:
        """When a sliding TTL last renewed. Reads renew it in this process's memory only (the
        engines keep just the last write), so for a channel not touched since the daemon
        started, the start counts as an access: a restart must not expire a channel that was
        being read (its last write may be far older than its TTL). The price: the daemon's
        downtime is not idle time, and each restart gives idle channels up to one more TTL."""
        seen = self._access.get(st.name)
        if seen is not None:
            return seen
        return max(st.last_access, st.last_write or 0.0, st.config.created_at, self.started_at)

    def expired(self, st: Lifetime, now: float | None = None) -> bool:
        if not has_lifetime(st.config):
            return False
        self.expiring.add(st.name)
        return is_expired(st.config, self.last_access(st), time.time() if now is None else now)

    def forget(self, name: str) -> None:
        self._access.pop(name, None)
        self._inflight.pop(name, None)
        self.expiring.discard(name)
        self._kept.discard(name)

    # -- lookups -------------------------------------------------------------------------------

    async def lookup(self, name: str, *, locked: bool = False) -> ChannelState:
        """The live state of a channel a client may use: 404 if absent or expired, 410 if
        soft-deleted (kept only because forks still read its history). Pass ``locked`` when the
        lineage lock is already held (asyncio locks are not re-entrant)."""
        st = await self.store.get(name)
        if st is None:
            raise NotFound(f"channel {name!r} does not exist")
        if not st.deleted and self.expired(st):
            if locked:
                await self.remove_expired_locked(st)
            else:
                await self.expire(name)
            st = await self.store.get(name)
            if st is None:
                raise NotFound(f"channel {name!r} has expired")
        if st.deleted:
            raise Gone(f"channel {name!r} was deleted; only its forks still read its data")
        return st

    async def expire(self, name: str, now: float | None = None) -> None:
        """Delete a channel whose lifetime ended (soft-delete if forks still need it)."""
        async with self.lineage:
            st = await self.store.get(name)
            if st is not None and not st.deleted and self.expired(st, now):
                await self.remove_expired_locked(st)

    async def remove_expired_locked(self, st: ChannelState) -> None:
        """Expiry's ``remove_locked``, except that a quarantined channel is kept: a corrupt
        record must never cost a channel (C6 of reliability.md), `chanctl fsck` needs it, and an
        explicit DELETE still removes it. Quarantine is known once a read met the record."""
        if st.corrupt_seq is None:
            await self.remove_locked(st)
        elif st.name not in self._kept:
            self._kept.add(st.name)
            log.warning(
                "channel %r has expired but is quarantined (corrupt at message %d): kept for "
                "`chanctl fsck`; delete it explicitly to remove it",
                st.name,
                st.corrupt_seq,
            )

    async def remove_locked(self, st: ChannelState) -> None:
        """Delete ``st``: soft when forks read it, else for good, then release the reference it
        held on its own source, cascading up the chain of soft-deleted ancestors that no fork
        needs any more. The lineage lock must be held."""
        if st.fork_refs > 0:
            await self.store.set_deleted(st.name, True)
            return
        await self.store.delete(st.name)
        self.forget(st.name)
        fork = st.config.fork
        while fork is not None:
            src = await self.store.get(fork.source)
            if src is None:
                return
            refs = max(0, src.fork_refs - 1)
            await self.store.set_fork_refs(src.name, refs)
            if refs > 0 or not src.deleted:
                return
            await self.store.delete(src.name)
            self.forget(src.name)
            fork = src.config.fork

    # -- appends in flight ---------------------------------------------------------------------

    def track(self, name: str, pending: Awaitable[Committed]) -> asyncio.Future[Committed]:
        """Remember the latest batch submitted to ``name``; batches commit in order, so once it
        is durable everything submitted before it is too."""
        fut = asyncio.ensure_future(pending)
        self._inflight[name] = fut
        return fut

    def untrack(self, name: str, fut: asyncio.Future[Committed]) -> None:
        if self._inflight.get(name) is fut:
            del self._inflight[name]

    async def settle(self, name: str) -> None:
        """Wait until every append already submitted to ``name`` is durable, so an answer that
        depends on pending state (a duplicate, a closed stream) never gets ahead of the disk."""
        fut = self._inflight.get(name)
        if fut is not None and not fut.done():
            await asyncio.shield(fut)
