"""Rendering read chunks: the headers and body shared by catch-up and long-poll responses."""

from __future__ import annotations

from chanctl.protocol import (
    DEFAULT_CONTENT_TYPE,
    H_CLOSED,
    H_NEXT_OFFSET,
    H_UP_TO_DATE,
    JSON_CONTENT_TYPE,
    format_offset,
)

from ..jsonmode import frame_json
from ..model import Chunk

TRUE = "true"


def read_headers(chunk: Chunk) -> dict[str, str]:
    """Headers every read response with a body carries."""
    ct = chunk.state.config.content_type
    headers = {"Content-Type": ct, H_NEXT_OFFSET: format_offset(chunk.next_seq)}
    if chunk.up_to_date:
        headers[H_UP_TO_DATE] = TRUE
    if chunk.closed:
        headers[H_CLOSED] = TRUE
    if media_type(ct) == DEFAULT_CONTENT_TYPE:
        # Defense in depth: a browser navigating to a binary stream downloads it.
        headers["Content-Disposition"] = "attachment"
    return headers


def media_type(content_type: str) -> str:
    """The type/subtype of a channel's recorded content type (stored lower-cased)."""
    return content_type.split(";", 1)[0].strip()


def is_json(chunk: Chunk) -> bool:
    return media_type(chunk.state.config.content_type) == JSON_CONTENT_TYPE


def chunk_body(chunk: Chunk) -> bytes:
    """Binary and text channels concatenate messages; JSON channels return one array."""
    if is_json(chunk):
        return frame_json(chunk.messages())
    return chunk.data
