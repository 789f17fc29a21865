"""Write/fsync failures (C10, R4) and crashes at named failpoints (C7, C9), engine level.

In-process tests arm failpoints through an injected ``Disk``; crash tests run a tiny writer in a
subprocess with ``CHANCTL_FAILPOINTS`` set, let it die by ``os._exit(137)`` at the point, then
recover the directory here.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from chanctl.daemon.store.base import StorageFailed, StorageFull
from chanctl.daemon.store.local.disk import Disk, Failpoints, parse_failpoints

from .storekit import batch, config, local_store, read_all, segment_files


async def test_enospc_rolls_back_and_appends_resume(tmp_path: Path) -> None:
    store = local_store(tmp_path, failpoints="append.before_write=error:ENOSPC@3")
    await store.start()
    await store.create("c", config(), batch())
    await store.submit("c", batch(b"1", producer=("p", 0, 0)))
    await store.submit("c", batch(b"2", producer=("p", 0, 1)))
    with pytest.raises(StorageFull):
        await store.submit("c", batch(b"lost", producer=("p", 0, 2), stream_seq="x", close=True))
    st = await store.get("c")
    assert st is not None
    assert (st.next_seq, st.durable_seq, st.closed, st.last_stream_seq) == (2, 2, False, None)
    assert st.producers["p"].seq == 1  # the pending state was rewound exactly
    assert (await store.submit("c", batch(b"3", producer=("p", 0, 2)))).first_seq == 2
    await store.stop()
    store = local_store(tmp_path)
    await store.start()
    assert [m.data for m in await read_all(store, "c", 0)] == [b"1", b"2", b"3"]
    await store.stop()


async def test_short_write_is_truncated_back(tmp_path: Path) -> None:
    store = local_store(tmp_path, failpoints="append.before_write=short_write:7@2")
    await store.start()
    await store.create("c", config(), batch())
    await store.submit("c", batch(b"ok"))
    size = segment_files(tmp_path, "c")[-1].stat().st_size
    with pytest.raises(StorageFull):
        await store.submit("c", batch(b"x" * 100))
    assert segment_files(tmp_path, "c")[-1].stat().st_size == size  # no torn record left
    await store.submit("c", batch(b"after"))
    assert [m.data for m in await read_all(store, "c", 0)] == [b"ok", b"after"]
    await store.stop()


async def test_fsync_error_is_fail_stop(tmp_path: Path) -> None:
    store = local_store(tmp_path, failpoints="append.before_fsync=error:EIO@2")
    await store.start()
    await store.create("c", config(), batch())
    await store.create("other", config(), batch())
    await store.submit("c", batch(b"acked"))
    with pytest.raises(StorageFailed):
        await store.submit("c", batch(b"never acked"))
    with pytest.raises(StorageFailed):
        store.submit("c", batch(b"later"))  # refused immediately, no retry of the fsync
    assert [m.data for m in await read_all(store, "c", 0)] == [b"acked"]  # reads still work
    await store.submit("other", batch(b"fine"))  # other channels keep going
    await store.stop()
    store = local_store(tmp_path)
    await store.start()
    await store.get("c")
    assert (await store.submit("c", batch(b"restart"))).first_seq in (1, 2)
    await store.stop()


async def test_a_failed_group_fails_everything_queued_behind_it(tmp_path: Path) -> None:
    spec = "append.before_write=sleep:50@2;append.after_write=error:EIO@2"
    store = local_store(tmp_path, failpoints=spec)
    await store.start()
    await store.create("c", config(), batch())
    await store.submit("c", batch(b"a"))
    first = store.submit("c", batch(b"b"))
    await asyncio.sleep(0.02)  # the writer is inside the slow group now
    queued = [store.submit("c", batch(b"q%d" % i)) for i in range(5)]
    results = await asyncio.gather(first, *queued, return_exceptions=True)
    assert all(isinstance(r, StorageFailed) for r in results)
    st = await store.get("c")
    assert st is not None and st.next_seq == st.durable_seq == 1
    await store.stop()


def test_failpoint_spec_is_validated() -> None:
    assert parse_failpoints("append.before_write=panic@3;roll.after_create=sleep:5")
    for bad in ("nope=panic", "append.before_write=explode", "append.before_write=panic@0"):
        with pytest.raises(ValueError):
            parse_failpoints(bad)
    fp = Failpoints("roll.after_create=error:EIO@2")
    assert fp.hit("roll.after_create") is None
    with pytest.raises(OSError):
        fp.hit("roll.after_create")
    assert fp.hit("roll.after_create") is None and fp.hits("roll.after_create") == 3
    assert not Disk(Failpoints("")).failpoints.active


_CRASHER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from chanctl.daemon.config import Settings
    from chanctl.daemon.store.base import AppendBatch, ChannelConfig, ProducerStamp
    from chanctl.daemon.store.local import LocalStore

    async def main():
        store = LocalStore(Settings(data_dir=Path(sys.argv[1]), socket_path=None))
        await store.start()
        await store.create("c", ChannelConfig("text/plain", 0.0), AppendBatch([]))
        for i in range(3):
            b = AppendBatch([b"m%d" % i], ProducerStamp("p", 0, i), close=i == 2)
            await store.submit("c", b)
        sys.exit(3)  # the failpoint should have killed us before this

    asyncio.run(main())
    """
)


def crash_at(tmp: Path, spec: str) -> None:
    env = {**os.environ, "CHANCTL_FAILPOINTS": spec}
    proc = subprocess.run([sys.executable, "-c", _CRASHER, str(tmp)], env=env, timeout=60)
    assert proc.returncode == 137, f"failpoint {spec} did not fire"


# (failpoint, is the final, closing batch durable after the crash?)
CLOSE_PATH = [
    ("append.before_write=panic@3", False),
    ("append.after_write=panic@3", True),  # process crash: the page cache keeps the write
    ("append.before_fsync=panic@3", True),
    ("close.before_fsync=panic@1", True),
    ("append.after_fsync_before_ack=panic@3", True),
]


@pytest.mark.parametrize(("spec", "present"), CLOSE_PATH, ids=[s for s, _ in CLOSE_PATH])
async def test_crash_in_the_close_path_is_atomic(tmp_path: Path, spec: str, present: bool) -> None:
    """C9 (and C7 for after_fsync_before_ack): after the crash the channel is either open
    without the final record or closed with it, and producer state matches the log."""
    await asyncio.to_thread(crash_at, tmp_path, spec)
    store = local_store(tmp_path)
    await store.start()
    st = await store.get("c")
    assert st is not None
    data = [m.data for m in await read_all(store, "c", 0)]
    assert st.closed == st.durable_closed == (data == [b"m0", b"m1", b"m2"]) == present
    assert st.producers["p"].seq == len(data) - 1
    await store.stop()


_MATRIX_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from chanctl.daemon.config import Settings
    from chanctl.daemon.store.base import AppendBatch, ChannelConfig, ProducerStamp, Retention
    from chanctl.daemon.store.local import LocalStore

    async def main():
        settings = Settings(data_dir=Path(sys.argv[1]), socket_path=None, segment_bytes=300)
        store = LocalStore(settings)
        await store.start()
        cfg = ChannelConfig("text/plain", 0.0, retention=Retention(max_messages=15))
        await store.create("c", cfg, AppendBatch([]))
        for i in range(60):
            b = AppendBatch([b"m%d" % i], ProducerStamp("p", 0, i), close=i == 59)
            done = await store.submit("c", b)
            print(done.next_seq, flush=True)  # acked
            if i % 10 == 9:
                await store.enforce_retention(0.0)
        sys.exit(3)

    asyncio.run(main())
    """
)

MATRIX = [
    "append.before_write=panic@25",
    "append.after_write=panic@25",
    "append.before_fsync=panic@25",
    "append.after_fsync_before_ack=panic@25",
    "roll.after_create=panic@2",
    "roll.before_dirsync=panic@2",
    "create.before_dirsync=panic@1",
    "close.before_fsync=panic@1",
    "retention.after_unlink_before_dirsync=panic@1",
]


@pytest.mark.parametrize("spec", MATRIX)
async def test_crash_matrix_keeps_every_ack_and_a_clean_prefix(tmp_path: Path, spec: str) -> None:
    """C4 at the engine level: crash at each named failpoint, recover, check the history:
    every acked batch is there (P1), the log is a gap-free run of whole batches (P4/P5),
    producer state matches the log, and the next append lands right after it (P7)."""
    env = {**os.environ, "CHANCTL_FAILPOINTS": spec}
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", _MATRIX_WRITER, str(tmp_path)],
        env=env,
        timeout=60,
        capture_output=True,
    )
    assert proc.returncode == 137, proc.stderr.decode()
    acked = max([0, *map(int, proc.stdout.split())])
    store = local_store(tmp_path)
    await store.start()
    st = await store.get("c")
    if st is None:
        assert spec.startswith("create."), "an acknowledged channel vanished"
        await store.stop()
        return
    assert st.next_seq >= acked
    msgs = await read_all(store, "c", st.first_seq)
    assert [m.data for m in msgs] == [b"m%d" % i for i in range(st.first_seq, st.next_seq)]
    if st.next_seq:
        assert st.producers["p"].seq == st.next_seq - 1
    assert st.closed == (st.next_seq == 60)
    if not st.closed:
        tail = st.next_seq
        assert (await store.submit("c", batch(b"again"))).first_seq == tail
    await store.stop()
