"""Appending and closing (PROTOCOL.md sections 5.2, 5.2.1 and stream closure).

Everything from the state lookup to ``store.submit`` runs without yielding to the event loop:
that is what serializes validation and append per channel (two requests can never both pass the
same Stream-Seq or Producer-Seq check), without a lock on the hot path. The store persists the
producer stamp, Stream-Seq and close marker atomically with the batch.

A quarantined channel (a read met a corrupt record: C6 of reliability.md) refuses every append
with 503 (``errors.Quarantined``) before anything else is checked. Then checks run in the
protocol's precedence: closed, then content type, then body, then producer, then Stream-Seq (so
a producer's retry is recognised as a duplicate before its Stream-Seq, which the original
already consumed, could be reported as a regression).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from chanctl.protocol import H_CLOSED, H_NEXT_OFFSET, format_offset, parse_content_type

from .core import ServiceCore
from .errors import BadRequest, Conflict, PayloadTooLarge, Quarantined
from .jsonmode import split_messages
from .model import AppendRequest, AppendResult
from .producers import Verdict, classify, highest_accepted, reject
from .store.base import AppendBatch, ChannelState, Committed


async def append(core: ServiceCore, req: AppendRequest) -> AppendResult:
    """POST: append (and/or close); answers once the batch is durable."""
    st = await core.lookup(req.name)
    if st.corrupt_seq is not None:  # known once a read met the corrupt record
        raise Quarantined(st.name, st.corrupt_seq)
    close_only = req.close and not req.body
    if not req.body and not req.close:
        raise BadRequest("empty body: an append needs data (or Stream-Closed: true to close)")
    if st.closed:
        return await _on_closed(core, st, req, close_only)
    messages: list[bytes] = []
    if not close_only:
        is_json = _check_content_type(st, req.content_type)
        messages = split_messages(req.body, is_json, allow_empty_array=False)
        check_message_sizes(core, messages)
    if req.producer is not None:
        verdict = classify(st, req.producer)
        if verdict is Verdict.DUPLICATE:
            return await _duplicate(core, st, req)
        reject(st, req.producer, verdict)
    _check_stream_seq(st, req.stream_seq)
    batch = AppendBatch(messages, req.producer, req.stream_seq, req.close)
    committed = await _commit(core, st.name, batch)
    core.touch(st.name)
    stamp = req.producer
    return AppendResult(
        next_seq=committed.next_seq,
        closed=committed.closed,
        duplicate=False,
        wrote=bool(messages),
        producer_epoch=None if stamp is None else stamp.epoch,
        producer_seq=None if stamp is None else stamp.seq,
    )


async def _commit(core: ServiceCore, name: str, batch: AppendBatch) -> Committed:
    fut = core.track(name, core.store.submit(name, batch))
    try:
        # Shielded: a cancelled request must not cancel a commit other requests may wait on.
        return await asyncio.shield(fut)
    finally:
        core.untrack(name, fut)


def _check_content_type(st: ChannelState, given: str | None) -> bool:
    """The append's Content-Type must name the channel's media type; returns "is JSON"."""
    if not given:
        raise BadRequest("missing Content-Type: an append must state the channel's content type")
    ct = parse_content_type(given)
    if ct is None:
        raise BadRequest(f"invalid Content-Type {given!r}")
    own = parse_content_type(st.config.content_type)
    if own is not None and not ct.same_type(own):
        raise Conflict(
            f"content type {ct.media_type!r} does not match channel {st.name!r}, "
            f"which holds {own.media_type!r}"
        )
    return ct.is_json


def check_message_sizes(core: ServiceCore, messages: Sequence[bytes]) -> None:
    limit = core.settings.limits.max_message_bytes
    for msg in messages:
        if len(msg) > limit:
            raise PayloadTooLarge(f"a message of {len(msg)} bytes exceeds the {limit}-byte limit")


def _check_stream_seq(st: ChannelState, seq: str | None) -> None:
    """``Stream-Seq`` is scoped per channel and compared byte-wise (code-point order of the
    header text, which is the same order as its UTF-8 bytes)."""
    if seq is None or st.last_stream_seq is None:
        return
    if seq <= st.last_stream_seq:
        raise Conflict(
            f"Stream-Seq {seq!r} is not greater than the last one, {st.last_stream_seq!r}: "
            "sequence values must strictly increase (compared as strings)"
        )


async def _duplicate(core: ServiceCore, st: ChannelState, req: AppendRequest) -> AppendResult:
    """A retry of an accepted batch: report success once the original is durable."""
    assert req.producer is not None
    epoch, seq = highest_accepted(st, req.producer)
    await core.settle(st.name)
    core.touch(st.name)
    return AppendResult(
        next_seq=st.durable_seq,
        closed=st.durable_closed,
        duplicate=True,
        wrote=False,
        producer_epoch=epoch,
        producer_seq=seq,
    )


async def _on_closed(
    core: ServiceCore, st: ChannelState, req: AppendRequest, close_only: bool
) -> AppendResult:
    """A closed channel accepts only repeats: a plain close-only request, or a retry of an
    already accepted producer batch (such as the one that closed it)."""
    if req.producer is not None:
        verdict = classify(st, req.producer)
        if verdict is Verdict.STALE_EPOCH:
            reject(st, req.producer, verdict)
        if verdict is Verdict.DUPLICATE:
            return await _duplicate(core, st, req)
    elif close_only:
        await core.settle(st.name)
        core.touch(st.name)
        return AppendResult(st.durable_seq, True, duplicate=True, wrote=False)
    await core.settle(st.name)
    raise Conflict(
        f"channel {st.name!r} is closed: nothing more can be appended",
        {H_CLOSED: "true", H_NEXT_OFFSET: format_offset(st.next_seq)},
    )
