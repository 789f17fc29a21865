"""Open a KV bucket and mirror part of it in memory: what the catalog and side tables share.

Both keep an in-memory copy of a key range so reads never wait for NATS, and both must have the
whole range loaded before the daemon serves requests (otherwise a channel or cursor another
daemon created would look missing). The watcher delivers the current values, then ``None`` or
an entry with ``delta == 0`` marking "caught up", then live changes.

Only the ``delta == 0`` entry is trustworthy when keys exist: nats-py may send its ``None``
marker before the first entry the server already pushed (it asks the consumer for pending
messages, finds none since they are in flight, and has counted none yet), and a restarted
daemon then answered 404 for existing channels (caught by tests/store/test_store_model.py).
So a ``None`` marker is believed only when no key matched before the watch began.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext
    from nats.js.kv import KeyValue
    from nats.js.manager import JetStreamManager

LOAD_TIMEOUT_S = 30.0


async def open_bucket(js: JetStreamContext, bucket: str, replicas: int) -> KeyValue:
    """Create the bucket, or use the existing one as it is if its settings differ."""
    import nats.js.errors

    try:
        return await js.create_key_value(bucket=bucket, history=1, replicas=replicas)
    except nats.js.errors.BadRequestError:  # exists with other settings: use it as is
        return await js.key_value(bucket)


class KvFollower:
    """Feeds every entry under ``pattern`` to ``apply``: all current ones before ``start``
    returns, then each change until ``stop``."""

    def __init__(
        self, js: JetStreamManager, kv: KeyValue, pattern: str, apply: Callable[[Any], None]
    ) -> None:
        self.js = js
        self.kv = kv
        self.pattern = pattern
        self.apply = apply
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        keys = await self._any_key()  # before watching: a key never disappears (history 1)
        watcher = await self.kv.watch(self.pattern)
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._follow(watcher, ready, keys))
        await asyncio.wait_for(asyncio.shield(ready), LOAD_TIMEOUT_S)

    async def _any_key(self) -> bool:
        """Does any key (or delete marker, which the watcher delivers too) match the pattern?"""
        import nats.js.errors

        status = await self.kv.status()
        stream = status.stream_info.config.name or f"KV_{status.bucket}"
        subject = f"$KV.{status.bucket}.{self.pattern}"
        try:
            await self.js.get_msg(stream, 1, subject, next=True)
        except nats.js.errors.NotFoundError:
            return False
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self, watcher: Any, ready: asyncio.Future[None], keys: bool) -> None:
        try:
            async for update in watcher:
                if update is None:
                    if not keys and not ready.done():
                        ready.set_result(None)
                    continue
                self.apply(update)
                if update.delta == 0 and not ready.done():
                    ready.set_result(None)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()
