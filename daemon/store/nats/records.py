"""One JetStream message per record: the wire format of a channel's log in its stream.

A record carries one or more whole append batches (the writer groups the batches submitted
while the previous publish was in flight). Everything a daemon needs to keep the channel's
state lives in one ASCII JSON header, so a *headers-only* consumer can follow a channel (and
rebuild producer state) without moving payloads:

``i``  record id, also the ``Nats-Msg-Id``: a retried publish is recognised, by JetStream within
       its duplicate window and by us (comparing ids) after it
``f``  offset of the record's first message; ``n`` its message count
``t``  when the daemon accepted the record's batches (unix seconds)
``p``  producer stamps this record advances: ``[[id, epoch, seq, seen], ...]``
``s``  the channel's last Stream-Seq after this record (cumulative, so the newest record
       alone tells it); ``c`` closed after this record (cumulative)
``b``  payload bytes ever appended up to the end of this record (cumulative: retained size is
       ``b`` of the last record minus ``b - len`` of the first)
``w``  time of the last record that held messages (cumulative)

The payload is ``n`` little-endian u32 message lengths followed by the messages themselves, so
``read_raw`` slices it without building an object per message.
"""

from __future__ import annotations

import json
import sys
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

HEADER = "Chanctl-Rec"

Stamp = tuple[str, int, int, float]  # producer id, epoch, seq, last seen


@dataclass(frozen=True, slots=True)
class RecordMeta:
    """What a record says about the channel; the JSON header, decoded."""

    rid: str
    first: int
    count: int
    time: float
    producers: tuple[Stamp, ...]
    stream_seq: str | None
    closed: bool
    bytes_end: int
    last_write: float

    @property
    def end(self) -> int:
        return self.first + self.count


@dataclass(frozen=True, slots=True)
class Record:
    """A stored record: its stream sequence, meta, and (unless fetched headers-only) its data."""

    sseq: int
    meta: RecordMeta
    lengths: Sequence[int] | None = None
    data: bytes | None = None

    @property
    def size(self) -> int:
        """Payload bytes held in memory (for the cache budget)."""
        return 0 if self.data is None else len(self.data) + 4 * self.meta.count


def encode_meta(meta: RecordMeta) -> str:
    doc: dict[str, object] = {
        "i": meta.rid,
        "f": meta.first,
        "n": meta.count,
        "t": meta.time,
        "b": meta.bytes_end,
        "w": meta.last_write,
    }
    if meta.producers:
        doc["p"] = [list(p) for p in meta.producers]
    if meta.stream_seq is not None:
        doc["s"] = meta.stream_seq
    if meta.closed:
        doc["c"] = 1
    # ensure_ascii: a NATS header value must be one line of ASCII, whatever the producer id.
    return json.dumps(doc, ensure_ascii=True, separators=(",", ":"))


def decode_meta(text: str) -> RecordMeta:
    """Parse the header; ValueError when it is not one of ours."""
    try:
        doc = json.loads(text)
        stamps = tuple((str(p[0]), int(p[1]), int(p[2]), float(p[3])) for p in doc.get("p", ()))
        return RecordMeta(
            rid=str(doc["i"]),
            first=int(doc["f"]),
            count=int(doc["n"]),
            time=float(doc["t"]),
            producers=stamps,
            stream_seq=None if doc.get("s") is None else str(doc["s"]),
            closed=bool(doc.get("c", 0)),
            bytes_end=int(doc["b"]),
            last_write=float(doc["w"]),
        )
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise ValueError(f"not a chanctl record header: {exc!r}") from None


def encode_payload(messages: Sequence[bytes]) -> bytes:
    lengths = array("I", [len(m) for m in messages])
    if sys.byteorder != "little":
        lengths.byteswap()
    return lengths.tobytes() + b"".join(messages)


def decode_record(sseq: int, headers: Mapping[str, str] | None, payload: bytes | None) -> Record:
    """A record from a stored message; ``payload`` None for a headers-only delivery."""
    if headers is None or HEADER not in headers:
        raise ValueError(f"message {sseq} carries no {HEADER} header")
    meta = decode_meta(headers[HEADER])
    if payload is None:
        return Record(sseq, meta)
    head = 4 * meta.count
    if len(payload) < head:
        raise ValueError(f"record {sseq} is truncated")
    lengths = array("I")
    lengths.frombytes(payload[:head])
    if sys.byteorder != "little":
        lengths.byteswap()
    data = payload[head:]
    if sum(lengths) != len(data):
        raise ValueError(f"record {sseq}: message lengths do not add up to the payload")
    return Record(sseq, meta, lengths, data)
