"""A channel's tail state, and its checkpoint (Kafka's recovery point).

Recovery rebuilds the tail state (producer table, last Stream-Seq, closed flag, where the active
segment ends, its sparse index) by replaying the last segment, which costs a few microseconds
per record: over a second for a full segment of tiny appends. So ``tail.ckpt`` records that
state as of some byte position S of the active segment: on a clean stop S is the end (the next
start replays nothing), and under ``fsync=always`` the writer also refreshes it every few MiB
of durable data, so even an unclean start replays only the bytes after S.

The checkpoint is only a cache (style rule 5): it is checksummed and names the segment, S, and
a checksum of the 4 KiB before S; it is used only when the segment still has those bytes there.
Bytes before S never change (they were durable when the checkpoint was taken, and recovery only
truncates what follows the last valid record), so a matching checkpoint is exact; anything else
is ignored and the whole segment replayed. It is written without fsync for the same reason: a
torn or lost checkpoint just means one slower start.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import crc32c

from ..base import ProducerState

CHECKPOINT_FILE = "tail.ckpt"
_FORMAT = 1
_CRC = struct.Struct("<I")
TAIL_PROBE = 4096  # bytes at the end of the segment whose checksum the checkpoint records


@dataclass
class TailState:
    """The replayed state of a channel's last segment."""

    base: int
    path: str
    size: int  # after truncation
    end_seq: int
    entries: list[tuple[int, int]] = field(default_factory=list)  # sparse index
    producers: dict[str, ProducerState] = field(default_factory=dict)  # LRU order
    stream_seq: str | None = None
    closed: bool = False
    last_time: float = 0.0


@dataclass
class Recovered:
    sealed: list[tuple[int, str, int, float]]  # (base, path, size, mtime), oldest first
    tail: TailState
    checkpoint_at: int | None = None  # the position the valid on-disk checkpoint describes


def probe_range(size: int) -> tuple[int, int]:
    """(offset, length) of the bytes whose checksum pins a checkpoint at ``size``."""
    start = max(0, size - TAIL_PROBE)
    return start, size - start


def probe_crc(probe: bytes) -> int:
    return int(crc32c.crc32c(probe))


def encode_checkpoint(tail: TailState, probe: bytes) -> bytes:
    """``probe``: the segment's bytes at ``probe_range(tail.size)``."""
    doc = {
        "format": _FORMAT,
        "segment": os.path.basename(tail.path),
        "base": tail.base,
        "size": tail.size,
        "probe_crc": probe_crc(probe),
        "end_seq": tail.end_seq,
        "index": tail.entries,
        "producers": [[k, v.epoch, v.seq, v.last_seen] for k, v in tail.producers.items()],
        "stream_seq": tail.stream_seq,
        "closed": tail.closed,
        "last_time": tail.last_time,
    }
    body = json.dumps(doc, separators=(",", ":")).encode()
    return _CRC.pack(crc32c.crc32c(body)) + body


def decode_checkpoint(data: bytes, path: str) -> tuple[TailState, int] | None:
    """(tail as of the checkpoint, its probe checksum) if intact and about segment ``path``;
    the caller still checks the probe against the file."""
    if len(data) < _CRC.size or _CRC.unpack_from(data)[0] != crc32c.crc32c(data[_CRC.size :]):
        return None
    try:
        doc: dict[str, Any] = json.loads(data[_CRC.size :])
        if (doc["format"], doc["segment"]) != (_FORMAT, os.path.basename(path)):
            return None
        producers = {
            str(k): ProducerState(int(e), int(s), float(t)) for k, e, s, t in doc["producers"]
        }
        tail = TailState(
            base=int(doc["base"]),
            path=path,
            size=int(doc["size"]),
            end_seq=int(doc["end_seq"]),
            entries=[(int(s), int(p)) for s, p in doc["index"]],
            producers=producers,
            stream_seq=doc["stream_seq"],
            closed=bool(doc["closed"]),
            last_time=float(doc["last_time"]),
        )
        return tail, int(doc["probe_crc"])
    except (KeyError, TypeError, ValueError, OverflowError, RecursionError):
        return None  # e.g. {"size": 1e999}: int(inf) raises OverflowError
