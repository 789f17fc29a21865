"""Live readers waiting on a local channel: a reader that goes away (its client disconnected,
so the daemon cancels it) at the moment a commit wakes every waiter must leave quietly.

Guards against the race the soak test met: the wake-up took the waiter list while the
cancelled reader was still unwinding, whose clean-up then failed to find itself on the list
and turned a disconnect into an ERROR with a traceback.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from .storekit import batch, config, local_store


async def test_readers_cancelled_or_timed_out_as_a_commit_wakes_them(tmp_path: Path) -> None:
    store = local_store(tmp_path)
    await store.start()
    try:
        await store.create("c", config(), batch())
        cancelled = [asyncio.create_task(store.wait("c", 1, 30)) for _ in range(3)]
        timed_out = asyncio.create_task(store.wait("c", 1, 0.05))
        stays = asyncio.create_task(store.wait("c", 1, 30))
        await asyncio.sleep(0.1)  # all wait; the short one's timer has fired
        for task in cancelled:
            task.cancel()
        # The commit's wake-up runs before the cancelled readers resume (white box: the
        # writer thread's own wake-up can land there too, only not on cue).
        (await store._need("c")).wake()
        for task in cancelled:
            with pytest.raises(asyncio.CancelledError):
                await task
        assert await timed_out is False
        assert await stays is True  # woken, as a commit would
        after = asyncio.create_task(store.wait("c", 0, 30))  # and readers are woken on
        await asyncio.sleep(0.01)
        await store.submit("c", batch(b"x"))
        assert await asyncio.wait_for(after, 5) is True
    finally:
        await store.stop()
