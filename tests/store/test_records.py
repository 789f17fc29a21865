"""Property tests of the record framing and of tail recovery.

Framing: every record round-trips, and any truncation or single-bit flip of a record is
detected (never decoded as some other valid record). Recovery: whatever sequence of batches was
written and wherever the tail was cut, the recovered log is exactly a prefix of whole batches,
with the producer / Stream-Seq / closed state those batches imply.
"""

from __future__ import annotations

import os
import tempfile

from chanctl.daemon.store.base import AppendBatch, ProducerStamp, ProducerState
from chanctl.daemon.store.local.disk import Disk, Failpoints
from chanctl.daemon.store.local.records import (
    KIND_DATA,
    Scanner,
    decode_data,
    decode_state,
    encode_data,
    encode_state,
    max_record_bytes,
    record_kind,
)
from chanctl.daemon.store.local.recovery import recover_blocking
from chanctl.daemon.store.local.segment import segment_name
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MAX_RECORD = max_record_bytes(1 << 20)
texts = st.text(max_size=12)
u63 = st.integers(min_value=0, max_value=(1 << 63) - 1)

batches = st.builds(
    AppendBatch,
    messages=st.lists(st.binary(max_size=40), max_size=8),
    producer=st.none() | st.builds(ProducerStamp, texts, u63, u63),
    stream_seq=st.none() | texts,
    close=st.booleans(),
)


def scan(data: bytes) -> tuple[list[bytes], Scanner]:
    scanner = Scanner(lambda off, n: data[off : off + n], 0, len(data), MAX_RECORD, chunk=64)
    return [bytes(rec) for _, rec in scanner], scanner


@given(batches, u63, u63)
def test_data_record_round_trips(batch: AppendBatch, first_seq: int, time_ns: int) -> None:
    raw = b"".join(encode_data(first_seq, time_ns, batch))
    recs, scanner = scan(raw)
    assert scanner.error is None and len(recs) == 1 and recs[0] == raw
    dr = decode_data(memoryview(raw))
    assert (dr.first_seq, dr.time_ns, dr.close) == (first_seq, time_ns, batch.close)
    assert (dr.producer, dr.stream_seq) == (batch.producer, batch.stream_seq)
    ends = [dr.payload_off]
    for n in dr.lengths:
        ends.append(ends[-1] + n)
    assert [raw[a:b] for a, b in zip(ends, ends[1:], strict=False)] == list(batch.messages)


@given(
    st.lists(st.tuples(texts, u63, u63, st.floats(allow_nan=False)), max_size=40),
    st.none() | texts,
    st.booleans(),
    st.integers(min_value=16, max_value=400),
)
def test_state_records_round_trip(
    entries: list[tuple[str, int, int, float]], stream_seq: str | None, closed: bool, chunk: int
) -> None:
    table = {pid: ProducerState(e, s, t) for pid, e, s, t in entries}
    recs = encode_state(7, 99, closed, stream_seq, table.items(), chunk_bytes=chunk)
    decoded = [decode_state(memoryview(r)) for r in recs]
    assert [d.more for d in decoded] == [True] * (len(recs) - 1) + [False]
    merged = {pid: ps for d in decoded for pid, ps in d.producers}
    assert merged == table
    assert all((d.next_seq, d.closed, d.stream_seq) == (7, closed, stream_seq) for d in decoded)


@given(batches, st.data())
def test_truncation_is_detected(batch: AppendBatch, data: st.DataObject) -> None:
    raw = b"".join(encode_data(3, 4, batch))
    cut = data.draw(st.integers(min_value=1, max_value=len(raw) - 1))
    recs, scanner = scan(raw[:cut])
    assert recs == [] and scanner.error is not None and scanner.pos == 0


@given(batches, st.data())
def test_any_single_bit_flip_is_detected(batch: AppendBatch, data: st.DataObject) -> None:
    raw = bytearray(b"".join(encode_data(3, 4, batch)))
    bit = data.draw(st.integers(min_value=0, max_value=len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    recs, scanner = scan(bytes(raw))
    assert recs == [] and scanner.error is not None


def test_huge_length_prefix_is_not_trusted() -> None:
    recs, scanner = scan(b"\xff\xff\xff\xff" + os.urandom(60))
    assert recs == [] and scanner.error is not None and "implausible" in scanner.error


def _model(batches: list[AppendBatch]) -> tuple[int, dict[str, tuple[int, int]], str | None, bool]:
    seq, producers, stream_seq, closed = 0, {}, None, False
    for b in batches:
        seq += len(b.messages)
        if b.producer is not None:
            producers[b.producer.producer_id] = (b.producer.epoch, b.producer.seq)
        stream_seq = b.stream_seq if b.stream_seq is not None else stream_seq
        closed = closed or b.close
    return seq, producers, stream_seq, closed


def _write_segment(path: str, batches: list[AppendBatch]) -> list[int]:
    """Write a first segment; returns each batch's end offset."""
    ends = []
    seq = 0
    with open(path, "wb") as f:
        f.write(b"".join(encode_state(0, 1, False, None, [])))
        for b in batches:
            f.write(b"".join(encode_data(seq, 2, b)))
            seq += len(b.messages)
            ends.append(f.tell())
    return ends


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(batches, min_size=1, max_size=12), st.data())
def test_recovery_keeps_a_prefix_of_whole_batches(
    written: list[AppendBatch], data: st.DataObject
) -> None:
    disk = Disk(Failpoints(""))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, segment_name(0))
        ends = _write_segment(path, written)
        state_end = ends[0] - len(b"".join(encode_data(0, 2, written[0])))
        cut = data.draw(st.integers(min_value=state_end, max_value=ends[-1]))
        with open(path, "r+b") as f:
            f.truncate(cut)
        kept = [b for b, end in zip(written, ends, strict=True) if end <= cut]

        tail = recover_blocking(disk, tmp, "prop", 0, MAX_RECORD, 1000, sync=False).tail

        seq, producers, stream_seq, closed = _model(kept)
        assert tail.end_seq == seq
        assert {k: (v.epoch, v.seq) for k, v in tail.producers.items()} == producers
        assert (tail.stream_seq, tail.closed) == (stream_seq, closed)
        whole = max([state_end] + [end for end in ends if end <= cut])
        assert tail.size == whole == os.path.getsize(path)
        recs, scanner = scan(open(path, "rb").read())
        assert scanner.error is None
        assert sum(1 for r in recs if record_kind(memoryview(r)) == KIND_DATA) == len(kept)
