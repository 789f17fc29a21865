"""The loopback TCP listener that ``chanctl web`` opens on demand.

Browsers cannot reach a unix socket, so the web view needs TCP. Rather than asking users to
restart the daemon with ``--listen``, ``chanctl web`` asks the running daemon (over the unix
socket, whose peer is already proven to be our user) to open one. It is exactly what
``--listen 127.0.0.1:PORT`` gives, opened later: loopback only, the bearer token from the usual
0600 file required on every request, Host header checked against DNS rebinding.

The port is remembered in the state directory and tried first next time, so a bookmarked page
finds the daemon at the same address. The request itself is remembered too, beside the socket's
lock and pid files (``chanctl.web.json``, 0600, written atomically): a daemon that starts there,
after ``daemon stop``/``start``, a crash and its autostart, or a service manager's restart, opens
the listener again on the same port before it answers, so a page left open reconnects on its
own. Only that port is tried then: if something else took it, the daemon logs a warning and
stays off TCP until ``chanctl web`` opens a listener on a free port (and records the new one).
The file lives in the runtime directory, so a reboot or the end of the login session forgets
the request; ``chanctl web --stop`` closes the listener and forgets it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from chanctl import paths
from chanctl.errors import ChanctlError

from .config import Settings
from .connections import GuardedSite, Lifecycle
from .security import AccessPolicy, load_or_create_token
from .sidetables import write_atomic

if TYPE_CHECKING:
    from .server import Claim

log = logging.getLogger(__name__)

PORT_FILE = "web-port"


@dataclass(frozen=True)
class TcpAccess:
    """Where a browser reaches the daemon; ``token`` is None when it runs with ``--no-auth``."""

    host: str
    port: int
    token: str | None

    @property
    def base_url(self) -> str:
        host = _reachable(self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"


def _reachable(host: str) -> str:
    """A wildcard bind is reached through loopback; any other address as it is."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


class OnDemandTcp:
    """Opens (once) and describes the TCP listener; ``server.py`` wires it to the runner."""

    def __init__(
        self, settings: Settings, claim: Claim, policy: AccessPolicy, lifecycle: Lifecycle
    ) -> None:
        self._settings = settings
        self._claim = claim
        self._policy = policy
        self._lifecycle = lifecycle
        self._runner: web.AppRunner | None = None
        self._site: GuardedSite | None = None  # set only for a listener opened on demand
        self._lock = asyncio.Lock()
        self._port_file = paths.state_dir() / PORT_FILE
        sock = settings.socket_path
        self._request_file = None if sock is None else paths.web_request_file(sock)

    def attach(self, runner: web.AppRunner) -> None:
        """The runner exists only after the app (and its routes) is built: hand it over late."""
        self._runner = runner

    async def open(self) -> TcpAccess:
        """The TCP address, opening a loopback listener first when the daemon has none."""
        async with self._lock:  # two concurrent `chanctl web` must not bind twice
            if self._claim.tcp is None:
                await self._start_listener(_bind_loopback(_remembered_port(self._port_file)))
            assert self._claim.tcp is not None
            host, port = self._claim.tcp.getsockname()[:2]
            return TcpAccess(host, port, self._claim.token)

    async def reopen(self) -> None:
        """At start-up: open the listener again if it was asked for (and not closed) before
        this daemon started, on the same port only, so that open pages find it there."""
        if self._claim.tcp is not None or self._request_file is None:
            return  # --listen: TCP is there already
        port = requested_port(self._request_file)
        if port is None:
            return
        async with self._lock:
            try:
                sock = socket.create_server(("127.0.0.1", port), backlog=128)
            except OSError as exc:
                log.warning(
                    "could not reopen the web view's TCP listener on 127.0.0.1:%d (%s); "
                    "pages open there will not reconnect; `chanctl web` opens it on a free port",
                    port,
                    exc.strerror or exc,
                )
                return
            sock.setblocking(False)
            try:
                await self._start_listener(sock)
            except (ChanctlError, OSError) as exc:  # the daemon serves on; the page waits
                log.warning("could not reopen the web view's TCP listener: %s", exc)

    async def close(self) -> bool:
        """``chanctl web --stop``: close the listener opened on demand, cut its connections and
        forget the request. False (and nothing done) when TCP comes from ``--listen``."""
        async with self._lock:
            if self._site is None and self._claim.tcp is not None:
                return False
            if self._request_file is not None:
                with contextlib.suppress(FileNotFoundError):
                    self._request_file.unlink()
            site, tcp, self._site, self._claim.tcp = self._site, self._claim.tcp, None, None
            if site is not None and tcp is not None:
                port = tcp.getsockname()[1]
                await site.stop()
                tcp.close()
                self._cut_connections(port)
                self._describe(None)
                log.info("closed TCP 127.0.0.1:%d of the web view (chanctl web --stop)", port)
            return True

    def _cut_connections(self, port: int) -> None:
        """Closing a listener leaves its accepted connections (a page's live reads) open."""
        for proto in list(self._lifecycle.guards):
            transport = getattr(proto, "transport", None)
            name = transport.get_extra_info("sockname") if transport is not None else None
            if isinstance(name, tuple) and name[1] == port and transport is not None:
                transport.close()

    async def _start_listener(self, sock: socket.socket) -> None:
        if self._runner is None:
            sock.close()
            raise ChanctlError("the daemon is still starting; retry in a moment")
        token = load_or_create_token(self._settings.token_file or paths.token_file())
        # The token is required before the first connection can be accepted.
        self._policy.require_token(token)
        site = GuardedSite(self._runner, sock, self._lifecycle, self._settings.limits)
        try:
            await site.start()
        except BaseException:
            sock.close()
            raise
        port = sock.getsockname()[1]
        self._claim.tcp, self._claim.token, self._site = sock, token, site
        self._record(port)
        log.info("opened TCP 127.0.0.1:%d for the web view (auth: token)", port)

    def _record(self, port: int) -> None:
        """Show the listener in `chanctl daemon status`, remember its port for next time and
        that it was asked for, for the next daemon on this socket."""
        self._describe(f"127.0.0.1:{port}")
        with contextlib.suppress(OSError):
            paths.ensure_private_dir(self._port_file.parent)
            self._port_file.write_text(f"{port}\n")
        if self._request_file is not None:
            try:
                write_atomic(self._request_file, json.dumps({"port": port}) + "\n")
            except OSError as exc:
                log.warning(
                    "cannot remember the web view's listener in %s: %s", self._request_file, exc
                )

    def _describe(self, listen: str | None) -> None:
        info = self._claim.info
        info.update(listen=listen, auth=None if listen is None else "token")
        self._claim.socket_lock.describe(info)
        self._claim.data_lock.describe(info)


def requested_port(path: Path) -> int | None:
    """The port a previous daemon opened for the web view, if it was not closed since."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    port = doc.get("port") if isinstance(doc, dict) else None
    return port if isinstance(port, int) and 0 < port < 65536 else None


def _remembered_port(path: Path) -> int:
    try:
        text = path.read_text().strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else 0


def _bind_loopback(port: int) -> socket.socket:
    """Bind 127.0.0.1 on ``port`` if it is free, else on any free port."""
    for candidate in dict.fromkeys((port, 0)):
        try:
            sock = socket.create_server(("127.0.0.1", candidate), backlog=128)
        except OSError as exc:
            if candidate == 0:
                raise ChanctlError(f"cannot open a TCP port for the web view: {exc}") from exc
            continue
        sock.setblocking(False)
        return sock
    raise AssertionError("unreachable")
