"""The C3/C8 workload on a recording LocalStore, and CHECK of one recovered crash state.

Every message is ``<<producer:n>>`` plus filler derived from its id, so a recovered byte string
tells which message it is and whether its bytes are intact (P6). The trace index at which the
loop saw each submit and each ack is recorded: a crash before trace op ``p`` happened after
every ack recorded at an index <= p (the ack followed the ops that made it), and before any
write of a batch submitted at index >= p.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from chanctl.daemon.config import FsyncPolicy, Settings
from chanctl.daemon.store.base import (
    AppendBatch,
    ChannelConfig,
    ProducerStamp,
    ProducerState,
    Retention,
)
from chanctl.daemon.store.local import LocalStore
from chanctl.daemon.store.local.disk import Disk, Failpoints
from store.storekit import read_all

from .crashfs import RecordingDisk
from .history import History, check, lost_acked

SEGMENT_BYTES = 1024  # a roll every few batches
_ID = re.compile(rb"<<([^<>]+)>>")


def payload(msg_id: str) -> bytes:
    filler = random.Random(msg_id).randbytes(random.Random(msg_id).randrange(0, 160))
    return b"<<" + msg_id.encode() + b">>" + filler


def settings(data_dir: Path, fsync: str) -> Settings:
    return Settings(
        data_dir=data_dir,
        socket_path=None,
        fsync=FsyncPolicy.parse(fsync),
        segment_bytes=SEGMENT_BYTES,
    )


def config(retention: Retention | None = None) -> ChannelConfig:
    return ChannelConfig(
        "application/octet-stream", 1_700_000_000.0, retention=retention or Retention()
    )


@dataclass
class Sent:
    msg_id: str
    channel: str
    invoked: int  # trace length when submitted
    pseq: int | None  # idempotent producer's batch seq
    closes: bool = False
    acked: int | None = None  # trace length when the ack reached the loop
    seq: int | None = None
    t_ack: float = 0.0


@dataclass
class Run:
    """A recorded workload: the trace plus what the clients saw, in trace indexes."""

    disk: RecordingDisk
    fsync: str
    sent: list[Sent] = field(default_factory=list)
    created: dict[str, tuple[int, int]] = field(default_factory=dict)  # (invoked, returned)
    meta: list[tuple[int, int, int]] = field(default_factory=list)  # (invoked, returned, refs)
    retention_from: int | None = None  # first enforce_retention call
    meta_channel: str = "a"  # the channel whose meta.json the workload replaces
    idempotent: set[str] = field(default_factory=set)
    durable_at: dict[str, int] = field(default_factory=dict)  # id -> first covering fsync

    def at(self) -> int:
        return len(self.disk.trace)


async def _produce(
    store: LocalStore, run: Run, pid: str, chan: str, count: int, rng: random.Random
) -> None:
    idem = pid in run.idempotent
    n = pseq = 0
    while n < count:
        k = min(rng.randint(1, 3), count - n)
        closes = idem and pid.endswith("closer") and n + k == count
        at = run.at()
        batch = [Sent(f"{pid}:{n + j}", chan, at, pseq if idem else None, closes) for j in range(k)]
        run.sent += batch
        stamp = ProducerStamp(pid, 0, pseq) if idem else None
        done = await store.submit(
            chan, AppendBatch([payload(s.msg_id) for s in batch], stamp, close=closes)
        )
        at, now = run.at(), time.monotonic()
        for j, s in enumerate(batch):
            s.acked, s.seq, s.t_ack = at, done.first_seq + j, now
        n, pseq = n + k, pseq + 1
        if rng.random() < 0.3:
            await asyncio.sleep(rng.random() * 0.004)


async def _create(store: LocalStore, run: Run, name: str, cfg: ChannelConfig) -> None:
    at = run.at()
    await store.create(name, cfg, AppendBatch([]))
    run.created[name] = (at, run.at())


async def record(workdir: Path, fsync: str, per_producer: int, seed: int) -> Run:
    """Run the workload: two idempotent and four plain producers on four channels, one created
    mid-run, one closed at the end with a final append, one under retention, plus a metadata
    replacement, then a clean stop (whose checkpoints are part of the trace too)."""
    workdir.mkdir()
    disk = RecordingDisk(str(workdir))
    run = Run(disk, fsync, idempotent={"idem-a", "idem-closer"})
    store = LocalStore(settings(workdir, fsync), disk, io_threads=4)
    await store.start()
    await _create(store, run, "a", config())
    await _create(store, run, "b", config())
    await _create(store, run, "r", config(Retention(max_messages=12)))

    async def late_channel() -> None:
        await asyncio.sleep(0.01)
        await _create(store, run, "c", config())
        await _produce(store, run, "plain-c", "c", per_producer, random.Random(seed + 3))

    async def meta_and_retention() -> None:
        await asyncio.sleep(0.015)
        at = run.at()
        await store.set_fork_refs("a", 1)
        run.meta.append((at, run.at(), 1))
        for _ in range(3):
            await asyncio.sleep(0.01)
            run.retention_from = run.retention_from if run.retention_from is not None else run.at()
            await store.enforce_retention(time.time())

    async def channel_b() -> None:
        await _produce(store, run, "plain-b", "b", per_producer, random.Random(seed + 1))
        await _produce(store, run, "idem-closer", "b", 3, random.Random(seed + 2))

    await asyncio.gather(
        _produce(store, run, "idem-a", "a", per_producer, random.Random(seed + 4)),
        _produce(store, run, "plain-a", "a", per_producer, random.Random(seed + 5)),
        _produce(store, run, "plain-r", "r", per_producer, random.Random(seed + 6)),
        channel_b(),
        late_channel(),
        meta_and_retention(),
    )
    await store.stop()
    run.durable_at = _durable_at(disk)
    return run


async def record_c8(workdir: Path) -> Run:
    """C8: create a channel and make one acked append, replace its metadata, then append
    until the log has rolled twice; one producer, so the trace is short and every op counts."""
    workdir.mkdir()
    disk = RecordingDisk(str(workdir))
    run = Run(disk, "always", meta_channel="k")
    store = LocalStore(settings(workdir, "always"), disk, io_threads=2)
    await store.start()
    await _create(store, run, "k", config())
    await _produce(store, run, "first", "k", 1, random.Random(0))
    at = run.at()
    await store.set_fork_refs("k", 1)
    run.meta.append((at, run.at(), 1))
    await _produce(store, run, "plain", "k", 24, random.Random(1))
    await store.stop()
    run.durable_at = _durable_at(disk)
    return run


def _durable_at(disk: RecordingDisk) -> dict[str, int]:
    """For each message, the index of the first fsync of its file after it was written."""
    waiting: dict[int, list[str]] = {}
    out: dict[str, int] = {}
    for i, op in enumerate(disk.trace):
        if op.kind == "write":
            waiting.setdefault(op.ino, []).extend(m.decode() for m in _ID.findall(op.data))
        elif op.kind == "sync":
            for mid in waiting.pop(op.ino, []):
                out.setdefault(mid, i)
    return out


def history_key(run: Run, point: int) -> tuple[int, ...]:
    """What the clients had seen by ``point``: two crash points with equal keys CHECK a
    recovered directory identically (the counts only grow along the trace)."""
    return (
        sum(s.invoked < point for s in run.sent),
        sum(s.acked is not None and s.acked <= point for s in run.sent),
        sum(inv < point for inv, _ in run.created.values()),
        sum(ret <= point for _, ret in run.created.values()),
        sum(inv < point for inv, _, _ in run.meta),
        sum(ret <= point for _, ret, _ in run.meta),
        int(run.retention_from is not None and run.retention_from < point),
        point if run.fsync != "always" else 0,  # the lazy modes' loss bounds use the point
    )


@dataclass
class Verdict:
    problems: list[str]
    messages: int = 0  # messages recovered
    lost: list[str] = field(default_factory=list)  # acked ids missing (lazy modes only)
    window_s: float = 0.0  # how long before the crash the oldest lost id was acked


async def check_state(run: Run, point: int, data_dir: Path) -> Verdict:
    """Recover ``data_dir`` (a crash before trace op ``point``) with the real engine and CHECK
    every channel: P1-P5 via ``history.check``, P6 bytes, P7 an append afterwards, plus
    durable creates (C8), metadata old-or-new, close and producer state rebuilt from the log."""
    lazy = run.fsync != "always"
    store = LocalStore(settings(data_dir, run.fsync), Disk(Failpoints("")), io_threads=2)
    await store.start()
    v = Verdict([])
    try:
        names = set(store.names())
        for name, (invoked, returned) in run.created.items():
            if returned <= point and name not in names:
                v.problems.append(f"C8 channel {name} lost after its create returned")
            if invoked >= point and name in names:
                v.problems.append(f"C8 phantom channel {name}")
        for name in sorted(names):
            await _check_channel(store, run, point, name, v, lazy)
    finally:
        await store.stop()
    return v


async def _check_channel(
    store: LocalStore, run: Run, point: int, name: str, v: Verdict, lazy: bool
) -> None:
    st = await store.get(name)
    assert st is not None
    first = st.first_seq
    if first and (run.retention_from is None or run.retention_from >= point):
        v.problems.append(f"{name}: first seq {first} but retention never ran")
    got = await read_all(store, name, first, 4096)
    ids: list[str] = []
    for i, m in enumerate(got):
        found = _ID.match(m.data)
        mid = found.group(1).decode() if found else f"?{m.data[:20]!r}"
        ids.append(mid)
        if m.seq != first + i:
            v.problems.append(f"P4 {name}: message {i} has seq {m.seq}, expected {first + i}")
        if found is None or m.data != payload(mid):
            v.problems.append(f"P6 {name}: seq {m.seq} bytes differ from what was sent ({mid})")
    v.messages += len(ids)
    for start in random.Random(point).sample(range(len(got)), min(3, len(got))):
        again = await read_all(store, name, first + start, 300)
        if [m.data for m in again] != [m.data for m in got[start:]]:
            v.problems.append(f"P6 {name}: re-reading from seq {first + start} differs")
    history = _history_at(run, name, point, first)
    v.problems += [f"{name}: {p}" for p in check(history, name, ids, run.idempotent, lazy)]
    if lazy:
        lost = lost_acked(history, name, ids)
        v.lost += lost
        too_old = [m for m in lost if run.durable_at.get(m, point) < point]
        v.problems += [f"{name}: lost {m}, fsynced before the crash" for m in too_old]
        t_crash = run.disk.times[point - 1] if point else 0.0
        acks = {s.msg_id: s.t_ack for s in run.sent}
        v.window_s = max([v.window_s] + [t_crash - acks[m] for m in lost])
    _check_state(run, point, name, st.closed, st.producers, ids, v, lazy)
    if name == run.meta_channel:
        _check_meta(run, point, name, st.fork_refs, v)
    if not st.closed:
        await _check_append(store, name, first + len(ids), v)


def _check_meta(run: Run, point: int, name: str, refs: int, v: Verdict) -> None:
    """meta.json after a replacement: the old version, or the new one once it was invoked,
    and surely the new one once the replacement returned."""
    invoked = [r for inv, _, r in run.meta if inv < point]
    returned = [r for _, ret, r in run.meta if ret <= point]
    allowed = {returned[-1] if returned else 0, *invoked}
    if refs not in allowed:
        v.problems.append(f"meta of {name}: fork_refs {refs}, expected one of {allowed}")


async def _check_append(store: LocalStore, name: str, end: int, v: Verdict) -> None:
    """P7: an append after recovery succeeds, right after everything recovered."""
    done = await store.submit(name, AppendBatch([b"<<after:0>>"]))
    if done.first_seq != end:
        v.problems.append(f"P7 {name}: append after recovery at {done.first_seq}, want {end}")
    tail = await read_all(store, name, done.first_seq, 4096)
    if [m.data for m in tail] != [b"<<after:0>>"]:
        v.problems.append(f"P7 {name}: the append after recovery reads back as {tail}")


def _check_state(
    run: Run,
    point: int,
    name: str,
    closed: bool,
    producers: dict[str, ProducerState],
    ids: list[str],
    v: Verdict,
    lazy: bool,
) -> None:
    """Closed flag and idempotent producer table, as rebuilt from the log records."""
    by_id = {s.msg_id: s for s in run.sent}
    closing = [s for s in run.sent if s.channel == name and s.closes]
    if closed != any(by_id[m].closes for m in ids if m in by_id):
        v.problems.append(f"{name}: closed={closed} but final record present={not closed}")
    if not lazy and any(s.acked is not None and s.acked <= point for s in closing) and not closed:
        v.problems.append(f"{name}: acked close lost")
    for pid in run.idempotent:
        seqs = [by_id[m].pseq for m in ids if m in by_id and m.startswith(pid + ":")]
        want = max((s for s in seqs if s is not None), default=None)
        have = producers.get(pid)
        have_seq = have.seq if have is not None else None
        if want is not None and have_seq != want:
            v.problems.append(f"{name}: producer {pid} rebuilt at seq {have_seq}, log has {want}")


def _history_at(run: Run, name: str, point: int, first: int) -> History:
    h = History()
    for s in run.sent:
        if s.channel != name or s.invoked >= point:
            continue
        if s.seq is not None and s.seq < first:
            continue  # dropped by retention
        op = h.invoke(s.msg_id, name)
        if s.acked is not None and s.acked <= point and s.seq is not None:
            op.status, op.seq = "ok", s.seq - first
        else:
            op.status = "info"
    return h
