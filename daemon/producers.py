"""Idempotent producers (PROTOCOL.md section 5.2.1): Kafka-style epoch fencing and sequence
deduplication, decided against the channel's *pending* producer state so that pipelined
requests see each other's effect before any of them is durable."""

from __future__ import annotations

from enum import Enum

from chanctl.protocol import H_PRODUCER_EPOCH, H_PRODUCER_EXPECTED_SEQ, H_PRODUCER_RECEIVED_SEQ

from .errors import BadRequest, Conflict, Forbidden
from .store.base import ChannelState, ProducerStamp


class Verdict(Enum):
    NEW = "new"  # the next batch of this producer: append it
    DUPLICATE = "duplicate"  # already accepted: answer 204 without writing
    STALE_EPOCH = "stale-epoch"  # a zombie from an older epoch: 403
    GAP = "gap"  # a batch is missing in between: 409
    BAD_NEW_EPOCH = "bad-new-epoch"  # a new epoch must start at seq 0: 400


def classify(st: ChannelState, stamp: ProducerStamp) -> Verdict:
    known = st.producers.get(stamp.producer_id)
    if known is None:
        return Verdict.NEW if stamp.seq == 0 else Verdict.GAP
    if stamp.epoch < known.epoch:
        return Verdict.STALE_EPOCH
    if stamp.epoch > known.epoch:
        return Verdict.NEW if stamp.seq == 0 else Verdict.BAD_NEW_EPOCH
    if stamp.seq <= known.seq:
        return Verdict.DUPLICATE
    return Verdict.NEW if stamp.seq == known.seq + 1 else Verdict.GAP


def expected_seq(st: ChannelState, stamp: ProducerStamp) -> int:
    known = st.producers.get(stamp.producer_id)
    return 0 if known is None else known.seq + 1


def reject(st: ChannelState, stamp: ProducerStamp, verdict: Verdict) -> None:
    """Raise the protocol error for a refused verdict (NEW and DUPLICATE return quietly)."""
    known = st.producers.get(stamp.producer_id)
    if verdict is Verdict.STALE_EPOCH and known is not None:
        raise Forbidden(
            f"producer {stamp.producer_id!r} epoch {stamp.epoch} is stale: epoch {known.epoch} "
            "has taken over (retry with a higher epoch to claim the producer)",
            {H_PRODUCER_EPOCH: str(known.epoch)},
        )
    if verdict is Verdict.BAD_NEW_EPOCH:
        raise BadRequest(
            f"producer {stamp.producer_id!r} started epoch {stamp.epoch} at seq {stamp.seq}: "
            "a new epoch must start at Producer-Seq 0"
        )
    if verdict is Verdict.GAP:
        want = expected_seq(st, stamp)
        raise Conflict(
            f"producer {stamp.producer_id!r} sent seq {stamp.seq} but seq {want} is next: "
            "an earlier batch is missing",
            {H_PRODUCER_EXPECTED_SEQ: str(want), H_PRODUCER_RECEIVED_SEQ: str(stamp.seq)},
        )


def highest_accepted(st: ChannelState, stamp: ProducerStamp) -> tuple[int, int]:
    """(epoch, seq) to echo on a duplicate: the highest the channel accepted, which a client
    uses to confirm pipelined requests after a crash."""
    known = st.producers.get(stamp.producer_id)
    return (stamp.epoch, stamp.seq) if known is None else (known.epoch, known.seq)
