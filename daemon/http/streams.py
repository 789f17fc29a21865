"""Handlers for ``/v1/stream/{name}``: one method per HTTP verb, each parse -> service -> render.

GET dispatches on ``live``: catch-up reads are answered here, long-poll and SSE in ``live.py``.
The read path keeps per-message Python work to joining the stored bytes.
"""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from chanctl.protocol import (
    H_CLOSED,
    H_CORRUPT_OFFSET,
    H_EXPIRES_AT,
    H_FIRST_OFFSET,
    H_FSYNC_POLICY,
    H_NEXT_OFFSET,
    H_PRODUCER_EPOCH,
    H_PRODUCER_SEQ,
    H_TTL,
    H_UP_TO_DATE,
    LIVE_LONG_POLL,
    OFFSET_NOW,
    OFFSET_START,
    format_offset,
)

from ..config import Settings
from ..errors import BadRequest
from ..model import Chunk
from ..retention import headers_of
from ..service import StreamService
from . import caching, parse
from .cursors import CURSORS
from .live import LiveReads
from .render import TRUE, chunk_body, is_json, read_headers


class StreamHandlers:
    def __init__(self, service: StreamService, settings: Settings) -> None:
        self.service = service
        self.limits = settings.limits
        self.live = LiveReads(service, settings)

    async def put(self, request: web.Request) -> web.Response:
        name = parse.channel_name(request)
        req = parse.create_request(request.headers, name)
        req = replace(req, body=await parse.read_body(request, self.limits.max_body_bytes))
        res = await self.service.create(req)
        headers = {"Content-Type": res.content_type, H_NEXT_OFFSET: format_offset(res.next_seq)}
        if res.closed:
            headers[H_CLOSED] = TRUE
        if not res.created:
            return web.Response(status=200, headers=headers)
        headers["Location"] = str(request.url.with_query(None))
        return web.Response(status=201, headers=headers)

    async def post(self, request: web.Request) -> web.Response:
        name = parse.channel_name(request)
        req = parse.append_request(request.headers, name)
        req = parse.with_body(req, await parse.read_body(request, self.limits.max_body_bytes))
        res = await self.service.append(req)
        headers = {H_NEXT_OFFSET: format_offset(res.next_seq)}
        if res.closed:
            headers[H_CLOSED] = TRUE
        if res.producer_epoch is not None:
            headers[H_PRODUCER_EPOCH] = str(res.producer_epoch)
            headers[H_PRODUCER_SEQ] = str(res.producer_seq)
        # With producer headers, 200 means "new data written" and 204 "nothing new" (a
        # duplicate, or a close without data); plain appends always answer 204.
        status = 200 if req.producer is not None and res.wrote else 204
        return web.Response(status=status, headers=headers)

    async def delete(self, request: web.Request) -> web.Response:
        name = parse.channel_name(request)
        await self.service.delete(name)
        book = request.app.get(CURSORS)
        if book is not None:
            await book.drop_channel(name)  # saved read positions die with the channel
        return web.Response(status=204)

    async def head(self, request: web.Request) -> web.Response:
        md = await self.service.metadata(parse.channel_name(request))
        headers = {
            "Content-Type": md.content_type,
            H_NEXT_OFFSET: format_offset(md.next_seq),
            "Cache-Control": caching.CACHE_NONE,
            H_FSYNC_POLICY: md.fsync_policy,
            H_FIRST_OFFSET: format_offset(md.first_seq),
        }
        if md.ttl_s is not None:
            headers[H_TTL] = str(md.ttl_s)
        if md.expires_at is not None:
            headers[H_EXPIRES_AT] = md.expires_at
        if md.closed:
            headers[H_CLOSED] = TRUE
        if md.corrupt_seq is not None:
            headers[H_CORRUPT_OFFSET] = format_offset(md.corrupt_seq)
        headers.update(headers_of(md.retention))
        return web.Response(status=200, headers=headers)

    async def get(self, request: web.Request) -> web.StreamResponse:
        name = parse.channel_name(request)
        offset = parse.offset_param(request)
        live = parse.live_param(request)
        if live is None:
            return await self.catch_up(request, name, offset or OFFSET_START)
        if offset is None:
            raise BadRequest(f"live={live} reads need an offset (use -1, now or an offset)")
        if live == LIVE_LONG_POLL:
            return await self.live.long_poll(request, name, offset)
        return await self.live.sse(request, name, offset)

    async def catch_up(self, request: web.Request, name: str, offset: str) -> web.Response:
        st, seq = await self.service.open_read(name, offset)
        if offset == OFFSET_NOW:
            return tail_response(self.service.tail(st))
        chunk = await self.service.read(st, seq)
        tag = caching.etag(chunk)
        headers = read_headers(chunk)
        headers["ETag"] = tag
        headers["Cache-Control"] = caching.cache_control(chunk)
        if caching.if_none_match(request.headers.get("If-None-Match"), tag):
            del headers["Content-Type"]
            return web.Response(status=304, headers=headers)
        return web.Response(body=chunk_body(chunk), headers=headers)


def tail_response(chunk: Chunk) -> web.Response:
    """``offset=now`` catch-up: no data, just where the tail is; never cached, no ETag."""
    headers = read_headers(chunk)
    headers["Cache-Control"] = caching.CACHE_NONE
    headers[H_UP_TO_DATE] = TRUE
    return web.Response(body=b"[]" if is_json(chunk) else b"", headers=headers)
