"""Producer liveness: which `chanctl run` drives each channel, and whether it is still there.

A wrapper *attaches* before it starts its job (``PUT /v1/producer/NAME`` without an epoch) and
then heartbeats by repeating the request with the epoch it was given. Liveness is decided when
someone asks, not by a timer: an attached producer whose last heartbeat is older than its own
``ttl`` is reported ``lost``. So a wrapper killed with SIGKILL shows as lost at most ``ttl``
seconds later, with no background task in the daemon.

Each attach of a new run hands out the next *epoch* for the channel's run producer
(``chanctl.protocol.RUN_PRODUCER_ID``). The wrapper appends with that Producer-Epoch, so the
Durable Streams producer rules fence an older wrapper the moment the new one writes (403), and
its heartbeats are refused too (409 ``fenced``). Epochs must never go backwards, so the registry
is persisted in a side table (``daemon/sidetables.py``) and an attach also takes the store's own
producer epoch into account. On the local engines the table is one small JSON file, rewritten on
attach and detach, never on heartbeats. On NATS it is shared by every daemon of the namespace,
and heartbeats are written too: a daemon counts a producer as seen when it last heard of it,
directly or through the table, so no clocks are compared across machines.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .sidetables import Doc, SideTable

log = logging.getLogger("chanctl.daemon.liveness")

MIN_TTL_S, MAX_TTL_S = 0.5, 3600.0


class Busy(Exception):
    """Another live run is attached and the new one did not ask to take over."""

    def __init__(self, current: dict[str, Any]) -> None:
        super().__init__("a live producer is attached")
        self.current = current


class Fenced(Exception):
    """A heartbeat or detach from a run that a newer run has replaced."""


@dataclass(frozen=True)
class Claim:
    """What a wrapper says about itself when it attaches or heartbeats."""

    run_id: str
    pid: int
    host: str
    ttl: float
    takeover: bool = False
    epoch: int | None = None  # None: a new run attaching; else the epoch it was given

    @classmethod
    def from_json(cls, doc: object) -> Claim:
        """Validate a request body; raises ValueError naming the bad field."""
        if not isinstance(doc, dict):
            raise ValueError("expected a JSON object")
        run_id, pid, host = doc.get("run_id"), doc.get("pid"), doc.get("host", "")
        ttl, epoch = doc.get("ttl", 15.0), doc.get("epoch")
        if not isinstance(run_id, str) or not 0 < len(run_id) <= 100:
            raise ValueError("'run_id' must be a non-empty string of at most 100 characters")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise ValueError("'pid' must be a positive integer")
        if not isinstance(host, str) or len(host) > 255:
            raise ValueError("'host' must be a string of at most 255 characters")
        if not isinstance(ttl, int | float) or not MIN_TTL_S <= ttl <= MAX_TTL_S:
            raise ValueError(f"'ttl' must be a number of seconds in [{MIN_TTL_S}, {MAX_TTL_S}]")
        if epoch is not None and (not isinstance(epoch, int) or epoch < 0):
            raise ValueError("'epoch' must be a non-negative integer")
        return cls(run_id, pid, host, float(ttl), doc.get("takeover") is True, epoch)


@dataclass
class Attachment:
    """One channel's current (or last) run producer."""

    run_id: str
    epoch: int
    pid: int
    host: str
    since: float  # wall clock, for people
    ttl: float
    state: str = "attached"  # or "exited"
    exit_status: int | None = None
    ended: float | None = None
    last_seen: float = field(default_factory=time.monotonic)  # not persisted

    def alive(self, now: float) -> bool:
        return self.state == "attached" and now - self.last_seen <= self.ttl

    def describe(self, now: float) -> dict[str, Any]:
        doc = asdict(self)
        doc["last_seen"] = time.time() - (now - self.last_seen)
        if self.state == "attached" and not self.alive(now):
            doc["state"] = "lost"
        return doc


class Registry:
    """Every channel's run producer, in memory, written through to a side table."""

    def __init__(self, table: SideTable) -> None:
        self.table = table
        self._entries: dict[str, Attachment] = {}
        table.on_change = self._changed

    def load(self) -> None:
        """Take the table's entries; a producer attached before a restart gets a fresh ``ttl``
        to show up again, then counts as lost. An unreadable entry is skipped (its epochs then
        restart from the store's producer state, which is enough to keep them increasing)."""
        for name, doc in self.table.snapshot().items():
            entry = _from_doc(name, doc)
            if entry is not None:
                self._entries[name] = entry

    def _changed(self, name: str, doc: Doc | None) -> None:
        """Another daemon attached, heartbeat or detached a run (shared tables only)."""
        entry = None if doc is None else _from_doc(name, doc)
        if entry is None:
            self._entries.pop(name, None)
        else:
            self._entries[name] = entry  # last_seen: now, when we heard of it

    def describe(self, name: str) -> dict[str, Any] | None:
        entry = self._entries.get(name)
        return None if entry is None else entry.describe(time.monotonic())

    async def attach(self, name: str, claim: Claim, store_epoch: int) -> dict[str, Any]:
        """Attach a new run (raises Busy) or record a heartbeat (raises Fenced)."""
        now = time.monotonic()
        current = self._entries.get(name)
        if claim.epoch is not None or (current is not None and current.run_id == claim.run_id):
            # a heartbeat, or an attach retried after a restart
            doc = self._heartbeat(name, current, claim, now)
            if self.table.shared:  # other daemons learn that the run is alive
                await self._persist(name)
            return doc
        if current is not None and current.alive(now) and not claim.takeover:
            raise Busy(current.describe(now))
        epoch = max(current.epoch if current else 0, store_epoch) + 1
        entry = Attachment(claim.run_id, epoch, claim.pid, claim.host, time.time(), claim.ttl)
        self._entries[name] = entry
        await self._persist(name)
        return entry.describe(now)

    def _heartbeat(
        self, name: str, current: Attachment | None, claim: Claim, now: float
    ) -> dict[str, Any]:
        if current is None and claim.epoch is not None:
            # The registry forgot the run (file lost): trust the epoch it was given.
            current = Attachment(claim.run_id, claim.epoch, claim.pid, claim.host, time.time(), 0)
            if self.table.shared:
                self._entries[name] = current
        if current is None or current.run_id != claim.run_id or current.state != "attached":
            raise Fenced(f"run {claim.run_id!r} is no longer this channel's producer")
        current.last_seen, current.ttl, current.pid = now, claim.ttl, claim.pid
        return current.describe(now)

    async def detach(self, name: str, run_id: str, exit_status: int | None) -> None:
        current = self._entries.get(name)
        if current is None or current.run_id != run_id:
            raise Fenced(f"run {run_id!r} is not this channel's producer")
        current.state, current.exit_status, current.ended = "exited", exit_status, time.time()
        await self._persist(name)

    async def drop(self, name: str) -> None:
        """Forget a deleted channel's producer."""
        if self._entries.pop(name, None) is not None:
            await self.table.delete(name)

    async def _persist(self, name: str) -> None:
        entry = self._entries.get(name)
        if entry is None:
            await self.table.delete(name)
        else:
            await self.table.put(name, {k: v for k, v in asdict(entry).items() if k != "last_seen"})


def _from_doc(name: str, doc: Doc) -> Attachment | None:
    try:
        return Attachment(**{k: v for k, v in doc.items() if k != "last_seen"})
    except (TypeError, ValueError) as exc:
        log.error("ignoring unreadable producer entry of %r: %s", name, exc)
        return None
