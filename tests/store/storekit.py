"""Helpers shared by the storage tests: settings, engines, and reading a whole channel."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chanctl.daemon.config import FsyncPolicy, NatsSettings, Settings
from chanctl.daemon.store.base import (
    AppendBatch,
    ChannelConfig,
    ChannelStore,
    Message,
    ProducerStamp,
    Retention,
)
from chanctl.daemon.store.local import LocalStore
from chanctl.daemon.store.local.disk import Disk, Failpoints
from chanctl.daemon.store.local.meta import encode_dir_name
from chanctl.daemon.store.local.segment import parse_segment_name

SMALL_SEGMENT = 2048  # small enough that every test rolls segments


def settings(tmp: Path, fsync: str = "always", segment_bytes: int = SMALL_SEGMENT) -> Settings:
    return Settings(
        data_dir=tmp, socket_path=None, fsync=FsyncPolicy.parse(fsync), segment_bytes=segment_bytes
    )


def config(retention: Retention | None = None, **kw: object) -> ChannelConfig:
    return ChannelConfig(
        content_type="application/octet-stream",
        created_at=1_700_000_000.0,
        retention=retention or Retention(),
        **kw,  # type: ignore[arg-type]
    )


def local_store(tmp: Path, failpoints: str | None = None, **kw: object) -> LocalStore:
    disk = Disk(Failpoints(failpoints)) if failpoints is not None else None
    return LocalStore(settings(tmp, **kw), disk)  # type: ignore[arg-type]


def nats_store(tmp: Path, servers: str, namespace: str, replicas: int = 1) -> ChannelStore:
    """A NatsStore on ``servers`` (comma-separated URLs), isolated in its own namespace."""
    from chanctl.daemon.store.nats import NatsStore

    ns = NatsSettings(
        servers=tuple(servers.split(",")),
        replicas=replicas,
        namespace=namespace,
        server_sync="always",
    )
    return NatsStore(Settings(data_dir=tmp, socket_path=None, store="nats", nats=ns))


@dataclass
class Engine:
    """One engine under test; ``reopen`` restarts durable engines on the same data."""

    kind: str
    make: Callable[[], ChannelStore]
    store: ChannelStore
    durable: bool

    async def reopen(self) -> ChannelStore:
        await self.store.stop()
        self.store = self.make()
        await self.store.start()
        return self.store


def batch(
    *msgs: bytes,
    producer: tuple[str, int, int] | None = None,
    stream_seq: str | None = None,
    close: bool = False,
) -> AppendBatch:
    stamp = ProducerStamp(*producer) if producer is not None else None
    return AppendBatch(list(msgs), producer=stamp, stream_seq=stream_seq, close=close)


async def read_all(
    store: ChannelStore, name: str, start: int, chunk: int = 1 << 20
) -> list[Message]:
    """Every durable message from ``start`` on, following ``next_seq`` like a client."""
    out: list[Message] = []
    seq = start
    while True:
        got = await store.read(name, seq, chunk)
        out += got.messages
        seq = got.next_seq
        if got.up_to_date:
            return out


def channel_dir(tmp: Path, name: str) -> Path:
    return tmp / "channels" / encode_dir_name(name)


def segment_files(tmp: Path, name: str) -> list[Path]:
    d = channel_dir(tmp, name)
    return sorted(p for p in d.iterdir() if parse_segment_name(p.name) is not None)


def now() -> float:
    return time.time()


def tree_snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (to restore a pristine data dir)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for fn in files:
            p = os.path.join(dirpath, fn)
            out[p] = Path(p).read_bytes()
    return out
