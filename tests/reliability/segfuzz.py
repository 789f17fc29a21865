"""Segment fuzzing harness (B1 of reliability.md), shared by the Hypothesis tests in
test_fuzz_segments.py and by coverage-guided atheris runs of this file as a script:

    python tests/reliability/segfuzz.py -max_total_time=60 CORPUS_DIR

``Harness.check(image)`` treats ``image`` as a segment file and runs, on it, everything of the
local engine that parses segment bytes: the reader of a sealed segment (``index_blocking``,
``read_blocking``), ``chanctl fsck``'s check (``check_segment_blocking``) and start-up recovery
(``recover_blocking``), twice. It raises ``Violation`` (or whatever escaped the engine) unless:

- nothing takes over ``MAX_SECONDS`` or allocates more than ``MEMORY_BOUND`` bytes;
- the reader serves exactly the messages an independent walk of the image finds (length bound,
  CRC32C, kind, field consistency, contiguous seqs), so every message served comes from a record
  whose checksum matched, and nothing at or after the first bad record;
- recovery keeps a prefix of the image ending at a record boundary, all of whose records verify,
  or removes a segment without a complete STATE header and starts a fresh one; fsck names the
  byte where recovery truncates; and recovering the result again changes nothing.

Only the standard library and chanctl are imported here: the atheris subprocess runs with
PYTHONSAFEPATH=1, so it cannot import its neighbours.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import struct
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import crc32c

_instrument: AbstractContextManager[Any] = nullcontext()
if __name__ == "__main__":  # coverage-guided: instrument the engine modules as they load
    import atheris

    _instrument = atheris.instrument_imports(include=["chanctl.daemon.store.local"])

with _instrument:
    from chanctl.daemon.store.base import AppendBatch, ProducerStamp, ProducerState
    from chanctl.daemon.store.local.disk import Disk, Failpoints
    from chanctl.daemon.store.local.records import (
        KIND_DATA,
        KIND_STATE,
        MIN_RECORD,
        PREFIX,
        RecordError,
        check_frame,
        decode_data,
        decode_state,
        encode_data,
        encode_state,
        record_kind,
    )
    from chanctl.daemon.store.local.recovery import check_segment_blocking, recover_blocking
    from chanctl.daemon.store.local.segment import (
        ReadPlan,
        index_blocking,
        read_blocking,
        segment_name,
    )
    from chanctl.daemon.store.local.tail import TailState

BASE = 1000  # the segment's first seq (its file name)
MAX_RECORD = 64 * 1024  # the length-prefix bound; small, so "just under the bound" is cheap
MEMORY_BOUND = MAX_RECORD + (1 << 20)  # reliability.md C5/B1: max_record + 1 MiB
MAX_SECONDS = 1.0
CAP = 1000  # producer-table cap
INTERESTING_LENGTHS = (
    0,
    1,
    MIN_RECORD - 1,
    MIN_RECORD,
    MAX_RECORD - 1,
    MAX_RECORD,
    MAX_RECORD + 1,
    1 << 31,
    (1 << 32) - 1,
)


class Violation(AssertionError):
    """The engine broke a B1 property on some input."""


def build_image(
    batches: Sequence[AppendBatch],
    producers: Sequence[tuple[str, ProducerState]] = (),
    chunk_bytes: int = 256 * 1024,
) -> tuple[bytes, list[int]]:
    """A valid segment, written with the engine's own encoder: (bytes, end of every record)."""
    records = encode_state(BASE, 1, False, None, producers, chunk_bytes=chunk_bytes)
    ends: list[int] = []
    size = 0
    for rec in records:
        size += len(rec)
        ends.append(size)
    seq = BASE
    for i, batch in enumerate(batches):
        parts = encode_data(seq, 10 + i, batch)
        size += sum(map(len, parts))
        ends.append(size)
        records += parts
        seq += len(batch.messages)
    return b"".join(records), ends


def seed_images() -> Iterator[bytes]:
    """A few valid segments of every record shape (the atheris seed corpus)."""
    stamps = [ProducerStamp("p", 1, i) for i in range(3)]
    yield build_image([])[0]
    yield build_image([AppendBatch([b"hello"])])[0]
    yield build_image(
        [
            AppendBatch([b"a", b"bc", b""], producer=stamps[0]),
            AppendBatch([b"x" * 300], stream_seq="0001"),
            AppendBatch([b"d"], producer=stamps[1], stream_seq="0002", close=True),
        ],
        producers=[("p", ProducerState(1, 0, 1.5)), ("q", ProducerState(2, 7, 2.5))],
    )[0]
    table = [(f"producer-{i}", ProducerState(i, i, float(i))) for i in range(40)]
    yield build_image([AppendBatch([b"m"] * 20)], producers=table, chunk_bytes=200)[0]


@dataclass
class Walked:
    """What an independent walk of an image finds: the reference the engine must match."""

    ends: list[int]  # end of each leading record with a plausible length and a matching CRC
    served: list[bytes]  # what a reader of the sealed segment must serve, in order
    header_end: int | None  # where the STATE prefix ends; None: no complete, valid one
    valid_end: int  # where recovery must cut: the end of the last consistent record
    recovered: int  # messages recovery must keep


def walk(image: bytes) -> Walked:
    view = memoryview(image)
    ends: list[int] = []
    pos = 0
    while len(image) - pos >= PREFIX.size:
        length, _ = PREFIX.unpack_from(image, pos)
        if not MIN_RECORD <= length <= MAX_RECORD or pos + length > len(image):
            break
        if not check_frame(view[pos : pos + length]):
            break
        pos += length
        ends.append(pos)
    records = [view[a:b] for a, b in zip([0, *ends], ends, strict=False)]
    header_end, valid_end, recovered = _as_recovery(records)
    return Walked(ends, _as_reader(records), header_end, valid_end, recovered)


def _data(rec: memoryview, seq: int) -> list[bytes] | None:
    """The messages of a DATA record starting at ``seq``; None if it is inconsistent."""
    if record_kind(rec) != KIND_DATA:
        return None
    try:
        dr = decode_data(rec)
    except RecordError:
        return None
    if dr.first_seq != seq:
        return None
    offs = [dr.payload_off]
    for n in dr.lengths:
        offs.append(offs[-1] + n)
    return [bytes(rec[a:b]) for a, b in zip(offs, offs[1:], strict=False)]


def _as_reader(records: list[memoryview]) -> list[bytes]:
    """A sealed segment's reader skips STATE records and stops at the first other record
    that is not the next DATA batch."""
    out: list[bytes] = []
    for rec in records:
        if record_kind(rec) == KIND_STATE:
            continue
        got = _data(rec, BASE + len(out))
        if got is None:
            break
        out += got
    return out


def _as_recovery(records: list[memoryview]) -> tuple[int | None, int, int]:
    """Recovery wants STATE records first (all but the last marked MORE, each naming the
    segment's base), then only DATA batches with contiguous seqs."""
    header_end: int | None = None
    pos = count = 0
    for rec in records:
        if header_end is None:
            try:
                state = decode_state(rec) if record_kind(rec) == KIND_STATE else None
            except RecordError:
                state = None
            if state is None or state.next_seq != BASE:
                break
            pos += len(rec)
            header_end = None if state.more else pos
            continue
        got = _data(rec, BASE + count)
        if got is None:
            break
        pos += len(rec)
        count += len(got)
    return header_end, (pos if header_end is not None else 0), count


class Harness:
    """Runs every segment parser of the engine on an image, in a scratch directory."""

    def __init__(self, root: str) -> None:
        self.disk = Disk(Failpoints(""))
        self.root = root
        self.chan_dir = os.path.join(root, "chan")
        self.path = os.path.join(self.chan_dir, segment_name(BASE))
        self.fresh = b"".join(encode_state(BASE, 0, False, None, []))
        self.inputs = 0
        self.peak = 0  # the most any input allocated (when tracing)

    def check(self, image: bytes, must_keep: int | None = None) -> Walked:
        """Check every B1 property on ``image``; ``must_keep``: bytes of intact whole records
        at its start that recovery must not drop (tail damage only)."""
        self.inputs += 1
        ref = walk(image)
        self._write(image)
        started = time.monotonic()
        baseline, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()  # (all zeros when the harness does not trace memory)
        served = self._read_sealed(len(image))
        verdict = check_segment_blocking(self.disk, self.path, BASE, len(image), MAX_RECORD, CAP)
        tail = self._recover()
        peak = tracemalloc.get_traced_memory()[1] - baseline
        took = time.monotonic() - started
        _expect(took < MAX_SECONDS, f"took {took:.2f}s")
        _expect(peak < MEMORY_BOUND, f"allocated {peak} bytes at peak")
        self.peak = max(self.peak, peak)
        _expect(served == ref.served, "the reader served other messages than the records hold")
        self._check_recovered(image, ref, tail, verdict.bad_pos, must_keep)
        return ref

    def _write(self, image: bytes) -> None:
        shutil.rmtree(self.chan_dir, ignore_errors=True)
        os.mkdir(self.chan_dir, 0o700)
        with open(self.path, "wb") as f:
            f.write(image)

    def _read_sealed(self, size: int) -> list[bytes]:
        """Every message a reader of this (sealed) segment gets: index it, then read it."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            scan = index_blocking(self.disk, fd, BASE, size, None, MAX_RECORD)
            end = size if scan.bad_pos is None else scan.bad_pos
            plan = ReadPlan(0, BASE, end, BASE, 1 << 30, 1 << 30, False, MAX_RECORD)
            got = read_blocking(self.disk, fd, plan)
        finally:
            os.close(fd)
        _expect(got.next_seq == scan.end_seq, "the index and the reader disagree on the end")
        return [bytes(m.data) for m in got.messages]

    def _recover(self) -> TailState:
        log = logging.getLogger("chanctl.store")
        level = log.level
        log.setLevel(logging.CRITICAL)  # one truncation warning per input would drown the run
        try:
            return recover_blocking(
                self.disk, self.chan_dir, "fuzz", BASE, MAX_RECORD, CAP, False
            ).tail
        finally:
            log.setLevel(level)

    def _check_recovered(
        self, image: bytes, ref: Walked, tail: TailState, bad_pos: int | None, must_keep: int | None
    ) -> None:
        with open(self.path, "rb") as f:
            kept = f.read()
        if ref.header_end is None:
            _expect(kept == self.fresh, "a segment without a STATE header was not replaced")
            _expect(tail.end_seq == BASE, "a replaced segment must be empty")
        else:
            _expect(kept == image[: ref.valid_end], f"kept {len(kept)} bytes, not {ref.valid_end}")
            _expect(bad_pos == (None if ref.valid_end == len(image) else ref.valid_end), "fsck")
            _expect(tail.end_seq == BASE + ref.recovered, "recovered end_seq")
            _expect(walk(kept).ends[-1] == len(kept), "a kept record fails its checksum")
        if must_keep is not None:
            _expect(len(kept) >= must_keep, f"dropped intact records: kept {len(kept)}")
        again = self._recover()
        with open(self.path, "rb") as f:
            _expect(f.read() == kept, "recovering a recovered segment changed it")
        _expect(_state(again) == _state(tail), "recovering a recovered segment changed its state")


def _state(tail: TailState) -> str:
    """The recovered state, comparable (repr: a last_seen read from garbage may be NaN)."""
    return repr((tail.size, tail.end_seq, tail.producers, tail.stream_seq, tail.closed))


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise Violation(what)


def rechecksum(image: bytes) -> bytes:
    """Give every record whose length prefix fits a matching CRC again, so a mutation of its
    fields reaches the decoders instead of stopping at the checksum."""
    out = bytearray(image)
    pos = 0
    while len(out) - pos >= PREFIX.size:
        length, _ = PREFIX.unpack_from(out, pos)
        if not MIN_RECORD <= length <= MAX_RECORD or pos + length > len(out):
            break
        crc = crc32c.crc32c(bytes(out[pos + PREFIX.size : pos + length]))
        PREFIX.pack_into(out, pos, length, crc)
        pos += length
    return bytes(out)


def with_length_prefix(image: bytes, at: int, length: int, filler: bytes) -> bytes:
    """Insert a record head claiming ``length`` bytes at ``at``, followed by ``filler``."""
    return image[:at] + struct.pack("<II", length & 0xFFFFFFFF, 0) + filler + image[at:]


@contextlib.contextmanager
def harness(trace_memory: bool = True) -> Iterator[Harness]:
    """A harness in a scratch directory. Tracing memory slows everything else the process
    allocates (Hypothesis too), so the Hypothesis tests trace only where it matters."""
    root = tempfile.mkdtemp(
        prefix="segfuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
    )
    # Traced for the harness's whole life: starting and stopping tracemalloc for each input
    # leaks about 2 KiB a time, which a 30-minute run would notice.
    tracing = tracemalloc.is_tracing() or not trace_memory
    if not tracing:
        tracemalloc.start()
    try:
        yield Harness(root)
    finally:
        if not tracing:
            tracemalloc.stop()
        shutil.rmtree(root, ignore_errors=True)


def _fuzz_main() -> None:
    """atheris entry point: each input is split into a segment image and a mutation hint."""
    import atheris

    with harness() as h:
        seeds = list(seed_images())

        def one_input(data: bytes) -> None:
            # Byte 0 picks a mode: 0 keeps a valid segment up to an offset and appends the
            # rest; 1 overwrites its bytes there and fixes the checksums (fields reach the
            # decoders); anything else is the image itself.
            if data[:1] in (b"\x00", b"\x01") and len(data) > 4:
                seed = seeds[data[1] % len(seeds)]
                at = int.from_bytes(data[2:4], "little") % (len(seed) + 1)
                if data[0] == 0:
                    h.check(seed[:at] + data[4:])
                else:
                    h.check(rechecksum(seed[:at] + data[4:] + seed[at + len(data) - 4 :]))
            else:
                h.check(data)

        atheris.Setup(sys.argv, one_input)
        atheris.Fuzz()


if __name__ == "__main__":
    _fuzz_main()
