"""Server-Sent Events framing (PROTOCOL.md section 5.7).

A ``data`` event carries up to ``EVENT_BYTES`` of messages (a single larger message goes alone):
JSON channels send them as one JSON array, ``text/*`` channels as text, and everything else as
base64 (announced by ``stream-sse-data-encoding``), since SSE can only carry UTF-8 lines. Each
``data`` event is followed by a ``control`` event with the offset to resume from.

Events are capped well below a read chunk (1 MiB) for slow readers: the write deadline cuts a
connection whose reader takes too long, and a reader resumes after its last complete event. With
1 MiB events, a reader draining under ~100 KiB/s was cut inside every event and resumed from the
same offset forever; with small ones it keeps what it got before the cut.

Payload bytes can contain CR, LF or CRLF, each of which ends an SSE line. Every line of a payload
therefore gets its own ``data:`` prefix, so the payload can never end the event early or inject
an event of its own; the client joins the lines back with LF.
"""

from __future__ import annotations

import base64
import bisect
import itertools
from enum import Enum

from chanctl.protocol import (
    CTRL_CLOSED,
    CTRL_CURSOR,
    CTRL_NEXT_OFFSET,
    CTRL_UP_TO_DATE,
    ContentType,
    format_offset,
)

from ..jsonmode import frame_json
from ..model import Chunk


class Encoding(Enum):
    JSON = "json"
    TEXT = "text"
    BASE64 = "base64"


def encoding_for(ct: ContentType | None) -> Encoding:
    if ct is not None and ct.is_json:
        return Encoding.JSON
    if ct is not None and ct.is_text:
        return Encoding.TEXT
    return Encoding.BASE64


EVENT_BYTES = 64 * 1024


def pieces(chunk: Chunk, cap: int = EVENT_BYTES) -> list[Chunk]:
    """``chunk`` cut at message boundaries into parts of at most ``cap`` bytes each (or one
    message). Only the last part keeps the chunk's ``up_to_date`` and ``closed``."""
    if len(chunk.data) <= cap:
        return [chunk]
    ends = list(itertools.accumulate(chunk.lengths))  # C loops: no Python work per message
    out: list[Chunk] = []
    first = base = 0  # index of the part's first message; its byte offset
    while first < len(ends):
        last = max(bisect.bisect_right(ends, base + cap, first), first + 1)
        end = ends[last - 1]
        final = last == len(ends)
        out.append(
            Chunk(
                state=chunk.state,
                start_seq=chunk.start_seq + first,
                next_seq=chunk.start_seq + last,
                data=chunk.data[base:end],
                lengths=chunk.lengths[first:last],
                up_to_date=final and chunk.up_to_date,
                closed=final and chunk.closed,
            )
        )
        first, base = last, end
    return out


def data_event(chunk: Chunk, encoding: Encoding) -> bytes:
    if encoding is Encoding.JSON:
        payload = frame_json(chunk.messages())
    elif encoding is Encoding.TEXT:
        payload = chunk.data
    else:
        payload = base64.b64encode(chunk.data)
    return b"event: data\n" + data_lines(payload) + b"\n\n"


def data_lines(payload: bytes) -> bytes:
    """``data:`` lines for a payload, done with bytes operations only (no per-line Python).

    The field value starts right after the colon. A client drops one leading space there, so a
    line that itself starts with a space gets one extra space to keep it intact.
    """
    text = b"\n" + payload.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return text.replace(b"\n ", b"\n  ").replace(b"\n", b"\ndata:")[1:]


def control_event(next_seq: int, cursor: int | None, up_to_date: bool, closed: bool) -> bytes:
    """``control``: where to resume; no cursor once closed (there is nothing left to collapse
    on), ``upToDate`` / ``streamClosed`` only when true."""
    fields = [f'"{CTRL_NEXT_OFFSET}":"{format_offset(next_seq)}"']
    if cursor is not None and not closed:
        fields.append(f'"{CTRL_CURSOR}":"{cursor}"')
    if up_to_date:
        fields.append(f'"{CTRL_UP_TO_DATE}":true')
    if closed:
        fields.append(f'"{CTRL_CLOSED}":true')
    return b"event: control\ndata:{" + ",".join(fields).encode() + b"}\n\n"


KEEPALIVE = b": keepalive\n\n"
