"""The ``engine`` / ``store`` fixtures: one contract suite, every engine (style rule 4).

A future engine (e.g. JetStream) joins by adding a ``pytest.param`` to ENGINES, skipped with
``importlib.util.find_spec`` when its optional dependency is missing, and a branch in
``_factory``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from chanctl.daemon.store.base import ChannelStore
from chanctl.daemon.store.memory import MemoryStore

from .storekit import Engine, local_store

ENGINES = [
    pytest.param("memory", id="memory"),
    pytest.param("local", id="local"),
    pytest.param("local-interval", id="local-interval"),  # same engine, lazy fsync paths
]


def _factory(kind: str, tmp: Path) -> tuple[Callable[[], ChannelStore], bool]:
    """(make a store, is it durable across ``reopen``)."""
    if kind == "memory":
        return MemoryStore, False
    if kind == "local":
        return (lambda: local_store(tmp)), True
    if kind == "local-interval":
        return (lambda: local_store(tmp, fsync="interval:20")), True
    raise AssertionError(f"unknown engine {kind}")


@pytest.fixture(params=ENGINES)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    make, durable = _factory(request.param, tmp_path)
    eng = Engine(request.param, make, make(), durable)
    await eng.store.start()
    yield eng
    await eng.store.stop()


@pytest.fixture
def store(engine: Engine) -> ChannelStore:
    return engine.store
