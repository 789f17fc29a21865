"""The live web view: static pages under ``/ui/`` and the ``POST /v1/web`` that opens them.

How the page authenticates (the choice, and why):

* ``chanctl web`` prints ``http://127.0.0.1:PORT/ui/#token=TOKEN``. The token sits in the URL
  *fragment*, which a browser never sends to any server, so it cannot end up in a log, a proxy
  or a ``Referer``.
* A navigation cannot carry a bearer header, so the first ``GET /ui/`` has no credentials and
  gets a 401 whose body is a tiny "unlock" page: no data, no application code, one inline
  script allowed by its CSP hash. That script reads the fragment, removes it from the address
  bar, and trades the token (as a bearer header) at ``POST /ui/session`` for a cookie, then
  reloads. The cookie is HttpOnly, SameSite=Strict, limited to ``/ui`` and valid for 8 hours;
  it is an HMAC keyed by the token (rotating the token voids it), and it opens *only* the
  static files of the page, never the API. So nothing of the page is served without the token,
  and a cookie leaked to another port of 127.0.0.1 (cookies ignore ports) reads no data.
* The page keeps the token in ``sessionStorage`` (this tab, this origin) and sends it as
  ``Authorization: Bearer`` on every API call. Live reads do not use ``EventSource`` (which
  cannot send headers) but ``fetch`` with a streamed body, parsed as SSE by the page; that also
  lets the page resume from the last offset *it showed* after a drop. No token ever travels in
  a query string, so there is nothing to redact.

The pages are served on TCP only (a browser cannot reach the unix socket) and refused when the
daemon runs with ``--no-auth``, since there would be no token to require. Every page response
carries a strict Content-Security-Policy (same-origin scripts, styles and fetches only).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.resources
import logging
import socket
import time
from dataclasses import dataclass

from aiohttp import web

from ..security import UI_PREFIX, AccessPolicy, error_response
from ..webtcp import OnDemandTcp

log = logging.getLogger("chanctl.daemon.http")

STATIC_PACKAGE = "chanctl.daemon.web"
SESSION_PATH = UI_PREFIX + "/session"
SESSION_S = 8 * 3600
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}
_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str


def load_assets() -> dict[str, Asset]:
    """Every servable file of the page, read once: the package data of ``chanctl.daemon.web``."""
    assets: dict[str, Asset] = {}
    for entry in importlib.resources.files(STATIC_PACKAGE).iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _TYPES:
            assets[entry.name] = Asset(entry.read_bytes(), _TYPES[suffix])
    return assets


def unlock_page(script: bytes) -> tuple[bytes, str]:
    """The 401 body (with ``script`` inlined) and the CSP that allows exactly that script."""
    digest = base64.b64encode(hashlib.sha256(script).digest()).decode()
    csp = (
        f"default-src 'none'; script-src 'sha256-{digest}'; connect-src 'self'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    html = (
        b'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        b'<meta name="color-scheme" content="light dark"><link rel="icon" href="data:,">'
        b"<title>chanctl</title></head>\n<body><main><h1>chanctl</h1>"
        b'<p id="msg" role="status">Opening\xe2\x80\xa6</p></main>\n<script>'
        + script
        + b"</script></body></html>\n"
    )
    return html, csp


def session_value(token: bytes, expires: int) -> str:
    """``<expiry>.<hmac>``: proves the holder once had the token, without containing it."""
    mac = hmac.new(token, f"chanctl-ui-session:{expires}".encode(), hashlib.sha256)
    return f"{expires}.{mac.hexdigest()}"


def session_valid(value: str, token: bytes, now: float) -> bool:
    expires, _, _ = value.partition(".")
    if not expires.isdigit() or int(expires) < now:
        return False
    return hmac.compare_digest(value.encode(), session_value(token, int(expires)).encode())


def _local_port(request: web.Request) -> int | None:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None or sock.family == socket.AF_UNIX:
        return None
    return int(sock.getsockname()[1])


def cookie_name(port: int) -> str:
    """Per port: cookies ignore ports, and two daemons on 127.0.0.1 must not clobber each other."""
    return f"chanctl_ui_{port}"


class WebRoutes:
    """Handlers of the pages, the session exchange and ``POST /v1/web``."""

    def __init__(self, policy: AccessPolicy, tcp: OnDemandTcp) -> None:
        self.policy = policy
        self.tcp = tcp
        self.assets = load_assets()
        script = self.assets.pop("unlock.js").body.strip()
        self.unlock_body, self.unlock_csp = unlock_page(script)
        policy.browser_gate = self.gate

    def gate(self, request: web.Request, token: bytes) -> web.Response | None:
        """For a ``/ui`` request without a valid bearer header: admit it with a valid session
        cookie (page loads only), answer a page load with the unlock page, refuse the rest."""
        port = _local_port(request)
        reading = request.method in ("GET", "HEAD")
        if reading and port is not None and request.path != SESSION_PATH:
            cookie = request.cookies.get(cookie_name(port), "")
            if cookie and session_valid(cookie, token, time.time()):
                return None
        if reading and request.path in (UI_PREFIX, UI_PREFIX + "/"):
            resp = web.Response(status=401, body=self.unlock_body, headers=_PAGE_HEADERS)
            resp.content_type, resp.charset = "text/html", "utf-8"
            resp.headers["Content-Security-Policy"] = self.unlock_csp
            resp.headers["WWW-Authenticate"] = 'Bearer realm="chanctl"'
            return resp
        log.warning("rejected TCP request from %s: missing or wrong bearer token", request.remote)
        return error_response(401, "missing or invalid bearer token")

    def _refusal(self, request: web.Request) -> web.Response | None:
        if _local_port(request) is None:
            return error_response(404, "the web view is served on TCP only: run `chanctl web`")
        if not self.policy.has_token:
            return error_response(
                403, "the web view needs a bearer token, and this daemon runs with --no-auth"
            )
        return None

    async def redirect(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._refusal(request)) is not None:
            return refused
        raise web.HTTPFound(request.rel_url.with_path(UI_PREFIX + "/"))

    async def index(self, request: web.Request) -> web.StreamResponse:
        return self._serve(request, "index.html")

    async def asset(self, request: web.Request) -> web.StreamResponse:
        return self._serve(request, request.match_info["file"])

    def _serve(self, request: web.Request, name: str) -> web.StreamResponse:
        if (refused := self._refusal(request)) is not None:
            return refused
        asset = self.assets.get(name)
        if asset is None:
            return error_response(404, f"no such file in the web view: {name!r}")
        resp = web.Response(body=asset.body, headers=_PAGE_HEADERS)
        resp.headers["Content-Type"] = asset.content_type
        resp.headers["Content-Security-Policy"] = _PAGE_CSP
        return resp

    async def session(self, request: web.Request) -> web.StreamResponse:
        """Reached only with the right bearer header (the access middleware saw to that)."""
        if (refused := self._refusal(request)) is not None:
            return refused
        port = _local_port(request)
        assert port is not None and self.policy.has_token
        token = request.headers["Authorization"].partition(" ")[2].strip().encode()
        expires = int(time.time()) + SESSION_S
        resp = web.Response(status=204, headers={"Cache-Control": "no-store"})
        resp.set_cookie(
            cookie_name(port),
            session_value(token, expires),
            max_age=SESSION_S,
            path=UI_PREFIX,
            httponly=True,
            samesite="Strict",
        )
        return resp

    async def open_web(self, request: web.Request) -> web.StreamResponse:
        """``chanctl web``: make sure a TCP listener exists and say where, with the token.

        Only over the unix socket, whose peer the access middleware proved to be our user (who
        can read the token file anyway); a TCP client already knows the address and token.
        """
        if _local_port(request) is not None:
            return error_response(403, "ask for the web view over the unix socket")
        access = await self.tcp.open()
        if access.token is None:
            return error_response(
                409,
                "the web view needs a bearer token, and this daemon runs with --no-auth; "
                "restart it without --no-auth",
            )
        body = {
            "url": access.base_url + UI_PREFIX + "/",
            "listen": f"{access.host}:{access.port}",
            "token": access.token,
        }
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def close_web(self, request: web.Request) -> web.StreamResponse:
        """``chanctl web --stop``: close the listener ``chanctl web`` opened, and do not open it
        again at the next start. Over the unix socket only, like ``open_web``."""
        if _local_port(request) is not None:
            return error_response(403, "close the web view over the unix socket")
        if not await self.tcp.close():
            return error_response(
                409, "this daemon's TCP listener comes from --listen; restart it without --listen"
            )
        return web.Response(status=204)


def setup_web(app: web.Application, policy: AccessPolicy, tcp: OnDemandTcp) -> None:
    """Add the web view's routes to ``app`` (before its runner is set up)."""
    routes = WebRoutes(policy, tcp)
    app.router.add_get(UI_PREFIX, routes.redirect)
    app.router.add_get(UI_PREFIX + "/", routes.index)
    app.router.add_get(UI_PREFIX + "/{file}", routes.asset)
    app.router.add_post(SESSION_PATH, routes.session)
    app.router.add_post("/v1/web", routes.open_web)
    app.router.add_delete("/v1/web", routes.close_web)
