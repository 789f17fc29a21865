"""The one place errors become HTTP responses.

Every error, whether raised by the service, by a storage engine, by aiohttp itself (unknown route,
wrong method) or by a middleware added later (authentication), leaves as the same JSON envelope
``{"ok": false, "error": "<message>", "status": N}``, with the protocol headers the error carries.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import StreamError, as_stream_error
from ..store.base import StoreError
from .parse import DRAIN_BYTES, drain_body

log = logging.getLogger("chanctl.daemon.http")

# Headers of an aiohttp HTTPException that describe its own text body, not the error.
_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding"})


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    body = json.dumps({"ok": False, "error": message, "status": status}).encode()
    resp = web.Response(status=status, body=body, headers=headers)
    resp.headers["Content-Type"] = "application/json"
    resp.headers["Cache-Control"] = "no-store"
    return resp


def from_exception(exc: BaseException) -> web.Response:
    """Render any exception a handler let escape (HTTP exceptions below 400 are re-raised)."""
    if isinstance(exc, StreamError):
        return error_response(exc.status, exc.message, exc.headers)
    if isinstance(exc, StoreError):
        err = as_stream_error(exc)
        return error_response(err.status, err.message, err.headers)
    if isinstance(exc, web.HTTPException):
        text = exc.text or ""
        message = exc.reason if text.startswith(f"{exc.status}:") or not text else text
        kept = {k: v for k, v in exc.headers.items() if k.lower() not in _BODY_HEADERS}
        return error_response(exc.status, message, kept)
    log.error("unexpected error while serving a request", exc_info=exc)
    return error_response(500, "internal error; see the daemon log")


@web.middleware
async def error_envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return await _closing_if_unread(request, from_exception(exc))
    except Exception as exc:
        return await _closing_if_unread(request, from_exception(exc))


async def _closing_if_unread(request: web.Request, resp: web.Response) -> web.Response:
    """An error before the body was read (413 on a big upload) ends the connection: the daemon
    does not read on (see ``lingering_time`` in server.py), so the client must not send its
    next request on it. A moderately big body is still read and discarded *after* the answer
    went out (``parse.drain_body``), so a client that first sends everything can read it."""
    if request.content.is_eof():
        return resp
    resp.force_close()
    if request.content_length is not None and request.content_length <= DRAIN_BYTES:
        try:
            await resp.prepare(request)
            await resp.write_eof()
        except ConnectionError:
            return resp  # the client is gone: nothing left to answer or drain
        await drain_body(request)
    return resp
