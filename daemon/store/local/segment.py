"""One segment file: where its records are, and how to read messages out of it.

A segment is named after the sequence number of its first message (``%020d.log``, Kafka's
base-offset naming), so "which segment holds seq N" is a bisect over names. Each segment keeps a
sparse in-memory index (one entry per ~64 KiB of records); it is only a cache, rebuilt by
scanning when a sealed segment is first read. Functions named ``*_blocking`` do file I/O and run
in an executor thread, never on the event loop; they only touch the bytes they are given and
return results the loop applies.
"""

from __future__ import annotations

import os
from array import array
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate

from ..base import Message
from .disk import Disk
from .records import (
    KIND_DATA,
    KIND_STATE,
    DataRecord,
    RecordError,
    Scanner,
    decode_data,
    record_kind,
)

INDEX_EVERY = 64 * 1024
_SUFFIX = ".log"


def segment_name(base: int) -> str:
    return f"{base:020d}{_SUFFIX}"


def parse_segment_name(filename: str) -> int | None:
    stem = filename.removesuffix(_SUFFIX)
    if stem == filename or len(stem) != 20 or not stem.isdigit():
        return None
    return int(stem)


class Segment:
    """Bookkeeping for one segment file; mutated only on the event loop."""

    __slots__ = (
        "base",
        "path",
        "size",
        "durable_size",
        "end_seq",
        "sealed",
        "indexed",
        "bad_pos",
        "bad_seq",
        "last_time",
        "_seqs",
        "_poss",
    )

    def __init__(self, base: int, path: str, size: int, sealed: bool) -> None:
        self.base = base
        self.path = path
        self.size = size  # bytes in the file (the writer's view)
        self.durable_size = size  # bytes readers may see
        self.end_seq: int | None = None  # seq after the last record, once known
        self.sealed = sealed
        self.indexed = False
        self.bad_pos: int | None = None  # first corrupt record (quarantine)
        self.bad_seq: int | None = None
        self.last_time = 0.0  # newest message time; file mtime until scanned
        self._seqs = array("q")
        self._poss = array("q")

    def note_record(self, first_seq: int, pos: int) -> None:
        """Remember a record start if it is far enough from the last indexed one."""
        if not self._poss or pos - self._poss[-1] >= INDEX_EVERY:
            self._seqs.append(first_seq)
            self._poss.append(pos)

    def lookup(self, seq: int) -> tuple[int, int]:
        """The indexed (first_seq, position) at or before ``seq``: where a scan may start."""
        i = bisect_right(self._seqs, seq) - 1
        if i < 0:
            return self.base, 0
        return self._seqs[i], self._poss[i]

    def index_entries(self) -> list[tuple[int, int]]:
        return list(zip(self._seqs, self._poss, strict=True))

    def readable_end(self) -> int:
        """How far readers may go: the durable size, or the first corrupt record."""
        end = self.durable_size if not self.sealed else self.size
        return end if self.bad_pos is None else min(end, self.bad_pos)

    def apply_index(self, scan: IndexScan) -> None:
        for seq, pos in scan.entries:
            self.note_record(seq, pos)
        self.end_seq = scan.end_seq
        self.indexed = True
        if scan.last_time:
            self.last_time = scan.last_time
        if scan.bad_pos is not None:
            self.mark_bad(scan.bad_pos, scan.end_seq)

    def mark_bad(self, pos: int, seq: int) -> None:
        if self.bad_pos is None or pos < self.bad_pos:
            self.bad_pos, self.bad_seq = pos, seq


def decode_batch(rec: memoryview) -> DataRecord:
    """A DATA record after the STATE prefix. Any other kind is corruption (as recovery and
    fsck see it), so the index and the reader never disagree about which records hold
    messages: the index used to skip an unknown kind that the reader decoded as DATA."""
    kind = record_kind(rec)
    if kind != KIND_DATA:
        raise RecordError(f"unexpected record kind {kind}")
    return decode_data(rec)


@dataclass
class IndexScan:
    entries: list[tuple[int, int]] = field(default_factory=list)
    end_seq: int = 0
    last_time: float = 0.0
    bad_pos: int | None = None
    reason: str | None = None


def index_blocking(
    disk: Disk, fd: int, base: int, size: int, expect_end: int | None, max_record: int
) -> IndexScan:
    """Scan a sealed segment: sparse index entries and the first corrupt record, if any.

    ``expect_end`` is the next segment's base: a sealed segment whose valid records stop short
    of it was truncated, which is corruption too.
    """
    out = IndexScan(end_seq=base)
    scanner = Scanner(lambda off, n: disk.pread(fd, n, off), 0, size, max_record)
    last_pos = -INDEX_EVERY
    for pos, rec in scanner:
        if record_kind(rec) == KIND_STATE:
            continue
        try:
            dr = decode_batch(rec)
        except RecordError as exc:
            scanner.error = str(exc)
            scanner.pos = pos
            break
        if dr.first_seq != out.end_seq:
            scanner.error = f"record starts at seq {dr.first_seq}, expected {out.end_seq}"
            scanner.pos = pos
            break
        if pos - last_pos >= INDEX_EVERY:
            out.entries.append((dr.first_seq, pos))
            last_pos = pos
        out.end_seq += len(dr.lengths)
        out.last_time = dr.time_ns / 1e9
    if scanner.error is not None:
        out.bad_pos, out.reason = scanner.pos, scanner.error
    elif expect_end is not None and out.end_seq != expect_end:
        out.bad_pos = size
        out.reason = f"segment ends at seq {out.end_seq}, the next one starts at {expect_end}"
    return out


@dataclass
class SegmentRead:
    """What one pass over a segment produced (either ``messages`` or ``chunks``/``lengths``)."""

    next_seq: int
    messages: list[Message] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    count: int = 0
    size: int = 0
    reached_end: bool = False  # walked every record up to the readable end
    bad_pos: int | None = None
    bad_seq: int = 0  # first seq of the corrupt record (may lie before the read's start)
    reason: str | None = None
    raw: bool = False  # fill chunks/lengths rather than messages


@dataclass
class ReadPlan:
    start_pos: int
    scan_seq: int  # first seq of the record at start_pos
    end_pos: int
    start_seq: int
    max_bytes: int
    max_messages: int
    raw: bool
    max_record: int
    count0: int = 0  # messages already collected by earlier segments (caps are global)
    size0: int = 0


def read_blocking(disk: Disk, fd: int, plan: ReadPlan) -> SegmentRead:
    """Collect durable messages from one segment, verifying every record's checksum."""
    out = SegmentRead(next_seq=plan.start_seq, count=plan.count0, size=plan.size0, raw=plan.raw)
    scanner = Scanner(
        lambda off, n: disk.pread(fd, n, off),
        plan.start_pos,
        plan.end_pos,
        plan.max_record,
        chunk=min(1 << 20, max(plan.max_bytes + 4096, 64 * 1024)),
    )
    expect = plan.scan_seq
    for pos, rec in scanner:
        if record_kind(rec) == KIND_STATE:
            continue
        try:
            dr = decode_batch(rec)
            if dr.first_seq != expect:
                raise RecordError(f"record starts at seq {dr.first_seq}, expected {expect}")
        except RecordError as exc:
            out.bad_pos, out.bad_seq, out.reason = pos, expect, str(exc)
            return out
        expect += len(dr.lengths)
        if expect <= plan.start_seq:
            continue
        if not _take(out, plan, dr, rec):
            return out
    if scanner.error is not None:
        out.bad_pos, out.bad_seq, out.reason = scanner.pos, expect, scanner.error
    else:
        out.reached_end = True
    return out


def _take(out: SegmentRead, plan: ReadPlan, dr: DataRecord, rec: memoryview) -> bool:
    """Add the record's wanted messages to ``out``; False once a cap is reached."""
    payload = rec[dr.payload_off :]
    when = dr.time_ns / 1e9
    return take(out, dr.first_seq, when, dr.lengths, payload, plan.max_messages, plan.max_bytes)


def take(
    out: SegmentRead,
    first_seq: int,
    when: float,
    lengths: tuple[int, ...],
    payload: bytes | memoryview,
    max_messages: int,
    max_bytes: int,
) -> bool:
    """Add the messages of one batch (its ``lengths`` and concatenated ``payload``) from
    ``out.next_seq`` on to ``out``, within the caps; False once a cap is reached. Shared by disk
    reads and the tail cache, so both cut chunks at exactly the same places. ``out.messages``
    is filled unless ``out`` is a raw read (``out.raw``)."""
    skip = out.next_seq - first_seq
    wanted = lengths[skip:] if skip else lengths
    room = max_messages - out.count
    total = sum(wanted)
    if len(wanted) <= room and out.size + total <= max_bytes:
        n, taken = len(wanted), total  # common case: the whole batch fits
    else:
        n, taken = _fit(wanted, room, out.size, out.count, max_bytes)
    if n:
        start = sum(lengths[:skip]) if skip else 0
        part = bytes(payload[start : start + taken])  # a whole bytes payload is not copied
        if out.raw:
            out.chunks.append(part)
            out.lengths.extend(wanted[:n])
        else:
            _messages(out, first_seq + skip, when, part, wanted[:n])
        out.count += n
        out.size += taken
        out.next_seq += n
    return n == len(wanted) and out.count < max_messages and out.size < max_bytes


def _fit(
    lengths: tuple[int, ...], room: int, size: int, count: int, max_bytes: int
) -> tuple[int, int]:
    n = taken = 0
    for length in lengths[:room]:
        if count + n > 0 and size + taken + length > max_bytes:
            break
        n += 1
        taken += length
    return n, taken


def _messages(
    out: SegmentRead, seq: int, when: float, payload: bytes, lengths: tuple[int, ...]
) -> None:
    ends = list(accumulate(lengths))
    starts = [0, *ends[:-1]]
    append = out.messages.append
    for i, (a, b) in enumerate(zip(starts, ends, strict=True)):
        append(Message(seq + i, when, payload[a:b]))


def list_segments_blocking(disk: Disk, chan_dir: str) -> list[tuple[int, str, int, float]]:
    """(base, path, size, mtime) of every segment file in a channel directory, by base."""
    out = []
    for fn in disk.listdir(chan_dir):
        base = parse_segment_name(fn)
        if base is not None:
            path = os.path.join(chan_dir, fn)
            out.append((base, path, disk.file_size(path), disk.mtime(path)))
    out.sort()
    return out
