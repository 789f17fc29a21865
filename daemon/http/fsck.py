"""``chanctl fsck`` against the running daemon: verify channels through the store.

Routes (shapes in ``chanctl.protocol``, next to ``FSCK_PATH``):

* ``GET  /v1/fsck`` -> 200 ``{"channels": [...]}``: every name a full check covers, sorted
  (control lanes and soft-deleted channels included: their records are stored too).
* ``POST /v1/fsck`` with ``{"channels": [NAME, ...]}`` -> 200 ``{"results": [...]}``, one per
  name, in order; 404 when one does not exist. The client sends the names in small batches so
  it can show progress, and each request stays short.

Each channel is checked by ``ChannelStore.verify``: file I/O runs in the engine's threads, so
appends and reads carry on meanwhile, and corruption found quarantines the channel at once.
Repair is offline only (``chanctl fsck --repair --data-dir``): it rewrites files the running
daemon holds open.
"""

from __future__ import annotations

import json

from aiohttp import web

from chanctl import protocol as p

from ..errors import BadRequest
from ..service import StreamService


def setup_fsck(app: web.Application, service: StreamService) -> None:
    async def names(request: web.Request) -> web.Response:
        return web.json_response({"channels": sorted(service.store.names())}, headers=_NO_STORE)

    async def check(request: web.Request) -> web.Response:
        wanted = _names(await request.read())
        results = [(await service.store.verify(n)).to_wire().to_json() for n in wanted]
        return web.json_response({"results": results}, headers=_NO_STORE)

    app.router.add_route("GET", p.FSCK_PATH, names)
    app.router.add_route("POST", p.FSCK_PATH, check)


_NO_STORE = {"Cache-Control": "no-store"}


def _names(body: bytes) -> list[str]:
    try:
        doc = json.loads(body or b"null")
    except ValueError:
        raise BadRequest("fsck: the body must be JSON") from None
    names = doc.get("channels") if isinstance(doc, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BadRequest('fsck: expected {"channels": [NAME, ...]}')
    if len(names) > p.FSCK_MAX_NAMES:
        raise BadRequest(f"fsck: at most {p.FSCK_MAX_NAMES} channels per request")
    return names
