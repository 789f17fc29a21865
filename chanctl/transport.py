"""HTTP/1.1 to the daemon using only the standard library.

The sync client and the hot CLI verbs (`pub` runs inside shell loops) must start fast, so this
module speaks HTTP with ``http.client`` over AF_UNIX (or loopback TCP) instead of importing
aiohttp. It keeps one keep-alive connection and reports transport failures as two internal
exceptions the client turns into retries or typed errors:

* ``Unreachable``: nothing listens at the address (the only case that may auto-start a daemon);
* ``Dropped``: an established connection broke mid-request (the daemon restarted or crashed).
"""

from __future__ import annotations

import http.client
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from .errors import ConfigError

ENV_URL = "CHANCTL_URL"
ENV_TOKEN = "CHANCTL_TOKEN"
DEFAULT_TCP_PORT = 4437  # the Durable Streams default
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
_DROPPED = (http.client.HTTPException, ConnectionError, OSError)


class Unreachable(Exception):
    """Connecting failed: no socket file, or nothing accepting on it."""


class Dropped(Exception):
    """The connection broke after it was established; the request may or may not have run."""


@dataclass(frozen=True)
class Endpoint:
    """Where the daemon is: a unix socket path, or a loopback host and port plus a token."""

    url: str
    socket_path: str | None = None
    host: str = "localhost"
    port: int = 0
    token: str | None = None


def resolve_endpoint(url: str | None = None, token: str | None = None) -> Endpoint:
    """Pick the daemon: ``url`` argument, then ``$CHANCTL_URL``, then the default socket."""
    url = url or os.environ.get(ENV_URL) or None
    token = token or os.environ.get(ENV_TOKEN) or None
    if url is None or url.startswith("unix://"):
        from . import paths

        if url is None:
            path = str(paths.socket_path())
        else:
            path = str(paths.check_socket_path(Path(url.removeprefix("unix://"))))
        return Endpoint(url=f"unix://{path}", socket_path=path, token=token)
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(
            f"unsupported daemon URL {url!r}",
            hint="use unix:///path/to/chanctl.sock or http://127.0.0.1:PORT",
        )
    port = parts.port or DEFAULT_TCP_PORT
    return Endpoint(
        url=f"http://{parts.hostname}:{port}", host=parts.hostname, port=port, token=token
    )


class UnixHTTPConnection(http.client.HTTPConnection):
    """``HTTPConnection`` whose socket is AF_UNIX; the Host header stays ``localhost``."""

    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class HeaderMap(Protocol):
    """Case-insensitive header lookup: http.client's HTTPMessage and aiohttp's CIMultiDict."""

    def get(self, name: str, /) -> str | None: ...


class Response:
    """A fully read response: status, case-insensitive headers and the body bytes."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: HeaderMap, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


class Transport:
    """One keep-alive connection to the daemon; not thread-safe (the Client serializes)."""

    def __init__(self, endpoint: Endpoint, timeout: float = 30.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self, timeout: float | None) -> http.client.HTTPConnection:
        ep = self.endpoint
        conn: http.client.HTTPConnection
        if ep.socket_path is not None:
            conn = UnixHTTPConnection(ep.socket_path, timeout)
        else:
            conn = http.client.HTTPConnection(ep.host, ep.port, timeout=timeout)
        try:
            conn.connect()
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            conn.close()
            raise Unreachable(str(exc)) from exc
        except OSError as exc:
            conn.close()
            raise Unreachable(str(exc)) from exc
        if ep.socket_path is None:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = -1.0,
    ) -> Response:
        """Send one request and read the whole answer. ``timeout=None`` waits forever.

        A request that fails on a reused connection before any answer arrived is sent once more
        on a fresh one: the daemon closes idle keep-alive connections, and every request chanctl
        sends is safe to repeat (appends carry idempotent-producer headers).
        """
        wait = self.timeout if timeout == -1.0 else timeout
        hdrs = dict(headers or {})
        if self.endpoint.token:
            hdrs["Authorization"] = f"Bearer {self.endpoint.token}"
        reused = self._conn is not None
        try:
            return self._once(method, path, hdrs, body, wait)
        except _STALE:
            self.close()
            if not reused:
                raise Dropped("the daemon closed the connection") from None
        try:
            return self._once(method, path, hdrs, body, wait)
        except _STALE as exc:
            self.close()
            raise Dropped(str(exc) or type(exc).__name__) from None

    def _once(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes | None,
        timeout: float | None,
    ) -> Response:
        if self._conn is None:
            self._conn = self._connect(timeout)
        elif self._conn.sock is not None:
            self._conn.sock.settimeout(timeout)
        conn = self._conn
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except _STALE:
            raise
        except TimeoutError:
            self.close()
            raise
        except _DROPPED as exc:
            self.close()
            raise Dropped(str(exc) or type(exc).__name__) from exc
        if resp.will_close:
            self.close()
        return Response(resp.status, resp.headers, data)
