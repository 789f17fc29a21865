"""The Durable Streams HTTP application: the route table and the cross-cutting concerns.

Routes (the only place they are listed):

- ``/v1/stream/{name}``: PUT create, POST append/close, GET read (catch-up, long-poll, SSE),
  HEAD metadata, DELETE, OPTIONS (CORS preflight). Names may contain ``/``.
- ``GET /v1/health``: readiness probe, ``{"ok": true, "version": ..., "fsync": ..., "tasks": N}``;
  ``tasks`` counts the event loop's live asyncio tasks (one per open connection, live read,
  background sweep...), so a soak test can see a task leak from outside (R7).
- ``GET /v1/channels``: every live channel with basic metadata (``chanctl ls``).
- ``/v1/control/{name}`` (the channel's control lane, same handlers as its stream) and
  ``/v1/producer/{name}`` (run liveness): ``steering.setup_steering``.
- ``/ui/...`` and ``POST /v1/web``: the web view, added by ``web.setup_web`` from server.py.
- ``GET``/``POST /v1/fsck``: `chanctl fsck` on the running daemon (``fsck.setup_fsck``).

Every response, errors and event streams included, carries the browser security headers, and
every error leaves through ``errors.error_envelope``. Middlewares passed in by the daemon (such as
authentication) run inside the envelope, so their refusals get the same JSON shape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware

from chanctl import __version__
from chanctl.protocol import (
    H_CLOSED,
    H_CURSOR,
    H_EXPIRES_AT,
    H_FIRST_OFFSET,
    H_FORK_OFFSET,
    H_FORK_SUB_OFFSET,
    H_FORKED_FROM,
    H_FSYNC_POLICY,
    H_MAX_AGE,
    H_MAX_BYTES,
    H_MAX_MESSAGES,
    H_NEXT_OFFSET,
    H_PRODUCER_EPOCH,
    H_PRODUCER_EXPECTED_SEQ,
    H_PRODUCER_ID,
    H_PRODUCER_RECEIVED_SEQ,
    H_PRODUCER_SEQ,
    H_SEQ,
    H_SSE_ENCODING,
    H_TTL,
    H_UP_TO_DATE,
    STREAM_PREFIX,
    format_offset,
)

from ..config import Settings
from ..service import StreamService
from ..sidetables import SideTables, local_tables
from .cursors import setup_cursors
from .errors import error_envelope
from .fsck import setup_fsck
from .live import LiveReads
from .steering import is_internal, listing_extra, setup_steering
from .streams import StreamHandlers

ResponseHook = Callable[[web.Request, web.StreamResponse], Awaitable[None]]

ALLOWED_METHODS = "GET, HEAD, PUT, POST, DELETE, OPTIONS"
REQUEST_HEADERS = ", ".join(
    ["Authorization", "Content-Type", "If-None-Match", H_CLOSED, H_SEQ, H_TTL, H_EXPIRES_AT]
    + [H_FORKED_FROM, H_FORK_OFFSET, H_FORK_SUB_OFFSET, H_PRODUCER_ID, H_PRODUCER_EPOCH]
    + [H_PRODUCER_SEQ, H_MAX_AGE, H_MAX_BYTES, H_MAX_MESSAGES]
)
EXPOSED_HEADERS = ", ".join(
    [H_NEXT_OFFSET, H_UP_TO_DATE, H_CLOSED, H_CURSOR, H_TTL, H_EXPIRES_AT, "ETag", "Location"]
    + [H_PRODUCER_EPOCH, H_PRODUCER_SEQ, H_PRODUCER_EXPECTED_SEQ, H_PRODUCER_RECEIVED_SEQ]
    + [H_SSE_ENCODING, H_FSYNC_POLICY, H_FIRST_OFFSET, H_MAX_AGE, H_MAX_BYTES, H_MAX_MESSAGES]
)


def build_app(
    service: StreamService,
    settings: Settings,
    middlewares: Sequence[Middleware] = (),
    *,
    cors_origins: Iterable[str] = (),
    tables: SideTables | None = None,
) -> web.Application:
    """The aiohttp application serving ``service``.

    ``cors_origins`` lists the browser origins allowed to read responses cross-origin (``*``
    for any). The default is none: a loopback daemon must not hand its streams to whatever web
    page the user happens to have open. ``tables`` keep cursors and run producers; the default
    is the files of ``settings.data_dir`` (the daemon passes shared ones on NATS).
    """
    if tables is None:
        tables = local_tables(settings.data_dir)
    app = web.Application(middlewares=[error_envelope, *middlewares])
    streams = StreamHandlers(service, settings)
    # [\s\S]: unlike ".", also matches a (percent-encoded) newline, so such a name reaches
    # name validation and gets its 400 instead of falling through to "no route" (404).
    route = STREAM_PREFIX + "{name:[\\s\\S]*}"
    steering = setup_steering(app, service, streams, preflight, tables.producers)
    app.router.add_route("PUT", route, streams.put)
    app.router.add_route("POST", route, streams.post)
    app.router.add_route("GET", route, streams.get)
    app.router.add_route("HEAD", route, streams.head)
    app.router.add_route("DELETE", route, steering.deleting(streams.delete))  # + control lane
    app.router.add_route("OPTIONS", route, preflight)
    info = _Info(service, streams.live)
    app.router.add_route("GET", "/v1/health", info.health)
    app.router.add_route("GET", "/v1/channels", info.channels)
    setup_cursors(app, tables.cursors)  # named read positions, owned by the client side
    setup_fsck(app, service)  # GET/POST /v1/fsck: `chanctl fsck` on a running daemon
    app.on_response_prepare.append(_browser_headers(frozenset(cors_origins)))
    _tie_lifecycle(app, service, streams)
    return app


def _tie_lifecycle(app: web.Application, service: StreamService, streams: StreamHandlers) -> None:
    """Run the service's sweep while the app runs; end live reads when it shuts down (their
    clients resume from the last offset they got)."""

    async def start(_: web.Application) -> None:
        await service.start()

    async def shutdown(_: web.Application) -> None:
        await streams.live.shutdown()

    async def cleanup(_: web.Application) -> None:
        await service.stop()

    app.on_startup.append(start)
    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(cleanup)


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight: says which methods and headers the API takes. Whether the origin may
    use them is decided, for every response alike, by ``_browser_headers``."""
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": ALLOWED_METHODS,
            "Access-Control-Allow-Headers": REQUEST_HEADERS,
            "Access-Control-Max-Age": "600",
        },
    )


def _browser_headers(origins: frozenset[str]) -> ResponseHook:
    """Headers every response gets (PROTOCOL.md section 10.7), plus CORS for allowed origins."""

    async def add(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        origin = request.headers.get("Origin")
        if origin and ("*" in origins or origin in origins):
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
            headers.add("Vary", "Origin")

    return add


class _Info:
    def __init__(self, service: StreamService, live: LiveReads) -> None:
        self.service = service
        self.live = live

    async def health(self, request: web.Request) -> web.Response:
        fsync = self.service.store.fsync_policy
        # len(all_tasks()) walks a WeakSet: microseconds even with a thousand live readers.
        tasks = len(asyncio.all_tasks())
        return web.json_response(
            {"ok": True, "version": __version__, "fsync": fsync, "tasks": tasks}
        )

    async def channels(self, request: web.Request) -> web.Response:
        listing = [
            {
                "name": ch.name,
                "content_type": ch.content_type,
                # null where only opening the channel could tell (the listing opens none)
                "next_offset": None if ch.next_seq is None else format_offset(ch.next_seq),
                "size": ch.size_bytes,
                "closed": ch.closed,
                "last_write": ch.last_write,
                "readers": self.live.readers.get(ch.name, 0),  # long-poll and SSE right now
                **ch.extra,
                **listing_extra(request.app, ch.name),  # its `run` producer, attached or lost
            }
            for ch in await self.service.channels()
            if not is_internal(ch.name)  # control lanes are part of their channel
        ]
        return web.json_response(listing, headers={"Cache-Control": "no-store"})
