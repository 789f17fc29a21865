"""Durable named read positions ("cursors") behind `chanctl tail --cursor NAME`.

A cursor is a tiny mutable value (channel, name) -> offset. It is kept out of the channel log on
purpose: stored as messages in a channel of its own it would grow with every save, show up in
`chanctl ls`, and cost two round trips to read. It lives in a side table (daemon/sidetables.py):
on the local engines one JSON file in the data directory, rewritten atomically with saves that
arrive during a write coalesced into the next one (many tails saving twice a second cost one
fsync each round); on NATS a KV bucket shared by every daemon of the namespace.

Routes (clients build them with ``chanctl.protocol.cursor_path``):

* ``GET    /v1/cursors/{channel}?name=N`` -> 200 ``{"channel", "name", "offset"|null, "updated"}``
* ``PUT    /v1/cursors/{channel}?name=N`` with ``{"offset": "..."}`` -> 204
* ``DELETE /v1/cursors/{channel}?name=N`` -> 204 (404 if it was not set)
* ``GET    /v1/cursors/{channel}`` -> 200 ``{"channel", "cursors": [{"name", "offset", ...}]}``
* any of these with ``&lane=control``: the cursors of the channel's control lane (steering.py)

Wire-up: ``setup_cursors(app, tables.cursors)`` once while building the application; the
channel DELETE handler may call ``app[CURSORS].drop_channel(name)`` to forget its cursors.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from chanctl import protocol as p

from ..sidetables import SideTable
from .parse import MAX_CONTROL_BODY, read_body


class CursorBook:
    """All cursors, one side-table document per channel: ``{cursor name: {offset, updated}}``.

    The table is the data directory's ``cursors.json`` on the local engines, and shared by every
    daemon of the namespace on NATS (``daemon/sidetables.py``).
    """

    def __init__(self, table: SideTable) -> None:
        self.table = table

    def get(self, channel: str, name: str) -> dict[str, Any] | None:
        entry = (self.table.get(channel) or {}).get(name)
        return entry if isinstance(entry, dict) else None

    def list(self, channel: str) -> list[dict[str, Any]]:
        doc = self.table.get(channel) or {}
        return [{"name": n, **v} for n, v in sorted(doc.items()) if isinstance(v, dict)]

    async def set(self, channel: str, name: str, offset: str) -> None:
        doc = dict(self.table.get(channel) or {})
        doc[name] = {"offset": offset, "updated": time.time()}
        await self.table.put(channel, doc)

    async def delete(self, channel: str, name: str) -> bool:
        doc = dict(self.table.get(channel) or {})
        if doc.pop(name, None) is None:
            return False
        await (self.table.put(channel, doc) if doc else self.table.delete(channel))
        return True

    async def drop_channel(self, channel: str) -> None:
        if self.table.get(channel) is not None:
            await self.table.delete(channel)


CURSORS = web.AppKey("chanctl_cursors", CursorBook)


def setup_cursors(app: web.Application, table: SideTable) -> CursorBook:
    """Register the cursor routes on ``app``, keeping the cursors in ``table``."""
    book = CursorBook(table)
    app[CURSORS] = book
    route = p.CURSORS_PREFIX + "{channel:.+}"
    app.router.add_get(route, handle_get, allow_head=False)
    app.router.add_put(route, handle_put)
    app.router.add_delete(route, handle_delete)
    return book


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"ok": False, "error": message, "status": status}, status=status)


def _target(request: web.Request) -> tuple[str, str | None]:
    """(channel, cursor name or None), validated; raises ValueError with a readable message."""
    channel = p.validate_name(request.match_info["channel"])
    if request.query.get(p.LANE_QUERY) == p.LANE_CONTROL:  # the control lane's own cursors
        channel += p.CONTROL_STORE_SUFFIX
    name = request.query.get("name")
    return channel, None if name is None else p.validate_cursor_name(name)


async def handle_get(request: web.Request) -> web.Response:
    try:
        channel, name = _target(request)
    except ValueError as exc:
        return _error(400, str(exc))
    book = request.app[CURSORS]
    if name is None:
        return web.json_response({"channel": channel, "cursors": book.list(channel)})
    entry = book.get(channel, name) or {"offset": None, "updated": None}
    return web.json_response({"channel": channel, "name": name, **entry})


async def handle_put(request: web.Request) -> web.Response:
    try:
        channel, name = _target(request)
        if name is None:
            raise ValueError("missing ?name=CURSOR")
        body = await read_body(request, MAX_CONTROL_BODY) if request.content_length else b""
        doc = p.loads_json(body) if body else None
        offset = doc.get("offset") if isinstance(doc, dict) else None
        if not isinstance(offset, str):
            raise ValueError('expected a JSON body {"offset": "<offset>"}')
        p.parse_offset(offset)
    except ValueError as exc:
        return _error(400, str(exc))
    await request.app[CURSORS].set(channel, name, offset)
    return web.Response(status=204)


async def handle_delete(request: web.Request) -> web.Response:
    try:
        channel, name = _target(request)
        if name is None:
            raise ValueError("missing ?name=CURSOR")
    except ValueError as exc:
        return _error(400, str(exc))
    if not await request.app[CURSORS].delete(channel, name):
        return _error(404, f"no cursor {name!r} for channel {channel!r}")
    return web.Response(status=204)
