"""Message framing: how a request body becomes messages, and messages become a response body.

Binary and text channels store one message per append, byte for byte. ``application/json``
channels keep message boundaries (PROTOCOL.md section 7.1): a body that is a JSON array is
flattened exactly one level and each element becomes one message; any other JSON value is one
message. Each message is stored as its compact JSON text, so a catch-up read is just the stored
bytes joined with commas inside brackets, with no per-message parsing on the read path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from json.encoder import (  # type: ignore[attr-defined]
    c_make_encoder,
    encode_basestring,
    encode_basestring_ascii,
)
from typing import Any

from .errors import BadRequest


def _no_default(value: Any) -> Any:
    raise TypeError(f"cannot encode {type(value).__name__}")  # parsed JSON never gets here


def _compact_encoder(ascii_only: bool) -> Callable[[Any], str]:
    """Compact JSON text of a parsed value. Uses the C encoder directly when available:
    ``json.dumps`` builds a new encoder per call, which costs more than encoding a small
    message. No circular-reference check is needed for values that came out of ``json.loads``.
    """
    escape = encode_basestring_ascii if ascii_only else encode_basestring
    if c_make_encoder is None:  # pure-Python interpreters
        encoder = json.JSONEncoder(
            separators=(",", ":"), ensure_ascii=ascii_only, allow_nan=False, default=_no_default
        )
        return encoder.encode
    chunks = c_make_encoder(None, _no_default, escape, None, ":", ",", False, False, False)
    join = "".join
    return lambda value: join(chunks(value, 0))


_COMPACT = _compact_encoder(ascii_only=False)
_ASCII = _compact_encoder(ascii_only=True)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# One decoder for every append: ``json.loads`` with any keyword builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def split_messages(body: bytes, is_json: bool, *, allow_empty_array: bool) -> list[bytes]:
    """The messages one append stores. An empty array is only meaningful on create (PUT ``[]``
    makes an empty channel); on append it is a client bug and rejected."""
    if not is_json:
        return [body] if body else []
    if not body:
        return []
    value = _parse(body)
    if not isinstance(value, list):
        return [_encode(value)]
    if not value and not allow_empty_array:
        raise BadRequest("empty JSON array: an append must carry at least one message")
    try:
        compact = _COMPACT
        return [compact(item).encode("utf-8") for item in value]  # the hot path: one C call each
    except (UnicodeEncodeError, ValueError):
        return [_encode(item) for item in value]  # find and report (or escape) the odd one


def _parse(body: bytes) -> Any:
    try:
        return _DECODER.decode(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest("invalid JSON: the body is not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"invalid JSON: {exc}") from None


def _encode(value: Any) -> bytes:
    try:
        return _COMPACT(value).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate escape (e.g. "\\ud800") cannot be written as UTF-8: keep it escaped.
        return _ASCII(value).encode("ascii")
    except ValueError as exc:  # 1e999 parses as infinity, which JSON cannot express
        raise BadRequest(f"invalid JSON: {exc}") from None


def frame_json(messages: Sequence[bytes]) -> bytes:
    """A JSON channel's read body: the stored messages as one JSON array."""
    return b"[" + b",".join(messages) + b"]"
