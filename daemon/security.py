"""Who may talk to the daemon: peer credentials on the unix socket, a bearer token on TCP.

The unix socket is protected twice: its 0600 mode inside a 0700 directory keeps other users
from connecting at all, and ``SO_PEERCRED`` re-checks every connection, so a socket someone later
``chmod``s open still only serves our own uid. The kernel records those credentials when the
peer connects and never changes them, so the answer is looked up once per connection and kept
with its transport. TCP is opt-in and loopback by default; every
request needs the token (compared in constant time), and on loopback binds the Host header must
name loopback too, which defeats DNS rebinding from a browser; a write whose ``Origin`` is not
this listener's own is refused, token or not (``same_origin``). The token itself lives in a
0600 file; it never appears on argv, in the log or in an error body.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
import socket
import stat
import struct
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from chanctl import paths
from chanctl.errors import ConfigError, UnsafePath

from .config import Settings
from .options import is_loopback

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UI_PREFIX = "/ui"  # the web view's pages (daemon/http/web.py)

# (request, expected token) -> None to admit the request, else the refusal to send.
BrowserGate = Callable[[web.Request, bytes], "web.Response | None"]
# request -> None to admit it, else the refusal to send.
Admit = Callable[[web.Request], "web.Response | None"]


def load_or_create_token(path: Path) -> str:
    """Read the bearer token, creating a fresh random one (0600) on first use.

    A token file readable by others is refused rather than fixed: the secret may already have
    leaked, so the user should rotate it (delete the file) instead of us quietly carrying on.
    """
    paths.ensure_private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return _read_token(path)
    try:
        os.write(fd, (secrets.token_urlsafe(32) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    log.info("created a new TCP bearer token file at %s", path)
    return _read_token(path)


def _read_token(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise UnsafePath(
            f"cannot open token file {path}: {exc.strerror}",
            hint="it must be a regular file (not a symlink) readable by us",
        ) from exc
    with os.fdopen(fd, "r", encoding="utf-8") as f:
        st = os.fstat(f.fileno())
        mode = stat.S_IMODE(st.st_mode)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or mode != 0o600:
            raise UnsafePath(
                f"token file {path} has mode {mode:04o} (owner uid {st.st_uid}); it must be "
                "0600 and ours",
                hint=f"the token may have leaked: delete {path} to get a new one, or "
                f"`chmod 600 {path}` if you are sure it did not",
            )
        token = f.read().strip()
    if len(token) < 16:
        raise ConfigError(
            f"token file {path} holds no usable token (at least 16 characters)",
            hint=f"delete {path} and restart the daemon to create a new one",
        )
    return token


def check_listen_policy(settings: Settings) -> None:
    """Refuse a TCP listener that anyone on the network could use without a secret."""
    if settings.listen is None:
        return
    host, port = settings.listen
    if settings.no_auth and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host}:{port} without a token: {host} is not loopback",
            hint="drop --no-auth (clients then need the token), or listen on 127.0.0.1",
        )


@dataclass(frozen=True)
class PeerCred:
    pid: int
    uid: int
    gid: int


def peer_cred(sock: socket.socket) -> PeerCred:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return PeerCred(pid=pid, uid=uid, gid=gid)


def error_response(status: int, message: str, close: bool = False) -> web.Response:
    """The daemon's error envelope, for rejections that happen before the API layer runs."""
    body = {"ok": False, "error": message, "errors": [], "status": status}
    resp = web.json_response(body, status=status, headers={"Cache-Control": "no-store"})
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="chanctl"'
    if close:
        resp.force_close()
    return resp


def host_is_loopback(host_header: str | None) -> bool:
    """True for ``localhost``, ``127.x.y.z`` or ``[::1]``, with or without a port."""
    if not host_header:
        return False
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host == "localhost" or host.endswith(".localhost") or is_loopback(host)


def _authority(host: str | None, port: int | None, default_port: int) -> tuple[str, int] | None:
    return None if not host else (host.lower(), port or default_port)


def same_origin(origin: str, host_header: str | None) -> bool:
    """True if ``origin`` is this listener's own origin, as the client addressed it.

    Browsers send ``Origin`` on every cross-origin write, so a write is same-origin only when
    it names plain ``http`` with the very host and port of the ``Host`` header (which, on
    loopback binds, was already checked to be loopback). Another site on 127.0.0.1, even on
    another port (a dev server showing untrusted pages), is a different origin; so are
    ``Origin: null`` (sandboxed frames, files) and anything unparsable.
    """
    try:
        given = urlsplit(origin.strip())
        served = urlsplit("//" + (host_header or "").strip())
        ours = _authority(served.hostname, served.port, 80)
        theirs = _authority(given.hostname, given.port, 80)
    except ValueError:  # a port that is not a number, an unbalanced "["
        return False
    return given.scheme.lower() == "http" and ours is not None and theirs == ours


def excerpt(text: str | None, limit: int = 80) -> str:
    """A bounded repr of an untrusted value for a log line (the formatter escapes it too)."""
    text = text or ""
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def _bearer(header: str | None) -> bytes:
    if not header:
        return b""
    scheme, _, value = header.partition(" ")
    return value.strip().encode() if scheme.lower() == "bearer" else b""


class AccessPolicy:
    """Builds the middleware that admits or rejects each request by the transport it came on."""

    def __init__(self, token: str | None, loopback_bind: bool) -> None:
        self._token = token.encode() if token is not None else None
        self._loopback_bind = loopback_bind
        self._uid = os.getuid()
        # Set by http/web.py: admits /ui/ page loads that carry its session cookie instead of
        # a bearer header (a browser cannot add one to a navigation), or answers their 401.
        self.browser_gate: BrowserGate | None = None

    @property
    def has_token(self) -> bool:
        return self._token is not None

    def require_token(self, token: str) -> None:
        """Guard a loopback TCP listener opened while running (``chanctl web``) with ``token``."""
        self._token = token.encode()
        self._loopback_bind = True

    def middleware(self) -> Middleware:
        admit = self.admitter()

        @web.middleware
        async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
            rejection = admit(request)
            return rejection if rejection is not None else await handler(request)

        return access

    def admitter(self) -> Admit:
        """The check ``middleware`` runs, on its own: ``Lifecycle`` runs it inside its own
        middleware, which saves every request a layer."""
        # Per connection: is it a unix socket whose peer passed (True), or TCP (False)?
        unix_peer: weakref.WeakKeyDictionary[asyncio.Transport, bool] = weakref.WeakKeyDictionary()

        def admit(request: web.Request) -> web.Response | None:
            transport = request.transport
            if transport is None:
                return error_response(403, "connection is gone", close=True)
            unix = unix_peer.get(transport)
            if unix is None:
                sock = transport.get_extra_info("socket")
                if sock is None:
                    return error_response(403, "connection is gone", close=True)
                unix = sock.family == socket.AF_UNIX
                if unix and (rejection := self._check_unix(sock)) is not None:
                    return rejection  # and the connection is closed: nothing to remember
                unix_peer[transport] = unix
            return None if unix else self._check_tcp(request)  # the token: every request

        return admit

    def _check_unix(self, sock: socket.socket) -> web.Response | None:
        cred = peer_cred(sock)
        if cred.uid == self._uid:
            return None
        log.warning("rejected unix socket peer uid=%d pid=%d: not our uid", cred.uid, cred.pid)
        return error_response(403, "this daemon serves only its own user", close=True)

    def _check_tcp(self, request: web.Request) -> web.Response | None:
        host = request.headers.get("Host")
        if self._loopback_bind and not host_is_loopback(host):
            log.warning(
                "rejected TCP request from %s: Host %s is not loopback",
                request.remote,
                excerpt(host),
            )
            return error_response(421, "Host header must name this loopback listener", True)
        origin = request.headers.get("Origin")
        # Whatever the token: a page of another origin holding it means the token leaked, and
        # a form post (text/plain, no preflight) carries none but must not even be parsed.
        if origin is not None and request.method not in SAFE_METHODS:
            if not same_origin(origin, host):
                log.warning(
                    "rejected cross-origin %s from %s: Origin %s",
                    request.method,
                    request.remote,
                    excerpt(origin),
                )
                return error_response(403, "cross-origin writes are not allowed", True)
        if self._token is None:
            return None
        given = _bearer(request.headers.get("Authorization"))
        if hmac.compare_digest(given, self._token):
            return None
        if self.browser_gate is not None and request.path.startswith(UI_PREFIX):
            return self.browser_gate(request, self._token)
        log.warning("rejected TCP request from %s: missing or wrong bearer token", request.remote)
        return error_response(401, "missing or invalid bearer token")
