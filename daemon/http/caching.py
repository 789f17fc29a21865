"""Caching and collapsing (PROTOCOL.md section 8): ETags, Cache-Control and cursors."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from ..model import Chunk

# Catch-up and long-poll data never changes at a given offset, so it may be cached. "private":
# chanctl's streams sit behind per-user credentials, so shared caches must not keep them.
CACHE_DATA = "private, max-age=60, stale-while-revalidate=300"
# The tail of an open stream (and HEAD, offset=now, long-poll 204s) changes with every append.
CACHE_NONE = "no-store"
CACHE_SSE = "no-cache"

CURSOR_EPOCH = datetime(2024, 10, 9, tzinfo=UTC).timestamp()
CURSOR_INTERVAL_S = 20
_JITTER_S = (1, 3600)


def etag(chunk: Chunk) -> str:
    """``{stream}:{start}:{end}``, where the stream part also names this incarnation of the
    channel (a deleted and re-created channel must never revalidate old bodies), and a ``:c``
    suffix marks a body that ends the stream, whose headers differ from the open one's."""
    incarnation = int(chunk.state.config.created_at * 1_000_000)
    closed = ":c" if chunk.closed else ""
    return f'"{incarnation:x}:{chunk.start_seq}:{chunk.next_seq}{closed}"'


def if_none_match(header: str | None, tag: str) -> bool:
    """Does a client's If-None-Match list name ``tag`` (weak comparison, ``*`` matches all)?"""
    if not header:
        return False
    for candidate in header.split(","):
        value = candidate.strip()
        if value.startswith("W/"):
            value = value[2:]
        if value in ("*", tag):
            return True
    return False


def cache_control(chunk: Chunk) -> str:
    if not chunk.empty or chunk.closed:
        return CACHE_DATA
    return CACHE_NONE


def cursor_interval(now: float) -> int:
    return int((now - CURSOR_EPOCH) // CURSOR_INTERVAL_S)


def next_cursor(now: float, client: str | None) -> int:
    """The cursor for a live response: the current 20 s interval number, or, when the client
    already holds that interval (or a later one), a value strictly above the client's, pushed
    forward by random jitter so that cached responses cannot loop (section 8.1)."""
    current = cursor_interval(now)
    theirs = _client_cursor(client)
    if theirs is None or theirs < current:
        return current
    jitter_s = random.randint(*_JITTER_S)
    return theirs + max(1, -(-jitter_s // CURSOR_INTERVAL_S))


def _client_cursor(text: str | None) -> int | None:
    if text is None or not text.isdigit() or not text.isascii() or len(text) > 18:
        return None
    return int(text)
