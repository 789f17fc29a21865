"""The loopback TCP listener that ``chanctl web`` opens on demand.

Browsers cannot reach a unix socket, so the web view needs TCP. Rather than asking users to
restart the daemon with ``--listen``, ``chanctl web`` asks the running daemon (over the unix
socket, whose peer is already proven to be our user) to open one. It is exactly what
``--listen 127.0.0.1:PORT`` gives, opened later: loopback only, the bearer token from the usual
0600 file required on every request, Host header checked against DNS rebinding.

The port is remembered in the state directory and tried first next time, so a bookmarked page
(or one left open across a daemon restart) finds the daemon at the same address once
``chanctl web`` has been run again.
"""

from __future__ import annotations

import asyncio
import contextlib
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
        self._lock = asyncio.Lock()
        self._port_file = paths.state_dir() / PORT_FILE

    def attach(self, runner: web.AppRunner) -> None:
        """The runner exists only after the app (and its routes) is built: hand it over late."""
        self._runner = runner

    async def open(self) -> TcpAccess:
        """The TCP address, opening a loopback listener first when the daemon has none."""
        async with self._lock:  # two concurrent `chanctl web` must not bind twice
            if self._claim.tcp is None:
                await self._start_listener()
            assert self._claim.tcp is not None
            host, port = self._claim.tcp.getsockname()[:2]
            return TcpAccess(host, port, self._claim.token)

    async def _start_listener(self) -> None:
        if self._runner is None:
            raise ChanctlError("the daemon is still starting; retry in a moment")
        token = load_or_create_token(self._settings.token_file or paths.token_file())
        sock = _bind_loopback(_remembered_port(self._port_file))
        # The token is required before the first connection can be accepted.
        self._policy.require_token(token)
        timeout = self._settings.limits.header_read_timeout_s
        try:
            deadline = self._settings.limits.write_deadline_s
            await GuardedSite(self._runner, sock, self._lifecycle, timeout, deadline).start()
        except BaseException:
            sock.close()
            raise
        port = sock.getsockname()[1]
        self._claim.tcp, self._claim.token = sock, token
        self._record(port)
        log.info("opened TCP 127.0.0.1:%d for the web view (auth: token)", port)

    def _record(self, port: int) -> None:
        """Show the listener in `chanctl daemon status` and remember its port."""
        info = self._claim.info
        info.update(listen=f"127.0.0.1:{port}", auth="token")
        self._claim.socket_lock.describe(info)
        self._claim.data_lock.describe(info)
        with contextlib.suppress(OSError):
            paths.ensure_private_dir(self._port_file.parent)
            self._port_file.write_text(f"{port}\n")


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
