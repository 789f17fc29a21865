"""The control lane and producer liveness routes (README "Steering and wrapping jobs").

* ``/v1/control/{name}``: the channel's control lane, served by the very same handlers as
  ``/v1/stream/{name}`` (catch-up, long-poll, SSE, HEAD, PUT, POST, DELETE), so any Durable
  Streams client, a browser included, can steer. The handlers see the name plus
  ``CONTROL_STORE_SUFFIX`` (set through ``parse.LANE_SUFFIX``), a store name no valid channel
  name can collide with. A POST creates the lane first if needed: steering must work before any
  producer ever ran, and a browser should not need a PUT first.
* ``/v1/producer/{name}``: PUT attaches a run or heartbeats, DELETE detaches it (with its exit
  status), GET describes it. The logic lives in ``daemon/liveness.py``.

Deleting a channel deletes its control lane and forgets its producer (``deleting``), and
listings hide control lanes and show each channel's producer (``listing_extra``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from chanctl import protocol as p

from ..errors import BadRequest, NotFound
from ..liveness import Busy, Claim, Fenced, Registry
from ..model import CreateRequest
from ..service import StreamService
from ..sidetables import SideTable
from . import parse
from .cursors import CURSORS
from .streams import StreamHandlers

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REGISTRY = web.AppKey("chanctl_producers", Registry)


def is_internal(name: str) -> bool:
    """A store name that is not a channel of its own (a control lane): never listed."""
    return name.endswith(p.CONTROL_STORE_SUFFIX)


def listing_extra(app: web.Application, name: str) -> dict[str, Any]:
    """What ``GET /v1/channels`` adds to a channel's entry: its run producer, if it had one."""
    registry = app.get(REGISTRY)
    doc = None if registry is None else registry.describe(name)
    return {} if doc is None else {"producer": doc}


class Steering:
    def __init__(self, service: StreamService, streams: StreamHandlers, registry: Registry):
        self.service = service
        self.streams = streams
        self.registry = registry

    def deleting(self, handler: Handler) -> Handler:
        """Wrap the output lane's DELETE: the control lane and the producer go with it (and a
        channel that only ever had a control lane can be deleted by its name too)."""

        async def delete(request: web.Request) -> web.StreamResponse:
            name = parse.channel_name(request)
            dropped = await self._drop_lane(request.app, name + p.CONTROL_STORE_SUFFIX)
            await self.registry.drop(name)
            try:
                return await handler(request)
            except NotFound:
                if not dropped:
                    raise
                return web.Response(status=204)

        return delete

    async def _drop_lane(self, app: web.Application, lane: str) -> bool:
        try:
            await self.service.delete(lane)
        except NotFound:
            return False
        book = app.get(CURSORS)
        if book is not None:
            await book.drop_channel(lane)
        return True

    async def post_control(self, request: web.Request) -> web.StreamResponse:
        name = parse.channel_name(request)
        try:
            await self.service.core.lookup(name)
        except NotFound:
            await self.service.create(CreateRequest(name, content_type=p.JSON_CONTENT_TYPE))
        return await self.streams.post(request)

    # -- producer liveness ---------------------------------------------------------------------

    async def attach(self, request: web.Request) -> web.Response:
        name = parse.channel_name(request)
        try:
            claim = Claim.from_json(
                p.loads_json(await parse.read_body(request, parse.MAX_CONTROL_BODY))
            )
        except ValueError as exc:
            raise BadRequest(f"bad producer claim: {exc}") from None
        try:
            doc = await self.registry.attach(name, claim, await self._store_epoch(name))
        except Busy as busy:
            return _refusal(f"channel {name!r} already has a live producer", producer=busy.current)
        except Fenced as exc:
            return _refusal(str(exc), fenced=True)
        return web.json_response(doc, headers={"Cache-Control": "no-store"})

    async def detach(self, request: web.Request) -> web.Response:
        name = parse.channel_name(request)
        run_id = parse.single_param(request, "run_id") or ""
        status = parse.single_param(request, "exit_status")
        try:
            code = None if status is None else int(status)
        except ValueError:
            raise BadRequest(f"bad exit_status {status!r}") from None
        try:
            await self.registry.detach(name, run_id, code)
        except Fenced as exc:
            return _refusal(str(exc), fenced=True)
        return web.Response(status=204)

    async def describe(self, request: web.Request) -> web.Response:
        doc = self.registry.describe(parse.channel_name(request)) or {"state": "none"}
        return web.json_response(doc, headers={"Cache-Control": "no-store"})

    async def _store_epoch(self, name: str) -> int:
        """The run producer's epoch as the output lane last stored it (0 if none)."""
        st = await self.service.store.get(name)
        known = None if st is None else st.producers.get(p.RUN_PRODUCER_ID)
        return 0 if known is None else known.epoch


def _refusal(message: str, **extra: object) -> web.Response:
    body = {"ok": False, "error": message, "status": 409, **extra}
    return web.Response(
        status=409,
        text=json.dumps(body),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _on_control_lane(handler: Handler) -> Handler:
    async def on_lane(request: web.Request) -> web.StreamResponse:
        request[parse.LANE_SUFFIX] = p.CONTROL_STORE_SUFFIX
        return await handler(request)

    return on_lane


def setup_steering(
    app: web.Application,
    service: StreamService,
    streams: StreamHandlers,
    preflight: Handler,
    producers: SideTable,
) -> Steering:
    """Register the control lane and producer routes, keeping producers in the ``producers``
    side table; returns the object whose ``deleting`` wraps the output lane's DELETE handler."""
    registry = Registry(producers)
    registry.load()
    app[REGISTRY] = registry
    steering = Steering(service, streams, registry)
    lane = p.CONTROL_PREFIX + "{name:[\\s\\S]*}"
    for method, handler in (
        ("PUT", streams.put),
        ("POST", steering.post_control),
        ("GET", streams.get),
        ("HEAD", streams.head),
        ("DELETE", streams.delete),
        ("OPTIONS", preflight),
    ):
        app.router.add_route(method, lane, _on_control_lane(handler))
    producer = p.PRODUCER_PREFIX + "{name:[\\s\\S]*}"
    app.router.add_route("PUT", producer, steering.attach)
    app.router.add_route("DELETE", producer, steering.detach)
    app.router.add_get(producer, steering.describe, allow_head=False)
    return steering
