"""``chanctl fsck`` on NATS: what a daemon can check of a channel JetStream stores.

JetStream keeps its own checksums of the message blocks and checks them itself, and chanctl
cannot see the files. What it can verify is its own layer: every stored message of the channel's
stream decodes as a chanctl record (header, payload lengths that add up), and the records'
offsets follow each other without a gap up to the channel's durable end. A record that fails
quarantines the channel (appends refused, ``Chanctl-Corrupt-Offset``), as on local disk.
"""

from __future__ import annotations

from ..base import ChannelCheck, Problem
from .channel import Chan
from .records import Record
from .shared import Shared

BATCH = 256
BATCH_BYTES = 4 * 1024 * 1024


async def verify_chan(sh: Shared, chan: Chan) -> ChannelCheck:
    """Walk every message stored in the channel's stream when the check starts, from the
    oldest retained one (appends made meanwhile are not waited for). Messages past the durable
    end are checked too: one that is not a chanctl record would stop the next append."""
    st = chan.state
    end_sseq, end = chan.last_sseq, st.durable_seq  # one snapshot: no await in between
    bounds = await sh.api.bounds(chan.where.stream)
    end_sseq = max(end_sseq, bounds[1] if bounds is not None else 0)
    out = ChannelCheck(st.name, chan.where.stream, backend="nats")
    sseq, expect = chan.first_sseq, None
    while sseq <= end_sseq and out.corrupt is None:
        recs, bad = await _fetch(sh, chan, sseq)
        for rec in recs:
            if rec.sseq > end_sseq:
                break
            start = expect if expect is not None else rec.meta.first  # retention may trim
            if rec.meta.first != start:
                why = f"record starts at seq {rec.meta.first}, expected {start}"
                out.corrupt = Problem(start, f"message {rec.sseq}", rec.sseq, why)
                break
            expect = rec.meta.end
            out.segments += 1
            out.messages += rec.meta.count
            sseq = rec.sseq + 1
        if out.corrupt is None and bad is not None:
            at = expect if expect is not None else st.first_seq
            out.corrupt = Problem(at, f"message {bad[0]}", bad[0], bad[1])
        if not recs and bad is None:
            break  # nothing more stored (purged meanwhile): the end check below tells
    if out.corrupt is None and (expect if expect is not None else st.first_seq) < end:
        why = f"records end at seq {expect}, the channel's durable end is {end}"
        out.corrupt = Problem(expect, f"message {sseq}", sseq, why)
    if out.corrupt is not None and out.corrupt.seq is not None:
        if st.corrupt_seq is None or out.corrupt.seq < st.corrupt_seq:
            st.corrupt_seq = out.corrupt.seq
    return out


async def _fetch(sh: Shared, chan: Chan, sseq: int) -> tuple[list[Record], tuple[int, str] | None]:
    """Records from ``sseq`` on, and the first stored message that is not a chanctl record
    (its stream sequence and why), fetched one by one once a batch fails to decode."""
    stream = chan.where.stream
    try:
        recs = await sh.api.fetch(stream, sseq, BATCH, BATCH_BYTES)
        if not recs:
            one = await sh.api.leader_get(stream, sseq)  # a lagging replica answered
            recs = [] if one is None else [one]
        return recs, None
    except ValueError:
        pass
    good: list[Record] = []
    for _ in range(BATCH):
        try:
            got = await sh.api.fetch(stream, sseq, 1, BATCH_BYTES)
        except ValueError as exc:
            return good, (sseq, str(exc))
        if not got:
            break
        good.append(got[0])
        sseq = got[0].sseq + 1
    return good, None
