"""The per-channel writer: one record in flight at a time, everything queued meanwhile in the
next one (group commit), each publish conditional on the stream's last sequence.

``Nats-Expected-Last-Sequence`` is what makes several daemons safe on one channel: a record
is stored only on top of the record its offsets were computed from, so two daemons can never
interleave half-valid records. Pipelining several publishes would break that guarantee (a
later publish could land on top of another daemon's record after an earlier one of ours was
refused), so depth is one and throughput comes from grouping.
"""

from __future__ import annotations

import asyncio
import logging
from array import array

from ..base import StorageFailed
from .channel import Chan
from .conn import PublishConflict
from .records import HEADER, Record, encode_meta
from .shared import Shared

log = logging.getLogger("chanctl.store.nats")
RESYNC_BATCH = 256


def kick(sh: Shared, chan: Chan) -> None:
    """Start the channel's writer unless it is running (it drains the whole queue)."""
    if chan.writer is None and chan.queue:
        chan.writer = asyncio.get_running_loop().create_task(_writer(sh, chan))


async def _writer(sh: Shared, chan: Chan) -> None:
    try:
        while chan.queue and not chan.state.deleted:
            if chan.stale:
                chan.rebase()
                continue
            await _publish_next(sh, chan)
    except StorageFailed as exc:
        log.warning("channel %r: %s", chan.state.name, exc)
        chan.fail_all(exc)
    except Exception as exc:  # never leave an append waiting forever
        log.exception("channel %r: writer failed", chan.state.name)
        chan.fail_all(StorageFailed(f"NATS writer failed: {exc!r}"))
    finally:
        chan.writer = None
        if chan.state.deleted:
            chan.fail_all(StorageFailed(f"channel {chan.state.name!r} was deleted"))


async def _publish_next(sh: Shared, chan: Chan) -> None:
    group = chan.take_group(sh.max_record)
    rid = sh.new_rid()
    chan.inflight_rid = rid
    meta, messages = chan.record_meta(rid, group)
    lengths = array("I", [len(m) for m in messages])
    data = b"".join(messages)
    headers = {
        HEADER: encode_meta(meta),
        "Nats-Msg-Id": rid,
        "Nats-Expected-Last-Sequence": str(chan.last_sseq),
    }
    try:
        sseq = await _publish_retrying(sh, chan, lengths.tobytes() + data, headers)
    except PublishConflict as exc:
        await resync(sh, chan, exc.last_seq)
        if chan.inflight:  # our record is not among the ones stored meanwhile
            chan.rebase()
        return
    rec = Record(sseq, meta, lengths, data)
    sh.cache.put(chan.where.stream, rec)
    chan.observe(rec)  # settles the group, unless the live consumer already did
    sh.on_commit(chan.state.name)


async def _publish_retrying(sh: Shared, chan: Chan, payload: bytes, headers: dict[str, str]) -> int:
    """Publish until acknowledged, through reconnects and leader elections, up to a deadline.

    Retries carry the same ``Nats-Msg-Id``, so a publish that was stored although its ack was
    lost is acknowledged as a duplicate instead of being stored twice.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + sh.ns.publish_deadline_s
    delay = 0.05
    while True:
        try:
            return await sh.api.publish(chan.where.subject, payload, headers)
        except PublishConflict:
            raise
        except StorageFailed:
            if loop.time() + delay > deadline or chan.state.deleted:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


async def resync(sh: Shared, chan: Chan, target: int | None) -> None:
    """Apply the records other daemons stored after ours, up to ``target`` (the stream's last
    sequence as the refused publish reported it, else asked for)."""
    stream = chan.where.stream
    if target is None:
        bounds = await sh.api.bounds(stream)
        target = 0 if bounds is None else bounds[1]
    while chan.last_sseq < target:
        want = chan.last_sseq + 1
        recs = await sh.api.fetch(stream, want, RESYNC_BATCH, 8 * 1024 * 1024)
        if not recs or recs[0].sseq != want:
            one = await sh.api.leader_get(stream, want)
            if one is None:
                raise StorageFailed(f"record {want} of channel {chan.state.name!r} is missing")
            recs = [one]
        for rec in recs:
            sh.cache.put(stream, rec)
            chan.observe(rec)
