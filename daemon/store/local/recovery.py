"""Opening a channel from disk: recover the tail segment, report what was lost.

Only the last segment is replayed: it starts with STATE records holding the producer table,
last Stream-Seq and closed flag as of its first message, so replaying its DATA records rebuilds
the exact pending state. At the first record that overruns the file, fails the length bound,
fails its checksum or has inconsistent fields, the file is truncated there, fsynced, and the
lost byte range (and first lost seq) is logged on ``chanctl.store`` (style rule 5: truncate and
report, never drop silently). A last segment without a complete STATE prefix holds no data that
was ever acknowledged (the roll protocol makes STATE durable first), so it counts as empty and
is removed; recovery then continues from the previous segment.

Everything here is blocking file I/O and runs in an executor thread.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from ..base import ProducerState
from .disk import Disk
from .producers import remember_producer
from .records import (
    KIND_DATA,
    KIND_STATE,
    RecordError,
    Scanner,
    decode_data,
    decode_state,
    encode_state,
    record_kind,
)
from .segment import INDEX_EVERY, list_segments_blocking, segment_name
from .tail import (
    CHECKPOINT_FILE,
    Recovered,
    TailState,
    decode_checkpoint,
    probe_crc,
    probe_range,
)

log = logging.getLogger("chanctl.store")


def recover_blocking(
    disk: Disk, chan_dir: str, label: str, fresh_base: int, max_record: int, cap: int, sync: bool
) -> Recovered:
    """Recover a channel directory; ``fresh_base`` seeds an empty log if no segment survives."""
    segs = list_segments_blocking(disk, chan_dir)
    while segs:
        base, path, size, _ = segs[-1]
        start = _checkpointed_tail(disk, chan_dir, path, size)
        ckpt_at = start.size if start is not None else None
        tail = _replay_tail(disk, path, base, size, label, max_record, cap, sync, start)
        if tail is not None:
            return Recovered(segs[:-1], tail, ckpt_at)
        log.warning(
            "channel %r: segment %s has no complete state header (%d bytes); "
            "treating it as empty and removing it",
            label,
            os.path.basename(path),
            size,
        )
        disk.unlink(path)
        if sync:
            disk.fsync_dir(chan_dir)
        segs.pop()
        if not segs and base != fresh_base:
            log.error("channel %r: no segment left; producer state before %d is lost", label, base)
        fresh_base = base
    path = os.path.join(chan_dir, segment_name(fresh_base))
    size = new_segment_blocking(disk, chan_dir, path, encode_state(fresh_base, 0, False, None, []))
    return Recovered([], TailState(fresh_base, path, size, fresh_base))


def _checkpointed_tail(disk: Disk, chan_dir: str, path: str, size: int) -> TailState | None:
    """The checkpointed tail state, when the checkpoint is about this segment and the bytes
    before its position are still the ones it saw; replay continues from there."""
    try:
        tail = read_checkpoint_blocking(disk, chan_dir, path, size)
    except FileNotFoundError:
        return None
    if tail is None:
        log.info("channel directory %s: stale checkpoint, replaying the whole tail", chan_dir)
    return tail


def read_checkpoint_blocking(disk: Disk, chan_dir: str, path: str, size: int) -> TailState | None:
    """The tail state ``tail.ckpt`` records for segment ``path`` (now ``size`` bytes long), or
    None when it is about another segment, damaged, or the bytes it saw have changed. Raises
    FileNotFoundError when there is no checkpoint. Quiet: listings use it too."""
    data = disk.read_small(os.path.join(chan_dir, CHECKPOINT_FILE), 64 << 20)
    found = decode_checkpoint(data, path)
    if found is None or not 0 <= found[0].size <= size:
        return None
    tail, crc = found
    if probe_crc(disk.read_range(path, *probe_range(tail.size))) != crc:
        return None
    return tail


def new_segment_blocking(disk: Disk, chan_dir: str, path: str, state: list[bytes]) -> int:
    """Create a segment holding only its STATE records, durably (file, then directory)."""
    fd = disk.open_append(path, create=True)
    try:
        disk.write_all(fd, state)
        disk.fdatasync(fd)
    finally:
        disk.close(fd)
    disk.fsync_dir(chan_dir)
    return sum(map(len, state))


def _replay_tail(
    disk: Disk,
    path: str,
    base: int,
    size: int,
    label: str,
    max_record: int,
    cap: int,
    sync: bool,
    start: TailState | None,
) -> TailState | None:
    """Replay the segment (from the checkpoint's position if there is one); None when it has
    no complete STATE prefix. Truncates a torn tail."""
    fd = disk.open_append(path)
    try:
        tail = start if start is not None else TailState(base, path, size, base)
        begin = tail.size if start is not None else 0
        tail.size = size  # until a bad record says otherwise
        scanner = Scanner(lambda off, n: disk.pread(fd, n, off), begin, size, max_record)
        if not _replay_records(scanner, tail, cap, state_done=start is not None):
            return None
        if scanner.error is not None:
            _truncate_tail(disk, fd, tail, scanner.pos, scanner.error, label, sync)
        return tail
    finally:
        disk.close(fd)


@dataclass
class SegmentCheck:
    """What checking one whole segment found (``check_segment_blocking``)."""

    end_seq: int  # the seq after the last valid record
    bad_pos: int | None = None  # the first byte that failed, None when the segment is clean
    reason: str | None = None
    header_ok: bool = True  # False: no complete STATE prefix (a tail would be removed)


def check_segment_blocking(
    disk: Disk, path: str, base: int, size: int, max_record: int, cap: int
) -> SegmentCheck:
    """Verify a whole segment exactly as recovery replays a tail (length bounds, checksums,
    STATE prefix, field consistency, seq continuity), without changing anything: the checks
    of ``chanctl fsck``. Opens the file read-only."""
    tail = TailState(base, path, size, base)
    scanner = Scanner(lambda off, n: disk.read_range(path, off, n), 0, size, max_record)
    header_ok = _replay_records(scanner, tail, cap, state_done=False)
    out = SegmentCheck(tail.end_seq, header_ok=header_ok)
    if scanner.error is not None:
        out.bad_pos, out.reason = scanner.pos, scanner.error
    elif not header_ok:
        out.bad_pos, out.reason = scanner.pos, "segment has no complete STATE header"
    return out


def _replay_records(scanner: Scanner, tail: TailState, cap: int, state_done: bool) -> bool:
    """Apply STATE then DATA records to ``tail``; False when the STATE prefix is incomplete."""
    last_indexed = tail.entries[-1][1] if tail.entries else -INDEX_EVERY
    for pos, rec in scanner:
        kind = record_kind(rec)
        try:
            if not state_done:
                if kind != KIND_STATE:
                    raise RecordError("segment does not start with a STATE record")
                state_done = _apply_state(tail, rec)
                continue
            if kind != KIND_DATA:
                raise RecordError(f"unexpected record kind {kind}")
            first = _apply_data(tail, rec, cap)
        except RecordError as exc:
            scanner.error, scanner.pos = str(exc), pos
            break
        if pos - last_indexed >= INDEX_EVERY:
            tail.entries.append((first, pos))
            last_indexed = pos
    return state_done


def _apply_state(tail: TailState, rec: memoryview) -> bool:
    st = decode_state(rec)
    if st.next_seq != tail.base:
        raise RecordError(f"STATE says seq {st.next_seq}, the segment name says {tail.base}")
    tail.producers.update(st.producers)
    tail.stream_seq, tail.closed = st.stream_seq, st.closed
    tail.last_time = max(tail.last_time, st.time_ns / 1e9)
    return not st.more


def _apply_data(tail: TailState, rec: memoryview, cap: int) -> int:
    """Replay one batch onto ``tail``; returns its first seq."""
    dr = decode_data(rec)
    if dr.first_seq != tail.end_seq:
        raise RecordError(f"record starts at seq {dr.first_seq}, expected {tail.end_seq}")
    when = dr.time_ns / 1e9
    if dr.producer is not None:
        p = dr.producer
        remember_producer(tail.producers, p.producer_id, ProducerState(p.epoch, p.seq, when), cap)
    if dr.stream_seq is not None:
        tail.stream_seq = dr.stream_seq
    tail.closed = tail.closed or dr.close
    tail.end_seq += len(dr.lengths)
    tail.last_time = when
    return dr.first_seq


def _truncate_tail(
    disk: Disk, fd: int, tail: TailState, pos: int, reason: str, label: str, sync: bool
) -> None:
    log.warning(
        "channel %r: segment %s: torn or corrupt tail at byte %d (%s); truncating, "
        "lost bytes %d..%d (messages from seq %d on, if any)",
        label,
        os.path.basename(tail.path),
        pos,
        reason,
        pos,
        tail.size,
        tail.end_seq,
    )
    disk.hit("recovery.before_truncate")
    disk.truncate(fd, pos)
    if sync:
        disk.fsync(fd)
    tail.size = pos
