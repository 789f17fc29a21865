"""Turning HTTP requests into the service's request values.

Every header and query parameter is validated here, before any channel is touched, so a
malformed request never has side effects and always gets a 400 that names the offending value.
"""

from __future__ import annotations

import asyncio
from urllib.parse import unquote, urlsplit

from aiohttp import web
from multidict import CIMultiDictProxy

from chanctl.protocol import (
    H_CLOSED,
    H_EXPIRES_AT,
    H_FORK_OFFSET,
    H_FORK_SUB_OFFSET,
    H_FORKED_FROM,
    H_MAX_AGE,
    H_MAX_BYTES,
    H_MAX_MESSAGES,
    H_PRODUCER_EPOCH,
    H_PRODUCER_ID,
    H_PRODUCER_SEQ,
    H_SEQ,
    H_TTL,
    LIVE_LONG_POLL,
    LIVE_SSE,
    OFFSET_NOW,
    OFFSET_START,
    STREAM_PREFIX,
    ChannelNameError,
    OffsetError,
    is_true,
    parse_content_type,
    parse_offset,
    parse_uint,
    validate_name,
)

from ..errors import BadRequest, PayloadTooLarge
from ..expiry import parse_expires_at, parse_ttl
from ..model import AppendRequest, CreateRequest, ForkRequest
from ..retention import parse_limit, parse_max_age
from ..store.base import ProducerStamp, Retention

Headers = CIMultiDictProxy[str]
# Set by the control-lane routes (steering.py): the lane is stored under the channel name plus
# this suffix, which no valid name can contain, so every stream handler serves it unchanged.
LANE_SUFFIX = web.RequestKey("chanctl_lane_suffix", str)


def channel_name(request: web.Request) -> str:
    suffix: str = request.get(LANE_SUFFIX, "")
    return checked_name(request.match_info.get("name", "")) + suffix


def checked_name(name: str) -> str:
    """``name`` once it is a valid channel name, else 400. Valid names are remembered (the
    check is a pure function of the text, and every request runs it), a few thousand at most."""
    if name in _VALID_NAMES:
        return name
    try:
        validate_name(name)
    except ChannelNameError as exc:
        raise BadRequest(str(exc)) from None
    if len(_VALID_NAMES) >= _VALID_NAMES_MAX:
        _VALID_NAMES.clear()
    _VALID_NAMES.add(name)
    return name


_VALID_NAMES: set[str] = set()
_VALID_NAMES_MAX = 4096


def single_param(request: web.Request, key: str) -> str | None:
    """A query parameter that may appear at most once and never empty."""
    values = request.query.getall(key, [])
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest(f"the {key!r} parameter was given {len(values)} times; give it once")
    if values[0] == "":
        raise BadRequest(f"the {key!r} parameter is empty")
    return values[0]


def offset_param(request: web.Request) -> str | None:
    """The ``offset`` parameter, checked for syntax (its range is checked against the channel)."""
    offset = single_param(request, "offset")
    if offset is not None and offset not in (OFFSET_START, OFFSET_NOW):
        try:
            parse_offset(offset)
        except OffsetError as exc:
            raise BadRequest(str(exc)) from None
    return offset


def live_param(request: web.Request) -> str | None:
    live = single_param(request, "live")
    if live is not None and live not in (LIVE_LONG_POLL, LIVE_SSE):
        raise BadRequest(f"unknown live mode {live!r}: use {LIVE_LONG_POLL!r} or {LIVE_SSE!r}")
    return live


# Producer claims and cursor updates are a few hundred bytes of JSON.
MAX_CONTROL_BODY = 64 * 1024


# A refused body declared this large or smaller is read and thrown away after its 413 went out.
DRAIN_BYTES = 16 * 1024 * 1024
DRAIN_SECONDS = 2.0


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole request body, refusing (413) anything over ``limit`` bytes: up front when
    Content-Length says so, and while reading when the body is chunked."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit")
            chunks.append(chunk)
    except ConnectionResetError:
        # The client hung up mid-body: an ordinary event, not a daemon error to log with a
        # traceback. Nothing was stored; there is nobody left to read this answer.
        raise BadRequest("the connection was lost before the whole body arrived") from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def drain_body(request: web.Request) -> bool:
    """Read and discard what is left of a refused body, if it was declared no larger than
    ``DRAIN_BYTES``; True if it was all read. Clients such as a browser's ``fetch`` send the
    whole body before they look at the answer: were the connection closed with their bytes
    unread, the kernel would reset it and they would see a network error, not the 413. A huge
    declared body (1 GiB) is not read: its connection is closed. Costs reading, never memory."""
    declared = request.content_length
    if declared is None or declared > DRAIN_BYTES:
        return False
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            while await request.content.readany():
                pass
    except (TimeoutError, ConnectionError):
        return False
    return True


def create_request(headers: Headers, name: str) -> CreateRequest:
    """PUT headers (the body is added once read)."""
    ttl_text, expires_text = headers.get(H_TTL), headers.get(H_EXPIRES_AT)
    if ttl_text is not None and expires_text is not None:
        raise BadRequest(f"give either {H_TTL} or {H_EXPIRES_AT}, not both")
    return CreateRequest(
        name=name,
        content_type=_content_type(headers),
        ttl_s=None if ttl_text is None else parse_ttl(ttl_text),
        expires_at=None if expires_text is None else parse_expires_at(expires_text),
        closed=is_true(headers.get(H_CLOSED)),
        fork=fork_request(headers),
        retention=retention_request(headers),
    )


def retention_request(headers: Headers) -> Retention:
    """``Chanctl-Max-Age`` / ``-Max-Bytes`` / ``-Max-Messages``; None where a header is absent
    (the daemon's default applies)."""
    age, size, count = (headers.get(h) for h in (H_MAX_AGE, H_MAX_BYTES, H_MAX_MESSAGES))
    try:
        return Retention(
            max_age_s=None if age is None else parse_max_age(age, H_MAX_AGE),
            max_bytes=None if size is None else parse_limit(size, H_MAX_BYTES),
            max_messages=None if count is None else parse_limit(count, H_MAX_MESSAGES),
        )
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def append_request(headers: Headers, name: str) -> AppendRequest:
    """POST headers (the body is added once read)."""
    seq = headers.get(H_SEQ)
    if seq is not None and not seq:
        raise BadRequest(f"empty {H_SEQ} header")
    return AppendRequest(
        name=name,
        content_type=headers.get("Content-Type") or None,
        body=b"",
        close=is_true(headers.get(H_CLOSED)),
        stream_seq=seq,
        producer=producer_stamp(headers),
    )


def with_body(req: AppendRequest, body: bytes) -> AppendRequest:
    """``req`` carrying ``body``: what ``dataclasses.replace`` does, without its per-call
    introspection (every append passes here)."""
    return AppendRequest(req.name, req.content_type, body, req.close, req.stream_seq, req.producer)


def _content_type(headers: Headers) -> str | None:
    given = headers.get("Content-Type")
    if not given:
        return None
    if parse_content_type(given) is None:
        raise BadRequest(f"invalid Content-Type {given!r}: expected type/subtype")
    return given


def producer_stamp(headers: Headers) -> ProducerStamp | None:
    """Producer-Id/Epoch/Seq: all three or none."""
    pid, epoch, seq = (headers.get(h) for h in (H_PRODUCER_ID, H_PRODUCER_EPOCH, H_PRODUCER_SEQ))
    if pid is None and epoch is None and seq is None:
        return None
    if pid is None or epoch is None or seq is None:
        raise BadRequest(
            f"{H_PRODUCER_ID}, {H_PRODUCER_EPOCH} and {H_PRODUCER_SEQ} must be sent together"
        )
    if not pid:
        raise BadRequest(f"{H_PRODUCER_ID} must not be empty")
    return ProducerStamp(
        pid, _producer_number(H_PRODUCER_EPOCH, epoch), _producer_number(H_PRODUCER_SEQ, seq)
    )


def _producer_number(header: str, text: str) -> int:
    value = parse_uint(text.strip())
    if value is None:
        raise BadRequest(
            f"invalid {header} {text!r}: use an integer from 0 to 2^53-1 without sign or "
            "leading zeros"
        )
    return value


def fork_request(headers: Headers) -> ForkRequest | None:
    names = (H_FORKED_FROM, H_FORK_OFFSET, H_FORK_SUB_OFFSET)
    source, offset, sub = (headers.get(h) for h in names)
    if source is None:
        if offset is not None or sub is not None:
            raise BadRequest(f"{H_FORK_OFFSET} and {H_FORK_SUB_OFFSET} need {H_FORKED_FROM}")
        return None
    sub_offset = 0 if sub is None else parse_uint(sub.strip())
    if sub_offset is None:
        raise BadRequest(f"invalid {H_FORK_SUB_OFFSET} {sub!r}: use a non-negative integer")
    if sub_offset and offset is None:
        raise BadRequest(f"{H_FORK_SUB_OFFSET} needs an explicit {H_FORK_OFFSET}")
    return ForkRequest(source_name(source), _fork_offset(offset), sub_offset)


def _fork_offset(text: str | None) -> int | None:
    if text is None or text.strip() == OFFSET_NOW:
        return None
    if text.strip() == OFFSET_START:
        return 0
    try:
        return parse_offset(text.strip())
    except OffsetError as exc:
        raise BadRequest(f"invalid {H_FORK_OFFSET}: {exc}") from None


def source_name(value: str) -> str:
    """``Stream-Forked-From`` names the source by URL path (``/v1/stream/<name>``); a full URL
    or a bare channel name is accepted too."""
    text = value.strip()
    if text.startswith(("http://", "https://")):
        text = urlsplit(text).path
    text = unquote(text)
    if text.startswith(STREAM_PREFIX):
        text = text[len(STREAM_PREFIX) :]
    return checked_name(text)
