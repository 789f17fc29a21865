"""Reads: durable messages of one channel, segment by segment, checksum-checked.

Readers only ever see the durable horizon (``durable_seq``, and per segment its durable size).
Every record read is verified; the first corrupt record of a channel quarantines everything at
and after it: earlier messages are still served, a read reaching it gets CorruptData with the
seq, and ``state.corrupt_seq`` records it (the service reports it as a header). A sealed segment
whose records end short of the next segment's base was truncated, which counts the same.

Quarantine (C6 of reliability.md) is found lazily, by the first read that reaches the damaged
segment (opening a channel verifies only its tail), and lasts until the daemon stops; the next
run finds it again the same way. While it lasts: reads at or after the record get HTTP 500 with
``Chanctl-Corrupt-Offset`` (``errors.as_stream_error``), appends get 503 (``errors.Quarantined``),
retention drops none of the channel's segments and expiry does not delete it
(``ServiceCore.remove_expired_locked``). Nothing here ever deletes or truncates a sealed segment:
repairing is `chanctl fsck`'s job, with the operator's consent.
"""

from __future__ import annotations

import asyncio
import logging
import os
from bisect import bisect_right

from ..base import ChannelGone, ChannelMissing, CorruptData, StorageFailed
from .channel_log import ChannelLog
from .segment import ReadPlan, Segment, SegmentRead, index_blocking, read_blocking

log = logging.getLogger("chanctl.store")


async def read_log(
    lg: ChannelLog, start_seq: int, max_bytes: int, max_messages: int, raw: bool
) -> SegmentRead:
    """Up to the caps of durable messages from ``start_seq`` (at least one when any exist).
    Reads of the newest messages come from the channel's tail cache when it holds them."""
    st = lg.state
    if start_seq < st.first_seq:
        raise ChannelGone(f"offset {start_seq} is below the earliest retained {st.first_seq}")
    if st.corrupt_seq is None and lg.cache is not None:
        hit = lg.cache.read(start_seq, st.durable_seq, max_bytes, max_messages, raw)
        if hit is not None:
            return hit
    acc = await _read_disk(lg, start_seq, max_bytes, max_messages, raw)
    if acc.next_seq >= st.durable_seq:
        lg.watch()  # a reader at the tail: it will likely ask for what comes next
    return acc


async def _read_disk(
    lg: ChannelLog, start_seq: int, max_bytes: int, max_messages: int, raw: bool
) -> SegmentRead:
    st = lg.state
    acc = SegmentRead(next_seq=start_seq, raw=raw)
    while acc.next_seq < st.durable_seq and acc.count < max_messages:
        if acc.count and acc.size >= max_bytes:
            break
        seq = acc.next_seq
        if st.corrupt_seq is not None and seq >= st.corrupt_seq:
            if acc.count:
                break
            raise CorruptData(st.name, st.corrupt_seq, "a record failed its integrity check")
        if seq < st.first_seq:
            break  # retention ran while we read: the next read gets ChannelGone
        i = bisect_right(lg.segments, seq, key=lambda s: s.base) - 1
        seg = lg.segments[i]
        nxt = lg.segments[i + 1] if i + 1 < len(lg.segments) else None
        if seg.sealed and not seg.indexed:
            await _index(lg, seg, nxt.base if nxt is not None else None)
            continue
        if seg.bad_seq is not None and seq >= seg.bad_seq:
            _quarantine(lg, seg, seg.bad_seq, "")
            continue
        part = await _read_part(lg, seg, acc, max_bytes, max_messages, raw)
        _merge(acc, part)
        if part.bad_pos is not None:
            seg.mark_bad(part.bad_pos, part.bad_seq)
            _quarantine(lg, seg, part.bad_seq, part.reason or "")
        elif not part.reached_end or nxt is None:
            break
        elif acc.next_seq != nxt.base and acc.next_seq < st.durable_seq:
            seg.mark_bad(seg.size, acc.next_seq)
            _quarantine(lg, seg, acc.next_seq, f"segment ends before seq {nxt.base}")
    return acc


def _merge(acc: SegmentRead, part: SegmentRead) -> None:
    acc.messages += part.messages
    acc.chunks += part.chunks
    acc.lengths += part.lengths
    acc.count, acc.size, acc.next_seq = part.count, part.size, part.next_seq


async def _read_part(
    lg: ChannelLog, seg: Segment, acc: SegmentRead, max_bytes: int, max_messages: int, raw: bool
) -> SegmentRead:
    scan_seq, pos = seg.lookup(acc.next_seq)
    plan = ReadPlan(
        start_pos=pos,
        scan_seq=scan_seq,
        end_pos=seg.readable_end(),
        start_seq=acc.next_seq,
        max_bytes=max_bytes,
        max_messages=max_messages,
        raw=raw,
        max_record=lg.shared.max_record,
        count0=acc.count,
        size0=acc.size,
    )
    fd = _acquire(lg, seg)
    try:
        return await lg.shared.run(read_blocking, lg.shared.disk, fd, plan)
    except OSError as exc:
        raise StorageFailed(f"reading {os.path.basename(seg.path)}: {exc.strerror}") from exc
    finally:
        lg.shared.pool.release(seg.path, fd)


def _acquire(lg: ChannelLog, seg: Segment) -> int:
    try:
        return lg.shared.pool.acquire(seg.path)
    except FileNotFoundError:
        if lg.removed:  # deleted while this read was on its way
            raise ChannelMissing(lg.state.name) from None
        seg.mark_bad(0, seg.base)
        _quarantine(lg, seg, seg.base, "segment file is missing")
        raise CorruptData(lg.state.name, seg.base, "segment file is missing") from None
    except OSError as exc:
        raise StorageFailed(f"opening {os.path.basename(seg.path)}: {exc.strerror}") from exc


async def _index(lg: ChannelLog, seg: Segment, expect_end: int | None) -> None:
    """Scan a sealed segment once (concurrent readers share the scan)."""
    running = lg.indexing.get(seg.path)
    if running is not None:
        await running
        return
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    lg.indexing[seg.path] = done
    try:
        fd = _acquire(lg, seg)
        try:
            shared = lg.shared
            args = (shared.disk, fd, seg.base, seg.size, expect_end, shared.max_record)
            scan = await shared.run(index_blocking, *args)
        finally:
            lg.shared.pool.release(seg.path, fd)
        seg.apply_index(scan)
        if scan.bad_pos is not None:
            _quarantine(lg, seg, scan.end_seq, scan.reason or "")
    finally:
        del lg.indexing[seg.path]
        done.set_result(None)


def _quarantine(lg: ChannelLog, seg: Segment, seq: int, reason: str) -> None:
    """Record the first unservable seq and say so once in the daemon log."""
    st = lg.state
    if st.corrupt_seq is None or seq < st.corrupt_seq:
        st.corrupt_seq = seq
        log.error(
            "channel %r: segment %s is corrupt at byte %s (message %d): %s; messages from %d on "
            "are not served (run `chanctl fsck`)",
            st.name,
            os.path.basename(seg.path),
            seg.bad_pos,
            seq,
            reason or "integrity check failed",
            seq,
        )
