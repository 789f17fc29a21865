"""The channel catalog: one JetStream KV bucket shared by every daemon of a namespace.

Key ``c.<hex name>`` holds where a channel lives (its stream) and its ``meta.json`` document
(the same format as the local engine's: config, soft-deleted flag, fork reference count). A
create claims the key with KV ``create`` (atomic: exactly one daemon wins a name), after its
stream and initial record are stored, so a channel is never visible half made. Every daemon
watches the bucket, which keeps ``names()`` (synchronous) current and tells open channels when
another daemon deleted or re-created them.

Key ``k.<stream>`` holds a producer checkpoint of that stream (see ``checkpoint``).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..base import ChannelExists, ProducerState
from ..local.meta import ChannelMeta, encode_dir_name, meta_from_json, meta_to_json
from .conn import unavailable
from .kvwatch import KvFollower, open_bucket

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext
    from nats.js.kv import KeyValue

log = logging.getLogger("chanctl.store.nats")

CHECKPOINT_MAX_BYTES = 512 * 1024  # keep a checkpoint well below any max_payload


@dataclass
class Entry:
    """One catalog value: the channel's stream and its metadata."""

    stream: str
    meta: ChannelMeta

    def encode(self) -> bytes:
        return self.stream.encode() + b"\n" + meta_to_json(self.meta)

    @classmethod
    def decode(cls, data: bytes) -> Entry:
        stream, _, rest = data.partition(b"\n")
        return cls(stream.decode(), meta_from_json(rest))


def channel_key(name: str) -> str:
    return "c." + encode_dir_name(name)


Listener = Callable[[str, "Entry | None"], None]  # name, new entry (None: deleted)


class Catalog:
    def __init__(self, js: JetStreamContext, bucket: str, replicas: int) -> None:
        self.js = js
        self.bucket = bucket
        self.replicas = replicas
        self.entries: dict[str, Entry] = {}
        self._names: dict[str, str] = {}  # key -> name (hashed keys cannot be decoded)
        self._kv: KeyValue | None = None
        self._watch: KvFollower | None = None
        self.listener: Listener = lambda name, entry: None

    @property
    def kv(self) -> KeyValue:
        assert self._kv is not None, "catalog not started"
        return self._kv

    async def start(self) -> None:
        """Open (or create) the bucket and load every entry before returning."""
        self._kv = await open_bucket(self.js, self.bucket, self.replicas)
        self._watch = KvFollower(
            self.js, self.kv, "c.>", lambda u: self._apply(u.key, u.value, u.operation)
        )
        await self._watch.start()

    async def stop(self) -> None:
        if self._watch is not None:
            await self._watch.stop()

    def _apply(self, key: str, value: bytes | None, op: str | None) -> None:
        if op in ("DEL", "PURGE") or not value:
            name = self._names.pop(key, None)
            if name is not None and self.entries.pop(name, None) is not None:
                self.listener(name, None)
            return
        try:
            entry = Entry.decode(value)
        except ValueError as exc:
            log.warning("catalog key %s is not readable: %s", key, exc)
            return
        name = entry.meta.name
        self._names[key] = name
        self.entries[name] = entry
        self.listener(name, entry)

    async def claim(self, entry: Entry) -> None:
        """Register a new channel; ChannelExists if another daemon got the name first."""
        import nats.errors
        import nats.js.errors

        key = channel_key(entry.meta.name)
        try:
            await self.kv.create(key, entry.encode())
        except nats.js.errors.KeyWrongLastSequenceError:
            raise ChannelExists(entry.meta.name) from None
        except (TimeoutError, nats.errors.Error) as exc:
            raise unavailable(exc) from None
        self._names[key] = entry.meta.name
        self.entries[entry.meta.name] = entry

    async def update(self, entry: Entry) -> None:
        await self._call(self.kv.put(channel_key(entry.meta.name), entry.encode()))
        self.entries[entry.meta.name] = entry

    async def remove(self, name: str) -> None:
        key = channel_key(name)
        await self._call(self.kv.delete(key))
        self._names.pop(key, None)
        self.entries.pop(name, None)

    async def _call(self, op: Any) -> Any:
        import nats.errors

        try:
            return await op
        except (TimeoutError, nats.errors.Error) as exc:
            raise unavailable(exc) from None

    # -- producer checkpoints ---------------------------------------------------------------

    async def load_checkpoint(self, stream: str) -> tuple[int, dict[str, ProducerState]]:
        """(stream sequence covered, producers as of it); (0, {}) when there is none."""
        import nats.js.errors

        try:
            got = await self.kv.get("k." + stream)
        except nats.js.errors.NotFoundError:  # never written, or purged
            return 0, {}
        doc = json.loads(got.value or b"{}")
        producers = {
            k: ProducerState(int(v[0]), int(v[1]), float(v[2])) for k, v in doc["p"].items()
        }
        return int(doc["seq"]), producers

    async def save_checkpoint(
        self, stream: str, sseq: int, producers: dict[str, ProducerState]
    ) -> None:
        """Record the producer table as of ``sseq``, unless a newer checkpoint is there.

        The table is what JetStream's own deduplication window cannot give: producer state
        older than two minutes, and older than the records retention removed. A table too big
        for one KV value keeps the producers seen most recently (as the local engine's cap).
        """
        import nats.js.errors

        key = "k." + stream
        newest = sorted(producers.items(), key=lambda kv: kv[1].last_seen, reverse=True)
        table = [(k, [v.epoch, v.seq, v.last_seen]) for k, v in newest]
        data = json.dumps({"seq": sseq, "p": dict(table)}).encode()
        while len(data) > CHECKPOINT_MAX_BYTES and table:
            table = table[: len(table) * 3 // 4]
            data = json.dumps({"seq": sseq, "p": dict(table)}).encode()
        for _ in range(5):
            try:
                cur = await self.kv.get(key)
            except nats.js.errors.NotFoundError:
                cur = None
            if cur is not None and cur.value and json.loads(cur.value)["seq"] >= sseq:
                return
            try:
                if cur is None:
                    await self.kv.create(key, data)
                else:
                    await self.kv.update(key, data, last=cur.revision)
                return
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # another daemon wrote one meanwhile: compare again

    async def drop_checkpoint(self, stream: str) -> None:
        import nats.js.errors

        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self._call(self.kv.purge("k." + stream))
