"""What the local engine leaves on disk: safe directory names, modes, no symlink following, a
bounded fd pool, and fsync behaviour per policy (counted through the Disk seam)."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import psutil
import pytest
from chanctl.daemon.store.base import StorageFailed
from chanctl.daemon.store.local import LocalStore
from chanctl.daemon.store.local.disk import Disk, Failpoints
from chanctl.daemon.store.local.fdpool import FdPool
from chanctl.daemon.store.local.meta import decode_dir_name, encode_dir_name

from .storekit import batch, channel_dir, config, local_store, read_all, segment_files, settings

HOSTILE_NAMES = [
    "../../etc/passwd",
    "a/../../b",
    "/abs",
    "nul\0byte",
    "\\..\\win",
    ".",
    "..",
    "CON",
    "trailing. ",
    "x" * 4096,
    "caf\u00e9",
    "cafe\u0301",
    "Ab",
    "aB",
    "\u202eevil",
    "line\nbreak",
]


async def test_hostile_names_stay_inside_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = LocalStore(settings(data))
    await store.start()
    for i, name in enumerate(HOSTILE_NAMES):
        await store.create(name, config(), batch(b"%d" % i))
    await store.stop()
    root = os.path.realpath(data / "channels")
    entries = os.listdir(root)
    assert len(entries) == len(HOSTILE_NAMES)  # distinct names never share storage
    for entry in entries:
        assert set(entry) <= set("0123456789abcdef-h") and len(entry) < 200
    assert sorted(os.listdir(tmp_path)) == ["data"]  # nothing created outside it

    store = LocalStore(settings(data))
    await store.start()
    assert sorted(store.names()) == sorted(HOSTILE_NAMES)
    for i, name in enumerate(HOSTILE_NAMES):
        assert [m.data for m in await read_all(store, name, 0)] == [b"%d" % i]
    await store.stop()


def test_dir_name_encoding_round_trips() -> None:
    for name in ["a", "a/b:c", "x" * 100]:
        assert decode_dir_name(encode_dir_name(name)) == name
    long = encode_dir_name("y" * 200)
    assert decode_dir_name(long) is None and len(long) < 200
    assert encode_dir_name("y" * 200) != encode_dir_name("y" * 199 + "z")


async def test_modes_ignore_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = local_store(tmp_path)
        await store.start()
        await store.create("c", config(), batch(b"x"))
        for _ in range(60):
            await store.submit("c", batch(b"y" * 100))
        await store.set_fork_refs("c", 1)
        await store.stop()
    finally:
        os.umask(old)
    for dirpath, _, files in os.walk(tmp_path / "channels"):
        assert stat.S_IMODE(os.stat(dirpath).st_mode) == 0o700
        for fn in files:
            assert stat.S_IMODE(os.stat(os.path.join(dirpath, fn)).st_mode) == 0o600, fn


async def test_symlinked_segment_is_refused(tmp_path: Path) -> None:
    store = local_store(tmp_path)
    await store.start()
    await store.create("c", config(), batch(b"x"))
    await store.stop()
    (seg,) = segment_files(tmp_path, "c")
    target = tmp_path / "elsewhere"
    target.write_bytes(seg.read_bytes())
    seg.unlink()
    seg.symlink_to(target)
    store = local_store(tmp_path)
    await store.start()
    with pytest.raises(StorageFailed):
        await store.get("c")
    await store.stop()
    assert target.read_bytes() == seg.read_bytes()  # untouched


async def test_fd_pool_is_bounded(tmp_path: Path) -> None:
    store = LocalStore(settings(tmp_path), max_open_fds=8)
    await store.start()
    base = psutil.Process().num_fds()
    for i in range(40):
        await store.create(f"c{i}", config(), batch(b"%d" % i))
        await store.submit(f"c{i}", batch(b"more"))
    for i in range(40):
        assert len(await read_all(store, f"c{i}", 0)) == 2
    assert psutil.Process().num_fds() - base <= 8
    await store.stop()


class CountingDisk(Disk):
    """The production Disk, counting data fsyncs."""

    def __init__(self) -> None:
        super().__init__(Failpoints(""))
        self.syncs = 0

    def fdatasync(self, fd: int) -> None:
        self.syncs += 1
        super().fdatasync(fd)


@pytest.mark.parametrize("policy", ["always", "interval:50", "never"])
async def test_fsync_policy(tmp_path: Path, policy: str) -> None:
    disk = CountingDisk()
    store = LocalStore(settings(tmp_path, fsync=policy, segment_bytes=1 << 20), disk)
    await store.start()
    assert store.fsync_policy == policy
    await store.create("c", config(), batch())
    for _ in range(20):
        await store.submit("c", batch(b"x"))
    await asyncio.sleep(0.2)
    if policy == "always":
        assert disk.syncs == 20  # one per group, and each await made its own group
    elif policy.startswith("interval"):
        assert 1 <= disk.syncs < 20  # at most one per interval, and the tail got synced
    else:
        assert disk.syncs == 0
    before_stop = disk.syncs
    await store.stop()
    assert policy == "always" or disk.syncs >= 1  # stop flushes what is unsynced
    assert policy != "always" or disk.syncs == before_stop
    assert channel_dir(tmp_path, "c").exists()


async def test_an_unreadable_channel_is_reported_and_can_be_deleted(tmp_path: Path) -> None:
    store = local_store(tmp_path)
    await store.start()
    await store.create("broken", config(), batch(b"x"))
    await store.create("fine", config(), batch(b"y"))
    await store.stop()
    (channel_dir(tmp_path, "broken") / "meta.json").write_bytes(b"{not json")
    store = local_store(tmp_path)
    await store.start()
    with pytest.raises(StorageFailed):
        await store.get("broken")
    assert [m.data for m in await read_all(store, "fine", 0)] == [b"y"]
    await store.delete("broken")
    assert store.names() == ["fine"] and not channel_dir(tmp_path, "broken").exists()
    await store.stop()


def test_fd_pool_never_closes_a_pinned_descriptor(tmp_path: Path) -> None:
    disk = Disk(Failpoints(""))
    pool = FdPool(disk, cap=2)
    paths = []
    for i in range(4):
        p = tmp_path / f"f{i}"
        p.write_bytes(b"x")
        paths.append(str(p))
    fds = [pool.acquire(p) for p in paths]  # all pinned: the pool may exceed its cap
    for fd in fds:
        os.fstat(fd)  # still open
    pool.forget(paths[0])  # removed while in use: closed only on release
    os.fstat(fds[0])
    for p, fd in zip(paths, fds, strict=True):
        pool.release(p, fd)
    assert len(pool) <= 2
    with pytest.raises(OSError):
        os.fstat(fds[0])
    pool.close_all()


async def test_concurrent_readers_and_writers_with_a_tiny_fd_pool(tmp_path: Path) -> None:
    store = LocalStore(settings(tmp_path, segment_bytes=1024), max_open_fds=2)
    await store.start()
    names = [f"c{i}" for i in range(5)]
    for name in names:
        await store.create(name, config(), batch())
    finished: set[str] = set()

    async def write(name: str, w: int) -> None:
        for i in range(60):
            await store.submit(name, batch(*[f"{w}:{i}:{j}".encode() for j in range(i % 4)]))

    async def tail(name: str) -> int:
        seq = 0
        while True:
            got = await store.read_raw(name, seq, 200, 9)
            assert got.next_seq - seq == len(got.lengths)
            seq = got.next_seq
            if got.up_to_date:
                if name in finished:
                    return seq
                await store.wait(name, seq, 0.2)

    readers = [asyncio.create_task(tail(name)) for name in names]
    await asyncio.gather(*(write(name, w) for name in names for w in range(3)))
    for name in names:
        await store.submit(name, batch(b"end"))
        finished.add(name)
    for name, end in zip(names, await asyncio.gather(*readers), strict=True):
        st = await store.get(name)
        assert st is not None and end == st.durable_seq == st.next_seq
    await store.stop()
