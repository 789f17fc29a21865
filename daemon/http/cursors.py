"""Durable named read positions ("cursors") behind `chanctl tail --cursor NAME`.

A cursor is a tiny mutable value (channel, name) -> offset. It is kept out of the channel log on
purpose: stored as messages in a channel of its own it would grow with every save, show up in
`chanctl ls`, and cost two round trips to read. Here it is one JSON file in the data directory,
rewritten atomically (tmp, fsync, rename, fsync dir). Saves that arrive while a write is running
are coalesced into the next write, so many tails saving twice a second cost one fsync each round.

Routes (clients build them with ``chanctl.protocol.cursor_path``):

* ``GET    /v1/cursors/{channel}?name=N`` -> 200 ``{"channel", "name", "offset"|null, "updated"}``
* ``PUT    /v1/cursors/{channel}?name=N`` with ``{"offset": "..."}`` -> 204
* ``DELETE /v1/cursors/{channel}?name=N`` -> 204 (404 if it was not set)
* ``GET    /v1/cursors/{channel}`` -> 200 ``{"channel", "cursors": [{"name", "offset", ...}]}``
* any of these with ``&lane=control``: the cursors of the channel's control lane (steering.py)

Wire-up: ``setup_cursors(app, settings.data_dir)`` once while building the application; the
channel DELETE handler may call ``app[CURSORS].drop_channel(name)`` to forget its cursors.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from chanctl import protocol as p

FILE_NAME = "cursors.json"


class CursorBook:
    """All cursors of one daemon, in memory, persisted to one file with group commit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._data: dict[str, dict[str, dict[str, Any]]] = {}
        self._version = 0
        self._written = 0
        self._lock = asyncio.Lock()

    def load(self) -> None:
        """Read the file if it exists; a damaged file is set aside, never fatal."""
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            self.path.replace(self.path.with_suffix(f".corrupt-{int(time.time())}"))
            return
        if isinstance(doc, dict):
            self._data = {c: v for c, v in doc.items() if isinstance(v, dict)}

    def get(self, channel: str, name: str) -> dict[str, Any] | None:
        return self._data.get(channel, {}).get(name)

    def list(self, channel: str) -> list[dict[str, Any]]:
        return [{"name": n, **v} for n, v in sorted(self._data.get(channel, {}).items())]

    async def set(self, channel: str, name: str, offset: str) -> None:
        self._data.setdefault(channel, {})[name] = {"offset": offset, "updated": time.time()}
        await self._persist()

    async def delete(self, channel: str, name: str) -> bool:
        found = self._data.get(channel, {}).pop(name, None) is not None
        if found:
            await self._persist()
        return found

    async def drop_channel(self, channel: str) -> None:
        if self._data.pop(channel, None) is not None:
            await self._persist()

    async def _persist(self) -> None:
        """Return once a write that includes every change made so far is on disk."""
        self._version += 1
        wanted = self._version
        async with self._lock:
            if self._written >= wanted:
                return  # a write started after our change already covered it
            version, text = self._version, json.dumps(self._data, separators=(",", ":"))
            await asyncio.get_running_loop().run_in_executor(None, self._write, text)
            self._written = version

    def _write(self, text: str) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


CURSORS = web.AppKey("chanctl_cursors", CursorBook)


def setup_cursors(app: web.Application, data_dir: Path) -> CursorBook:
    """Register the cursor routes on ``app`` and load the cursor file."""
    book = CursorBook(data_dir / FILE_NAME)
    book.load()
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
        doc = await request.json() if request.content_length else None
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
