"""Both clients follow the shared reconnect policy (``chanctl._reconnect``) against a real
daemon: a 503 (the daemon's live-reader cap is full) is waited out while ``reconnect_timeout``
lasts and handed back as RequestFailed(503) once it is spent; a daemon that went away becomes
ConnectionLost after ``reconnect_timeout``. The unit tests in test_reconnect_policy.py pin the
schedule; this proves that both clients' I/O loops obey it."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from daemonkit import StartDaemon, TestEnv, http_unix, wait_for

import chanctl
from chanctl.errors import ConnectionLost, RequestFailed

HOLD_S = 0.6  # how long the reader ahead keeps the only live-reader slot


class SyncReader:
    def __init__(self, url: str) -> None:
        self.c = chanctl.Client(url, autostart=False)

    def tail_now(self, channel: str, budget: float) -> list[str]:
        self.c.reconnect_timeout = budget
        return [m.text or "" for m in self.c.tail(channel, start="now")]

    def info(self, channel: str, budget: float) -> object:
        self.c.reconnect_timeout = budget
        return self.c.info(channel)

    def close(self) -> None:
        self.c.disconnect()


class AsyncReader:
    """The same calls on an ``AsyncClient``, each awaited on one event loop kept across calls."""

    def __init__(self, url: str) -> None:
        self.runner = asyncio.Runner()
        self.c = chanctl.AsyncClient(url, autostart=False)

    def tail_now(self, channel: str, budget: float) -> list[str]:
        self.c.reconnect_timeout = budget

        async def read() -> list[str]:
            return [m.text or "" async for m in self.c.tail(channel, start="now")]

        return self.runner.run(read())

    def info(self, channel: str, budget: float) -> object:
        self.c.reconnect_timeout = budget
        return self.runner.run(self.c.info(channel))

    def close(self) -> None:
        self.runner.run(self.c.aclose())
        self.runner.close()


@pytest.mark.parametrize("kind", [SyncReader, AsyncReader], ids=["sync", "async"])
def test_503_is_waited_out_then_reported_and_a_lost_daemon_is_typed(
    kind: type[SyncReader | AsyncReader], start_daemon: StartDaemon, tenv: TestEnv
) -> None:
    daemon = start_daemon("--limit", "max_live_readers=1")
    url = f"unix://{tenv.socket}"
    owner = chanctl.Client(url, autostart=False)
    owner.create("busy")
    ahead: list[str] = []
    holder = threading.Thread(
        target=lambda: ahead.extend(m.text or "" for m in owner.tail("busy", start="now"))
    )
    holder.start()

    def readers() -> int:
        listing = http_unix(tenv.socket, "GET", "/v1/channels").json()
        return int(next(ch["readers"] for ch in listing if ch["name"] == "busy"))

    wait_for(lambda: readers() == 1, 10, "the reader ahead to hold the only live slot")
    pool = ThreadPoolExecutor(1)  # every call of the reader under test runs on one thread

    def make() -> SyncReader | AsyncReader:
        return kind(url)

    reader = pool.submit(make).result()
    try:
        began = time.monotonic()
        with pytest.raises(RequestFailed) as refused:
            pool.submit(reader.tail_now, "busy", 0.4).result(timeout=30)
        assert refused.value.status == 503
        assert 0.4 <= time.monotonic() - began < 10, "retried for reconnect_timeout, no longer"

        patient = pool.submit(reader.tail_now, "busy", 30.0)
        time.sleep(HOLD_S)  # the scenario itself: the slot stays taken this long
        assert not patient.done(), "a 503 within reconnect_timeout is retried, not raised"
        owner.publish("busy", "x")
        owner.close("busy")  # the reader ahead ends, its slot frees up
        assert patient.result(timeout=30) == ["x"]
        holder.join(30)
        assert ahead == ["x"]

        daemon.stop()
        began = time.monotonic()
        with pytest.raises(ConnectionLost, match="lost the daemon at"):
            pool.submit(reader.info, "busy", 0.5).result(timeout=30)
        assert 0.5 <= time.monotonic() - began < 10
    finally:
        pool.submit(reader.close).result(timeout=30)
        pool.shutdown()
        owner.disconnect()
