"""What the sync and async clients share: building requests and judging answers, without I/O.

``Client`` (http.client) and ``AsyncClient`` (aiohttp) only move bytes; every protocol decision
(headers, offsets, idempotent-producer bookkeeping, status-to-error mapping, batching, how a
read continues) is made here once, so the two clients cannot drift apart.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from . import errors as ce
from . import protocol as p
from .transport import Response

BATCH_BYTES = 1024 * 1024 - 256  # the daemon's default body limit is 1 MiB
HEALTH_PATH = "/v1/health"
CHANNELS_PATH = "/v1/channels"
_JSON = {"Content-Type": p.MESSAGE_CONTENT_TYPE}


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None


def _url(channel: str, lane: str = p.LANE_OUTPUT, **query: str) -> str:
    path = quote(p.lane_path(lane, ce.checked(p.validate_name, channel)), safe="/:")
    # DS clients SHOULD sort query parameters (better cache collapsing).
    return path + ("?" + urlencode(sorted(query.items())) if query else "")


def create_request(channel: str, lane: str = p.LANE_OUTPUT) -> Request:
    return Request("PUT", _url(channel, lane), _JSON)


def append_request(
    channel: str, body: bytes, producer: tuple[str, int, int], lane: str = p.LANE_OUTPUT
) -> Request:
    pid, epoch, seq = producer
    headers = {
        **_JSON,
        p.H_PRODUCER_ID: pid,
        p.H_PRODUCER_EPOCH: str(epoch),
        p.H_PRODUCER_SEQ: str(seq),
    }
    return Request("POST", _url(channel, lane), headers, body)


def close_request(channel: str) -> Request:
    return Request("POST", _url(channel), {p.H_CLOSED: "true"}, b"")


def delete_request(channel: str) -> Request:
    return Request("DELETE", _url(channel))


def head_request(channel: str, lane: str = p.LANE_OUTPUT) -> Request:
    return Request("HEAD", _url(channel, lane))


def read_request(
    channel: str, offset: str, live: bool = False, cursor: str = "", lane: str = p.LANE_OUTPUT
) -> Request:
    query = {"offset": offset}
    if live:
        query["live"] = "long-poll"
        if cursor:
            query["cursor"] = cursor
    return Request("GET", _url(channel, lane, **query))


def cursor_request(
    method: str, channel: str, name: str | None, offset: str = "", lane: str = p.LANE_OUTPUT
) -> Request:
    path = quote(p.cursor_path(ce.checked(p.validate_name, channel)), safe="/:")
    query = {} if name is None else {"name": ce.checked(p.validate_cursor_name, name)}
    if lane != p.LANE_OUTPUT:
        query[p.LANE_QUERY] = lane
    if query:
        path += "?" + urlencode(sorted(query.items()))
    body = json.dumps({"offset": offset}).encode() if method == "PUT" else None
    return Request(method, path, _JSON if body else {}, body)


def producer_request(
    method: str, channel: str, body: dict[str, object] | None = None, **query: str
) -> Request:
    """A request to ``/v1/producer/{channel}``: a run's liveness (attach, heartbeat, detach)."""
    path = quote(p.producer_path(ce.checked(p.validate_name, channel)), safe="/:")
    if query:
        path += "?" + urlencode(sorted(query.items()))
    data = None if body is None else json.dumps(body).encode()
    return Request(method, path, _JSON if data is not None else {}, data)


def producer_key(channel: str, lane: str) -> str:
    """The name ``Producer`` counts sequences under: each lane is a stream of its own."""
    return channel if lane == p.LANE_OUTPUT else channel + p.CONTROL_STORE_SUFFIX


class Producer:
    """Idempotent-producer bookkeeping: one id per client, one sequence per channel.

    The daemon dedupes on (Producer-Id, epoch, seq), so re-sending a batch with the sequence it
    was first sent with, after a dropped connection or a daemon restart, appends it exactly once.
    """

    def __init__(self, producer_id: str | None = None, epoch: int = 0) -> None:
        # os, not uuid: ~5 ms less start-up. `run` passes its fixed id and daemon-given epoch.
        self.id = producer_id or "chanctl-" + os.urandom(16).hex()
        self.epoch = epoch
        self._next: dict[str, int] = {}

    def take(self, channel: str) -> tuple[str, int, int]:
        seq = self._next.get(channel, 0)
        self._next[channel] = seq + 1
        return (self.id, self.epoch, seq)

    def undo(self, channel: str, taken: tuple[str, int, int]) -> None:
        """Give back a tuple the daemon refused without recording it (413, 404)."""
        self._next[channel] = taken[2]


class Flush:
    """Marker an input iterator yields to say "nothing more for now": the messages encoded so
    far are sent at once instead of waiting for the next line (``stdin_lines`` yields it when
    its input goes quiet, so a burst followed by silence is never left unsent)."""


FLUSH = Flush()


def encode_bodies(
    items: Iterable[str | bytes | Flush],
    type_: str,
    headers: Mapping[str, str] | None,
    flush_now: Callable[[], bool],
    max_bytes: int = BATCH_BYTES,
) -> Iterator[tuple[bytes, int]]:
    """Group messages into JSON-array bodies of at most ``max_bytes`` (unless one is larger).

    Each message is stamped as it is encoded. A body is also cut early whenever ``flush_now()``
    says the sender is idle, which keeps latency low for slow producers.
    """
    parts: list[str] = []
    size = 2
    clock = time.time
    for item in items:
        if isinstance(item, Flush):
            if parts:
                yield ("[" + ",".join(parts) + "]").encode(), len(parts)
                parts, size = [], 2
            continue
        text = p.encode_message(type_, item, clock(), headers)
        n = len(text) if text.isascii() else len(text.encode())
        if parts and size + n + 1 > max_bytes:
            yield ("[" + ",".join(parts) + "]").encode(), len(parts)
            parts, size = [], 2
        parts.append(text)
        size += n + 1
        if flush_now():
            yield ("[" + ",".join(parts) + "]").encode(), len(parts)
            parts, size = [], 2
    if parts:
        yield ("[" + ",".join(parts) + "]").encode(), len(parts)


def split_body(body: bytes) -> tuple[bytes, bytes] | None:
    """Halve a JSON-array body the daemon refused as too large; None for a single message."""
    values = json.loads(body)
    if len(values) < 2:
        return None
    mid = len(values) // 2
    dump = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    return dump(values[:mid]).encode(), dump(values[mid:]).encode()


def retry_later(resp: Response) -> bool:
    """A 503: the daemon did nothing (it is shutting down, or overloaded) and asks to be asked
    again later; every chanctl request is safe to repeat (appends are idempotent)."""
    return resp.status == 503


def next_seq(resp: Response) -> int:
    """The message count at Stream-Next-Offset (0 when the header is absent)."""
    value = resp.header(p.H_NEXT_OFFSET)
    return p.parse_offset(value) if value else 0


def output_end(resp: Response, channel: str) -> str:
    """Where a HEAD answer says the lane ends; ``-1`` for a lane that does not exist yet."""
    if resp.status == 404:
        return p.OFFSET_START
    check(resp, channel, "inspect")
    return resp.header(p.H_NEXT_OFFSET) or p.OFFSET_START


def check(resp: Response, channel: str, action: str) -> None:
    """Raise the typed error for a refused request; return for any 2xx."""
    status = resp.status
    if 200 <= status < 300 or status == 304:
        return
    detail = _error_detail(resp)
    what = f"{action} {channel!r}" if channel else action
    if status == 404:
        raise ce.ChannelNotFound(f"no channel {channel!r}", hint="`chanctl ls` lists channels")
    if status == 410:
        raise ce.ChannelGone(
            f"cannot {what}: {detail or 'no longer retained'}",
            hint="read from a later offset, e.g. --from start",
        )
    if status == 409 and (resp.header(p.H_CLOSED) or "").lower() == "true":
        raise ce.ChannelClosed(
            f"cannot {what}: the channel is closed",
            hint="closed channels are read-only; publish to a new name",
        )
    if status == 409 and resp.header(p.H_PRODUCER_EXPECTED_SEQ) is not None:
        raise ce.ProducerConflict(
            f"cannot {what}: the daemon expected producer sequence "
            f"{resp.header(p.H_PRODUCER_EXPECTED_SEQ)}: {detail}"
        )
    if status == 409:
        raise ce.NotAChanctlChannel(
            f"cannot {what}: {detail or 'conflicting channel'}",
            hint="chanctl channels hold application/json messages",
        )
    if status == 403 and resp.header(p.H_PRODUCER_EPOCH) is not None:
        raise ce.ProducerConflict(f"cannot {what}: fenced by a newer producer epoch")
    if status in (401, 403):
        raise ce.AuthFailed(
            f"cannot {what}: the daemon refused our credentials",
            hint="set CHANCTL_TOKEN to the daemon's token",
        )
    if status == 413:
        raise ce.MessageTooLarge(f"cannot {what}: message larger than the daemon accepts")
    raise ce.RequestFailed(f"cannot {what}: HTTP {status} {detail}".rstrip(), status=status)


def _error_detail(resp: Response) -> str:
    """The daemon's error envelope message, or the body's first line."""
    try:
        doc = json.loads(resp.body)
    except ValueError:
        return resp.body[:200].decode(errors="replace").strip()
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return str(doc["error"])
    return ""
