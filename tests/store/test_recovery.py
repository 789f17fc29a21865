"""Recovery at the engine level: torn tails (C5), mid-log corruption (C6), and state that must
survive restarts, segment rolls and retention (C7/C9 groundwork: producers, Stream-Seq, close).

Each test writes through a real LocalStore, stops it, damages the files the way a crash or a
bad disk would, starts a fresh LocalStore on the same directory and checks what it serves.
"""

from __future__ import annotations

import logging
import os
import random
import struct
import tracemalloc
from dataclasses import replace
from pathlib import Path

import pytest
from chanctl.daemon.store.base import AppendBatch, CorruptData, Message, Retention
from chanctl.daemon.store.local import LocalStore
from chanctl.daemon.store.local.disk import Disk, Failpoints
from chanctl.daemon.store.local.records import (
    KIND_DATA,
    Scanner,
    decode_data,
    max_record_bytes,
    record_kind,
)
from chanctl.daemon.store.local.segment import parse_segment_name, segment_name

from .storekit import (
    batch,
    channel_dir,
    config,
    local_store,
    now,
    read_all,
    segment_files,
    settings,
    tree_snapshot,
)

MAX_RECORD = max_record_bytes(1 << 20)


def records_of(path: Path) -> list[tuple[int, int, int]]:
    """(start, end, first seq) of every record of a segment; STATE records get the base."""
    data = path.read_bytes()
    base = parse_segment_name(path.name)
    assert base is not None
    out = []
    scanner = Scanner(lambda off, n: data[off : off + n], 0, len(data), MAX_RECORD)
    for pos, rec in scanner:
        seq = decode_data(rec).first_seq if record_kind(rec) == KIND_DATA else base
        out.append((pos, pos + len(rec), seq))
    assert scanner.error is None
    return out


def numbered(i: int) -> AppendBatch:
    """Batch i: 1-3 messages, producer seq i, Stream-Seq i."""
    msgs = [b"%d.%d" % (i, j) * (j + 1) for j in range(i % 3 + 1)]
    return batch(*msgs, producer=("p", 0, i), stream_seq=f"{i:04d}")


async def write_batches(store: LocalStore, name: str, n: int) -> list[Message]:
    await store.create(name, config(), batch())
    for i in range(n):
        await store.submit(name, numbered(i))
    return await read_all(store, name, 0)


def crashed(tmp: Path, name: str) -> None:
    """A crash never leaves a fresh clean-shutdown checkpoint: make recovery replay the tail."""
    (channel_dir(tmp, name) / "tail.ckpt").unlink(missing_ok=True)


async def reopen(tmp: Path, **kw: object) -> LocalStore:
    store = local_store(tmp, **kw)
    await store.start()
    return store


# -- C5: torn tail ----------------------------------------------------------------------------


async def test_torn_tail_sweep_every_byte_of_last_three_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await reopen(tmp_path, segment_bytes=1 << 20)
    original = await write_batches(store, "c", 10)
    await store.stop()
    (seg,) = segment_files(tmp_path, "c")
    pristine = seg.read_bytes()
    recs = records_of(seg)
    ends = {end for _, end, _ in recs}
    caplog.set_level(logging.WARNING, logger="chanctl.store")
    for cut in range(recs[-3][0], len(pristine)):
        seg.write_bytes(pristine[:cut])
        crashed(tmp_path, "c")
        caplog.clear()
        kept = [i for i in range(10) if recs[i + 1][1] <= cut]  # recs[0] is the STATE
        expect_next = sum(i % 3 + 1 for i in kept)
        store = await reopen(tmp_path, segment_bytes=1 << 20)
        st = await store.get("c")
        assert st is not None and st.next_seq == st.durable_seq == expect_next, cut
        assert st.producers["p"].seq == kept[-1] and st.last_stream_seq == f"{kept[-1]:04d}"
        assert await read_all(store, "c", 0) == original[:expect_next]
        if cut not in ends:
            assert f"at byte {max(e for e in ends if e <= cut)}" in caplog.text
        assert (await store.submit("c", batch(b"next"))).first_seq == expect_next
        await store.stop()


GARBAGE_LENGTHS = sorted({*range(1, 40), 63, 64, 65, 511, 512, 513, 4095, 4096, 4097, 8191, 8192})


def garbage_tails() -> list[bytes]:
    rnd = random.Random(5)
    out = [b"\0" * n for n in GARBAGE_LENGTHS]
    out += [rnd.randbytes(n) for n in GARBAGE_LENGTHS]
    out.append(struct.pack("<I", 2**32 - 1) + rnd.randbytes(100))  # length claiming 4 GiB
    out.append(struct.pack("<II", 300, 0) + rnd.randbytes(400))  # plausible length, bad crc
    out.append(struct.pack("<II", 300, 0) + rnd.randbytes(100))  # overruns the file
    return out


async def test_garbage_after_the_tail_is_cut_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await reopen(tmp_path, segment_bytes=1 << 20)
    original = await write_batches(store, "c", 6)
    await store.stop()
    (seg,) = segment_files(tmp_path, "c")
    pristine = seg.read_bytes()
    caplog.set_level(logging.WARNING, logger="chanctl.store")
    for tail in garbage_tails():
        seg.write_bytes(pristine + tail)
        crashed(tmp_path, "c")
        caplog.clear()
        store = await reopen(tmp_path, segment_bytes=1 << 20)
        st = await store.get("c")
        assert st is not None and st.next_seq == len(original)
        assert f"at byte {len(pristine)}" in caplog.text and "truncating" in caplog.text
        assert await read_all(store, "c", 0) == original
        assert (await store.submit("c", batch(b"after"))).first_seq == len(original)
        await store.stop()
        assert seg.stat().st_size > len(pristine)  # the new record sits right after the old


async def test_recovery_memory_is_bounded_by_the_record_limit(tmp_path: Path) -> None:
    store = await reopen(tmp_path)
    await write_batches(store, "c", 3)
    await store.stop()
    seg = segment_files(tmp_path, "c")[-1]
    with seg.open("ab") as f:
        f.write(struct.pack("<I", 2**32 - 1) + os.urandom(64))
    tracemalloc.start()
    try:
        store = await reopen(tmp_path)
        assert await store.get("c") is not None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    await store.stop()
    assert peak < MAX_RECORD + (1 << 20)


async def test_empty_or_garbage_last_segment_counts_as_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await reopen(tmp_path)
    original = await write_batches(store, "c", 40)
    before = await store.get("c")
    await store.stop()
    assert before is not None and len(segment_files(tmp_path, "c")) >= 2
    extra = channel_dir(tmp_path, "c") / segment_name(before.next_seq)
    for content in (b"", os.urandom(300), b"\0" * 4096):
        extra.write_bytes(content)
        store = await reopen(tmp_path)
        assert await store.get("c") == before
        assert not extra.exists()
        assert await read_all(store, "c", 0) == original
        await store.stop()
    assert "no complete state header" in caplog.text


# -- C6: corruption inside sealed segments ------------------------------------------------------


async def _check_quarantine(tmp: Path, original: list[Message], expect_seq: int) -> None:
    store = await reopen(tmp)
    served: list[Message] = []
    seq = 0
    with pytest.raises(CorruptData) as info:
        while True:
            got = await store.read("c", seq, 700)
            served += got.messages
            seq = got.next_seq
            assert not got.up_to_date, "corruption was not detected"
    assert info.value.seq == expect_seq
    assert served == original[:expect_seq]
    st = await store.get("c")
    assert st is not None and st.corrupt_seq == expect_seq
    with pytest.raises(CorruptData):
        await store.read("c", expect_seq + 1, 700)
    assert len(await read_all(store, "other", 0)) == 20  # other channels are unaffected
    await store.stop()


async def _corruption_fixture(tmp: Path) -> tuple[list[Message], list[Path]]:
    store = await reopen(tmp, segment_bytes=600)
    original = await write_batches(store, "c", 60)
    await store.create("other", config(), batch(*[b"o%d" % i for i in range(20)]))
    await store.stop()
    sealed = segment_files(tmp, "c")[:-1]
    assert len(sealed) >= 4
    return original, sealed


async def test_bit_flips_in_sealed_segments_are_always_detected(tmp_path: Path) -> None:
    original, sealed = await _corruption_fixture(tmp_path)
    rnd = random.Random(1)
    for _ in range(1000):
        seg = rnd.choice(sealed)
        data = seg.read_bytes()
        bit = rnd.randrange(len(data) * 8)
        expect = next(seq for start, end, seq in records_of(seg) if start <= bit // 8 < end)
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        seg.write_bytes(flipped)
        try:
            await _check_quarantine(tmp_path, original, expect)
        finally:
            seg.write_bytes(data)


async def test_truncated_sealed_segments_are_detected(tmp_path: Path) -> None:
    original, sealed = await _corruption_fixture(tmp_path)
    rnd = random.Random(2)
    for _ in range(200):
        seg = rnd.choice(sealed)
        data = seg.read_bytes()
        cut = rnd.randrange(len(data))
        expect = next(seq for start, end, seq in records_of(seg) if end > cut)
        seg.write_bytes(data[:cut])
        try:
            await _check_quarantine(tmp_path, original, expect)
        finally:
            seg.write_bytes(data)


async def test_retention_keeps_a_quarantined_channel_whole(tmp_path: Path) -> None:
    """Retention would drop the damaged segment (it is the oldest): once a read has found the
    damage, it must not, so `chanctl fsck` still sees what went wrong (C6: no silent delete)."""
    store = await reopen(tmp_path, segment_bytes=600)
    await store.create("c", config(Retention(max_messages=3)), batch())
    for i in range(60):
        await store.submit("c", numbered(i))
    await store.stop()
    first = segment_files(tmp_path, "c")[0]
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0x10
    first.write_bytes(bytes(data))
    files = {p.name: p.read_bytes() for p in segment_files(tmp_path, "c")}
    store = await reopen(tmp_path, segment_bytes=600)
    with pytest.raises(CorruptData):
        await read_all(store, "c", 0)
    await store.enforce_retention(now() + 3600)
    st = await store.get("c")
    assert st is not None and st.first_seq == 0 and st.corrupt_seq is not None
    await store.stop()
    assert {p.name: p.read_bytes() for p in segment_files(tmp_path, "c")} == files


# -- state across restarts, rolls and retention -----------------------------------------------


async def test_producers_and_close_survive_roll_retention_and_restart(tmp_path: Path) -> None:
    store = await reopen(tmp_path)
    await store.create("c", config(Retention(max_messages=10)), batch())
    for k in range(5):
        await store.submit("c", batch(b"early", producer=(f"early-{k}", k, k * 10)))
    for i in range(200):
        await store.submit("c", batch(b"bulk %d" % i, producer=("bulk", 1, i), stream_seq=f"{i}"))
    await store.submit("c", batch(b"bye", producer=("closer", 2, 0), close=True))
    await store.enforce_retention(now())
    before = await store.get("c")
    assert before is not None and before.first_seq > 5  # early writes' segments are gone
    await store.stop()

    store = await reopen(tmp_path)
    st = await store.get("c")
    assert st == before
    assert st.closed and st.durable_closed and st.last_stream_seq == "199"
    assert {k: (v.epoch, v.seq) for k, v in st.producers.items() if k.startswith("early")} == {
        f"early-{k}": (k, k * 10) for k in range(5)
    }
    assert segment_files(tmp_path, "c")[0].name == segment_name(st.first_seq)
    await store.stop()


async def test_state_only_segment_after_a_failed_roll(tmp_path: Path) -> None:
    """The roll fails after the new segment's STATE is durable: the restart rebuilds the
    producer table and Stream-Seq from that STATE record alone."""
    store = await reopen(tmp_path, failpoints="roll.before_dirsync=error:EIO@1")
    await store.create("c", config(), batch())
    durable = None
    for i in range(100):
        try:
            await store.submit("c", batch(b"m%d" % i, producer=("p", 0, i), stream_seq=f"s{i}"))
        except Exception:
            break
        durable = await store.get("c")
        assert durable is not None
        durable = replace(durable, producers=dict(durable.producers))  # snapshot
    else:
        pytest.fail("the roll failpoint never fired")
    await store.stop()
    assert durable is not None
    last = segment_files(tmp_path, "c")[-1]
    assert [seq for _, _, seq in records_of(last)] == [durable.next_seq]  # STATE only

    store = await reopen(tmp_path)
    st = await store.get("c")
    assert st is not None
    assert (st.next_seq, st.last_stream_seq) == (durable.next_seq, durable.last_stream_seq)
    assert st.producers["p"].seq == durable.producers["p"].seq
    assert (await store.submit("c", batch(b"again"))).first_seq == durable.next_seq
    await store.stop()


# -- clean-shutdown checkpoint ------------------------------------------------------------------


async def test_restarts_without_writes_leave_the_directory_byte_identical(tmp_path: Path) -> None:
    """C11: after the first clean stop, restarts that only read change nothing on disk."""
    store = await reopen(tmp_path)
    await write_batches(store, "c", 30)
    await store.create("d", config(), batch(b"x", producer=("q", 1, 1)))
    await store.stop()
    snapshot = tree_snapshot(tmp_path)
    assert any(p.endswith("tail.ckpt") for p in snapshot)
    for _ in range(5):
        store = await reopen(tmp_path)
        for name in ("c", "d"):
            await read_all(store, name, 0)
        await store.stop()
        assert tree_snapshot(tmp_path) == snapshot


async def test_a_stale_checkpoint_is_ignored(tmp_path: Path) -> None:
    store = await reopen(tmp_path, segment_bytes=1 << 20)
    await write_batches(store, "c", 5)
    await store.stop()
    ckpt = channel_dir(tmp_path, "c") / "tail.ckpt"
    old = ckpt.read_bytes()
    store = await reopen(tmp_path, segment_bytes=1 << 20)
    await store.get("c")
    await store.submit("c", batch(b"after", producer=("p", 0, 99), stream_seq="z"))
    expected = await store.get("c")
    assert expected is not None
    expected = replace(expected, producers=dict(expected.producers))
    await store.stop()
    ckpt.write_bytes(old)  # as if the daemon crashed instead of stopping cleanly
    store = await reopen(tmp_path, segment_bytes=1 << 20)
    assert await store.get("c") == expected
    await store.stop()


async def test_checkpoint_is_not_trusted_when_the_tail_bytes_changed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await reopen(tmp_path, segment_bytes=1 << 20)
    original = await write_batches(store, "c", 5)
    await store.stop()
    (seg,) = segment_files(tmp_path, "c")
    data = bytearray(seg.read_bytes())
    data[-3] ^= 0x40  # same size, damaged last record
    seg.write_bytes(data)
    store = await reopen(tmp_path, segment_bytes=1 << 20)
    st = await store.get("c")
    assert st is not None and st.next_seq == len(original) - 2  # the last batch held 2
    assert "truncating" in caplog.text
    await store.stop()


class ReadTrackingDisk(Disk):
    """The production Disk, remembering which offsets of segment files were read."""

    def __init__(self) -> None:
        super().__init__(Failpoints(""))
        self.offsets: list[int] = []

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".log"):
            self.offsets.append(offset)
        return super().pread(fd, n, offset)


def abandon(store: LocalStore) -> None:
    """Drop a store the way a crash would: no drain, no checkpoint, just close the files."""
    store._shared.pool.close_all()
    store._shared.executor.shutdown(wait=True)


async def test_a_crash_replays_only_what_follows_the_last_checkpoint(tmp_path: Path) -> None:
    store = await reopen(tmp_path, segment_bytes=64 << 20)
    await store.create("c", config(), batch())
    for i in range(60):  # ~6 MB in one segment: the writer checkpoints on its way
        await store.submit("c", batch(b"%05d" % i * 20000, producer=("p", 0, i)))
    msgs = await read_all(store, "c", 0)
    abandon(store)
    (seg,) = segment_files(tmp_path, "c")
    with seg.open("r+b") as f:  # and the last append was torn
        f.truncate(seg.stat().st_size - 10)
    ckpt = channel_dir(tmp_path, "c") / "tail.ckpt"
    assert ckpt.exists()

    disk = ReadTrackingDisk()
    store = LocalStore(settings(tmp_path), disk)
    await store.start()
    st = await store.get("c")
    assert st is not None and st.next_seq == 59 and st.producers["p"].seq == 58
    assert disk.offsets and min(disk.offsets) >= (4 << 20) - 4096  # replay began at the ckpt
    assert await read_all(store, "c", 0) == msgs[:59]
    await store.stop()


async def test_the_producer_table_is_capped_least_recently_seen_first(tmp_path: Path) -> None:
    def capped() -> LocalStore:
        return LocalStore(settings(tmp_path), producer_cap=3)

    store = capped()
    await store.start()
    await store.create("c", config(), batch())
    for pid in ["a", "b", "c", "a", "d", "e"]:
        await store.submit("c", batch(b"x" * 300, producer=(pid, 0, 1)))  # rolls segments too
    st = await store.get("c")
    assert st is not None and list(st.producers) == ["a", "d", "e"]
    await store.stop()
    for _ in range(2):  # from the checkpoint, then by replaying the tail segment
        store = capped()
        await store.start()
        st = await store.get("c")
        assert st is not None and sorted(st.producers) == ["a", "d", "e"]
        await store.stop()
        crashed(tmp_path, "c")
