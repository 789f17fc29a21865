"""On-disk record framing: every record is self-checking (style rule 5).

Layout, little-endian::

    u32 total_len   whole record, these 4 bytes included
    u32 crc         CRC32C (Castagnoli) of every byte after this field
    u8  kind        DATA or STATE
    u8  flags
    ...             kind-specific fields

DATA (one AppendBatch, so its messages, producer stamp, Stream-Seq and close flag live or die
together)::

    u64 first_seq, u64 time_ns, u32 count
    [flags & PRODUCER]   u16 id_len, id (UTF-8), u64 epoch, u64 seq
    [flags & STREAM_SEQ] u16 len, value (UTF-8)
    count x u32 message lengths, then the concatenated message bytes
    (flags & CLOSE marks the batch that closes the channel)

STATE (the first record(s) of every segment, so recovery replays only the last segment and
retention can drop old segments without losing producer state). A big producer table is split
over several STATE records; all but the last carry MORE::

    u64 next_seq, u64 time_ns
    [flags & STREAM_SEQ] u16 len, value
    u32 n, then n x (u16 id_len, id, u64 epoch, u64 seq, f64 last_seen)
    (flags & CLOSED: the channel was closed before this segment began)

A length prefix outside [MIN_RECORD, max_record] is never trusted (nothing is allocated for it):
at the tail of a log it counts as a torn write, in a sealed segment as corruption.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import crc32c

from ..base import AppendBatch, ProducerStamp, ProducerState

KIND_DATA = 1
KIND_STATE = 2
F_PRODUCER = 0x01
F_STREAM_SEQ = 0x02
F_CLOSE = 0x04  # DATA: this batch closes the channel; STATE: closed before the segment
F_MORE = 0x08  # STATE: another STATE record follows

PREFIX = struct.Struct("<II")  # total_len, crc
KINDFLAGS = struct.Struct("<BB")
DATA_FIXED = struct.Struct("<BBQQI")  # kind, flags, first_seq, time_ns, count
STATE_FIXED = struct.Struct("<BBQQ")  # kind, flags, next_seq, time_ns
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_PRODUCER_NUMS = struct.Struct("<QQ")
_STATE_ENTRY = struct.Struct("<QQd")
MIN_RECORD = PREFIX.size + STATE_FIXED.size  # the smallest kind (STATE) with no fields
STATE_CHUNK_BYTES = 256 * 1024
_TEXT = ("utf-8", "surrogatepass")  # any Python str round-trips


def max_record_bytes(max_body_bytes: int) -> int:
    """The sanity bound on a record's length prefix.

    Generous on purpose: a batch of N bytes may hold up to N/2 messages (4-byte length each),
    plus producer id and Stream-Seq. It never drops below the bound for the default 1 MiB body,
    so lowering the configured limit cannot make existing records look torn.
    """
    return 256 * 1024 + 5 * max(max_body_bytes, 1 << 20)


class RecordError(ValueError):
    """A record's fields contradict each other although its checksum matched."""


def _frame(kind_and_fields: list[bytes], payload: bytes = b"") -> list[bytes]:
    head = b"".join(kind_and_fields)
    crc = crc32c.crc32c(payload, crc32c.crc32c(head)) if payload else crc32c.crc32c(head)
    prefix = PREFIX.pack(PREFIX.size + len(head) + len(payload), crc)
    return [prefix + head, payload] if payload else [prefix + head]


def _text_field(value: str) -> list[bytes]:
    raw = value.encode(*_TEXT)
    if len(raw) > 0xFFFF:
        raise ValueError(f"value of {len(raw)} bytes is too long to store (max 65535)")
    return [_U16.pack(len(raw)), raw]


def encode_data(first_seq: int, time_ns: int, batch: AppendBatch) -> list[bytes]:
    """Frame one batch; returns buffers to hand to writev as they are (no payload re-copy)."""
    flags = (F_CLOSE if batch.close else 0) | (F_STREAM_SEQ if batch.stream_seq is not None else 0)
    fields: list[bytes] = []
    if batch.producer is not None:
        flags |= F_PRODUCER
        p = batch.producer
        fields += _text_field(p.producer_id)
        fields.append(_PRODUCER_NUMS.pack(p.epoch, p.seq))
    if batch.stream_seq is not None:
        fields += _text_field(batch.stream_seq)
    count = len(batch.messages)
    fixed = DATA_FIXED.pack(KIND_DATA, flags, first_seq, time_ns, count)
    lengths = struct.pack(f"<{count}I", *map(len, batch.messages))
    return _frame([fixed, *fields, lengths], b"".join(batch.messages))


def encode_state(
    next_seq: int,
    time_ns: int,
    closed: bool,
    stream_seq: str | None,
    producers: Iterable[tuple[str, ProducerState]],
    chunk_bytes: int = STATE_CHUNK_BYTES,
) -> list[bytes]:
    """Frame the channel state as of ``next_seq`` as one or more STATE records."""
    chunks: list[list[bytes]] = [[]]
    size = 0
    for pid, ps in producers:
        entry = [*_text_field(pid), _STATE_ENTRY.pack(ps.epoch, ps.seq, ps.last_seen)]
        if size >= chunk_bytes:
            chunks.append([])
            size = 0
        chunks[-1] += entry
        size += sum(map(len, entry))
    out: list[bytes] = []
    for i, entries in enumerate(chunks):
        flags = (F_CLOSE if closed else 0) | (F_MORE if i < len(chunks) - 1 else 0)
        fields = _text_field(stream_seq) if stream_seq is not None else []
        flags |= F_STREAM_SEQ if stream_seq is not None else 0
        fixed = STATE_FIXED.pack(KIND_STATE, flags, next_seq, time_ns)
        count = _U32.pack(len(entries) // 3)
        out += _frame([fixed, *fields, count, *entries])
    return out


def check_frame(rec: bytes | memoryview) -> bool:
    """True when ``rec`` (exactly one record) has a matching checksum."""
    return bool(crc32c.crc32c(rec[PREFIX.size :]) == PREFIX.unpack_from(rec)[1])


@dataclass(slots=True)
class DataRecord:
    first_seq: int
    time_ns: int
    lengths: tuple[int, ...]
    payload_off: int  # where the message bytes start inside the record
    producer: ProducerStamp | None
    stream_seq: str | None
    close: bool


@dataclass(slots=True)
class StateRecord:
    next_seq: int
    time_ns: int
    closed: bool
    stream_seq: str | None
    producers: list[tuple[str, ProducerState]]
    more: bool


def _read_text(rec: memoryview, off: int) -> tuple[str, int]:
    (n,) = _U16.unpack_from(rec, off)
    end = off + 2 + n
    if end > len(rec):
        raise RecordError("text field overruns the record")
    return bytes(rec[off + 2 : end]).decode(*_TEXT), end


def decode_data(rec: memoryview) -> DataRecord:
    """Decode a checksum-verified DATA record; RecordError when its fields are inconsistent."""
    try:
        _, flags, first_seq, time_ns, count = DATA_FIXED.unpack_from(rec, PREFIX.size)
        off = PREFIX.size + DATA_FIXED.size
        producer = None
        if flags & F_PRODUCER:
            pid, off = _read_text(rec, off)
            epoch, pseq = _PRODUCER_NUMS.unpack_from(rec, off)
            off += _PRODUCER_NUMS.size
            producer = ProducerStamp(pid, epoch, pseq)
        stream_seq = None
        if flags & F_STREAM_SEQ:
            stream_seq, off = _read_text(rec, off)
        lengths = struct.unpack_from(f"<{count}I", rec, off)
    except (struct.error, UnicodeDecodeError) as exc:
        raise RecordError(f"malformed DATA record: {exc}") from None
    payload_off = off + 4 * count
    if payload_off + sum(lengths) != len(rec):
        raise RecordError("message lengths do not add up to the record length")
    return DataRecord(
        first_seq, time_ns, lengths, payload_off, producer, stream_seq, bool(flags & F_CLOSE)
    )


def decode_state(rec: memoryview) -> StateRecord:
    """Decode a checksum-verified STATE record; RecordError when it is inconsistent."""
    try:
        _, flags, next_seq, time_ns = STATE_FIXED.unpack_from(rec, PREFIX.size)
        off = PREFIX.size + STATE_FIXED.size
        stream_seq = None
        if flags & F_STREAM_SEQ:
            stream_seq, off = _read_text(rec, off)
        (n,) = _U32.unpack_from(rec, off)
        off += 4
        producers: list[tuple[str, ProducerState]] = []
        for _ in range(n):
            pid, off = _read_text(rec, off)
            epoch, pseq, seen = _STATE_ENTRY.unpack_from(rec, off)
            off += _STATE_ENTRY.size
            producers.append((pid, ProducerState(epoch, pseq, seen)))
    except (struct.error, UnicodeDecodeError) as exc:
        raise RecordError(f"malformed STATE record: {exc}") from None
    if off != len(rec):
        raise RecordError("STATE record has trailing bytes")
    return StateRecord(
        next_seq, time_ns, bool(flags & F_CLOSE), stream_seq, producers, bool(flags & F_MORE)
    )


def record_kind(rec: memoryview) -> int:
    return int(rec[PREFIX.size])


ReadAt = Callable[[int, int], bytes]  # (offset, n) -> up to n bytes


class Scanner:
    """Walks the records of one file region, checking length bounds and checksums.

    Reads in big chunks (never more than ``max(chunk, max_record)`` bytes held at once, so a
    garbage length prefix cannot make recovery allocate it). Iteration stops at the first bad
    record, leaving ``pos`` at its start and ``error`` saying why; ``pos == end`` and
    ``error is None`` after a clean walk.
    """

    def __init__(
        self,
        read_at: ReadAt,
        start: int,
        end: int,
        max_record: int,
        chunk: int = 1 << 20,
    ) -> None:
        self.read_at = read_at
        self.pos = start
        self.end = end
        self.max_record = max_record
        self.chunk = chunk
        self.error: str | None = None
        self._buf = memoryview(b"")
        self._buf_pos = start

    def _window(self, need: int) -> memoryview | None:
        """The bytes at ``pos`` (at least ``need`` of them), or None at a short file."""
        off = self.pos - self._buf_pos
        if off + need > len(self._buf):
            want = min(max(self.chunk, need), self.end - self.pos)
            self._buf = memoryview(self.read_at(self.pos, want)) if want > 0 else memoryview(b"")
            self._buf_pos = self.pos
            off = 0
        if off + need > len(self._buf):
            return None
        return self._buf[off:]

    def __iter__(self) -> Iterator[tuple[int, memoryview]]:
        while self.pos < self.end:
            if self.end - self.pos < PREFIX.size:
                self.error = f"{self.end - self.pos} trailing bytes are too short for a record"
                return
            head = self._window(PREFIX.size)
            if head is None:
                self.error = "file is shorter than expected"
                return
            (length,) = _U32.unpack_from(head)
            if not MIN_RECORD <= length <= self.max_record:
                self.error = f"implausible record length {length}"
                return
            if self.pos + length > self.end:
                self.error = f"record of {length} bytes overruns the end of the file"
                return
            view = self._window(length)
            if view is None:
                self.error = "file is shorter than expected"
                return
            rec = view[:length]
            if not check_frame(rec):
                self.error = "checksum mismatch"
                return
            yield self.pos, rec
            self.pos += length
