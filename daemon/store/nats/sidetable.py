"""Side tables (``daemon/sidetables.py``) in a JetStream KV bucket shared by the namespace.

One bucket ``<namespace>_chanctl_side``; a table is a key prefix in it (``cursors.``,
``producers.``) and a document is one key ``<prefix>.<hex key>`` whose value is
``{"k": key, "d": doc}`` (long keys are hashed, so the key travels in the value). Every daemon
watches its prefix: ``get`` and ``snapshot`` answer from memory, and a change made through
another daemon reaches ``on_change`` a moment later. Echoes of our own writes, and updates older
than what we already have, are recognised by the KV revision and ignored.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from ...sidetables import ChangeHook, Doc
from ..local.meta import encode_dir_name
from .conn import unavailable
from .kvwatch import KvFollower, open_bucket

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext
    from nats.js.kv import KeyValue

log = logging.getLogger("chanctl.store.nats")


class KvTable:
    shared = True

    def __init__(self, js: JetStreamContext, kv: KeyValue, prefix: str) -> None:
        self.js = js
        self.kv = kv
        self.prefix = prefix
        self.on_change: ChangeHook = lambda key, doc: None
        self._data: dict[str, Doc] = {}
        self._keys: dict[str, str] = {}  # KV key -> table key
        self._rev: dict[str, int] = {}  # KV key -> newest revision known
        self._watch: KvFollower | None = None

    def _kv_key(self, key: str) -> str:
        return f"{self.prefix}.{encode_dir_name(key)}"

    async def start(self) -> None:
        """Load every document, then follow changes until ``stop``."""
        self._watch = KvFollower(
            self.js,
            self.kv,
            f"{self.prefix}.>",
            lambda u: self._apply(u.key, u.value, u.operation, u.revision or 0),
        )
        await self._watch.start()

    async def stop(self) -> None:
        if self._watch is not None:
            await self._watch.stop()

    def _apply(self, kv_key: str, value: bytes | None, op: str | None, rev: int) -> None:
        if rev <= self._rev.get(kv_key, 0):
            return  # our own write coming back, or older than what we have
        self._rev[kv_key] = rev
        if op in ("DEL", "PURGE") or not value:
            key = self._keys.pop(kv_key, None)
            if key is not None and self._data.pop(key, None) is not None:
                self.on_change(key, None)
            return
        try:
            wrapped = json.loads(value)
            key, doc = wrapped["k"], wrapped["d"]
            if not isinstance(key, str) or not isinstance(doc, dict):
                raise ValueError("not a side table document")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("side table key %s is not readable: %s", kv_key, exc)
            return
        self._keys[kv_key] = key
        self._data[key] = doc
        self.on_change(key, doc)

    def get(self, key: str) -> Doc | None:
        return self._data.get(key)

    def snapshot(self) -> dict[str, Doc]:
        return dict(self._data)

    async def put(self, key: str, doc: Doc) -> None:
        kv_key = self._kv_key(key)
        self._keys[kv_key], self._data[key] = key, doc
        data = json.dumps({"k": key, "d": doc}, separators=(",", ":")).encode()
        rev = await self._call(self.kv.put(kv_key, data))
        self._rev[kv_key] = max(self._rev.get(kv_key, 0), int(rev))

    async def delete(self, key: str) -> None:
        kv_key = self._kv_key(key)
        self._keys.pop(kv_key, None)
        if self._data.pop(key, None) is None:
            return
        await self._call(self.kv.delete(kv_key))
        # The delete marker's revision is not returned: its echo comes back once through
        # ``_apply``, finds nothing to remove, and only moves the revision on.

    async def _call(self, op: Any) -> Any:
        import nats.errors

        try:
            return await op
        except (TimeoutError, nats.errors.Error) as exc:
            raise unavailable(exc) from None


async def open_tables(js: JetStreamContext, namespace: str, replicas: int) -> list[KvTable]:
    """The cursor and producer tables of ``namespace``, loaded and followed (in that order)."""
    kv = await open_bucket(js, f"{namespace}_chanctl_side", replicas)
    tables = [KvTable(js, kv, "cursors"), KvTable(js, kv, "producers")]
    for table in tables:
        await table.start()
    return tables
