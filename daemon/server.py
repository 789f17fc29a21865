"""The daemon process: claim the socket and data directory, serve, and shut down cleanly.

Start-up order matters and is all here:

1. umask 077 for the whole life of the process, so every file the store creates is 0600 and
   every directory 0700 whatever umask the user had;
2. runtime, data and log directories checked to be ours and tightened to 0700;
3. flock beside the socket, then in the data directory (a second daemon stops here, naming us);
4. the socket path probed (stale socket unlinked, anything else refused) and bound with umask
   177, i.e. mode 0600 from the first instant (or, socket-activated, the one systemd or launchd
   made is taken instead: ``activation.py``); the optional TCP socket bound too;
5. the store started (recovery), then the HTTP app; only now do the sockets ``listen``, so a
   client that connects earlier gets ECONNREFUSED and keeps polling instead of hanging.

SIGTERM or SIGINT: stop accepting, let in-flight requests finish (bounded), stop the store
(fsyncs pending appends, ends live readers), remove socket and pid file, exit 0. A second signal
exits at once; the next start recovers, as after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from chanctl import __version__, paths
from chanctl.errors import ChanctlError, ConfigError

from .activation import inherited_socket
from .config import Settings
from .connections import GuardedSite, Lifecycle
from .instance import (
    FileLock,
    bind_unix_socket,
    probe_socket_path,
    remove_if_ours,
    write_pid_file,
)
from .logs import setup_logging
from .options import is_loopback
from .retention import as_json
from .security import AccessPolicy, check_listen_policy, load_or_create_token
from .service import StreamService
from .sidetables import SideTables, local_tables
from .store.base import ChannelStore

Stop = Callable[[], Awaitable[None]]

log = logging.getLogger(__name__)


@dataclass
class Claim:
    """What the daemon holds before it serves: locks and bound (not yet listening) sockets."""

    socket_lock: FileLock
    data_lock: FileLock
    unix: socket.socket
    tcp: socket.socket | None = None
    token: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    activated: bool = False  # the unix socket is the service manager's: never unlink it

    def release(self) -> None:
        for sock in (self.unix, self.tcp):
            if sock is not None:
                sock.close()
        self.data_lock.release()
        self.socket_lock.release()


def run(settings: Settings) -> int:
    """Run the daemon until SIGTERM/SIGINT; return the process exit status."""
    os.umask(0o077)
    setup_logging(settings.log_file)
    claim = claim_instance(settings)  # a ChanctlError here is reported by the caller
    try:
        return asyncio.run(_serve(settings, claim))
    finally:
        assert settings.socket_path is not None
        if not claim.activated:
            remove_if_ours(settings.socket_path)
        if settings.pid_file is not None:
            remove_if_ours(settings.pid_file, pid_file=True)
        claim.release()
        log.info("daemon stopped (pid %d)", os.getpid())


def claim_instance(settings: Settings) -> Claim:
    """Steps 2-4 of the start-up order; undoes what it did if a later step fails."""
    sock_path = settings.socket_path
    if sock_path is None:
        raise ChanctlError("no socket path configured")
    check_listen_policy(settings)
    if sock_path.parent == paths.runtime_dir():
        paths.ensure_private_dir(sock_path.parent)
    elif not sock_path.parent.is_dir():
        raise ConfigError(
            f"the directory of socket path {sock_path} does not exist",
            hint="create it first (chanctl only creates its default runtime directory)",
        )
    paths.ensure_private_dir(settings.data_dir)
    with contextlib.ExitStack() as undo:
        socket_lock = FileLock(paths.lock_file(sock_path))
        socket_lock.acquire("socket")
        undo.callback(socket_lock.release)
        info = _describe(settings)
        socket_lock.describe(info)
        data_lock = FileLock(paths.data_lock_file(settings.data_dir))
        data_lock.acquire("data directory")
        undo.callback(data_lock.release)
        data_lock.describe(info)
        token = load_or_create_token(settings.token_file) if settings.token_file else None
        activated = inherited_socket()  # systemd/launchd made the socket: serve theirs
        if activated is None:
            probe_socket_path(sock_path, "stop it with `chanctl daemon stop`")
            unix = bind_unix_socket(sock_path)
            undo.callback(remove_if_ours, sock_path)
        else:
            unix = activated.sock
            info["service_manager"] = activated.manager
            _warn_if_elsewhere(unix, sock_path)
        undo.callback(unix.close)
        tcp = _bind_tcp(settings.listen) if settings.listen else None
        undo.pop_all()
    claim = Claim(socket_lock, data_lock, unix, tcp, token, info, activated is not None)
    if tcp is not None:
        host, port = tcp.getsockname()[:2]
        info["listen"] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return claim


def _describe(settings: Settings) -> dict[str, Any]:
    """The holder description written into both lock files (read by status and by rivals)."""
    return {
        "pid": os.getpid(),
        "version": __version__,
        "socket": str(settings.socket_path),
        "data_dir": str(settings.data_dir),
        "fsync": str(settings.fsync),
        "store": settings.store,
        "retention": as_json(settings.default_retention),  # of channels created without limits
        "listen": None,
        "auth": None if settings.listen is None else ("none" if settings.no_auth else "token"),
        "log_file": None if settings.log_file is None else str(settings.log_file),
        "started_at": time.time(),
        "ready": False,
        # systemd/launchd when they run us (the log then goes to the journal or their file)
        "service_manager": "systemd" if os.environ.get("INVOCATION_ID") else None,
        "nats_servers": list(settings.nats.servers) if settings.nats else None,
    }


def _warn_if_elsewhere(sock: socket.socket, expected: Path) -> None:
    """Clients and the lock file go by the configured path; an inherited socket elsewhere
    would serve no one who looks for us there."""
    name = sock.getsockname()
    if name != str(expected):
        log.warning("the service manager's socket is %r, not the configured %s", name, expected)


def _bind_tcp(addr: tuple[str, int]) -> socket.socket:
    host, port = addr
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        raise ChanctlError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint="pick another port, or port 0 for any free one",
        ) from exc
    sock.setblocking(False)
    return sock


def make_store(settings: Settings) -> ChannelStore:
    """The engine the settings ask for. ``memory`` keeps nothing: tests of other layers only."""
    if settings.store == "memory":
        from .store.memory import MemoryStore

        log.warning("using the in-memory store: nothing survives a restart (tests only)")
        return MemoryStore()
    if settings.store == "nats":
        from .store.nats import NatsStore

        return NatsStore(settings)
    from .store.local.engine import LocalStore

    return LocalStore(settings)


async def open_side_tables(settings: Settings, store: ChannelStore) -> tuple[SideTables, Stop]:
    """Where cursors and run producers live, by store kind: on NATS a KV bucket every daemon of
    the namespace shares; otherwise the data directory's files. Returns the tables and what
    stops them (before the store)."""
    if settings.store == "nats":
        from .store.nats import NatsStore

        assert isinstance(store, NatsStore)
        cursors, producers = kv = await store.side_tables()

        async def stop() -> None:
            for table in kv:
                await table.stop()

        return SideTables(cursors, producers), stop

    async def nothing() -> None:
        pass

    return local_tables(settings.data_dir), nothing


async def _serve(settings: Settings, claim: Claim) -> int:
    # Imported here, not at the top, so that the claim/lock code above stays importable (and
    # testable) without the HTTP layer.
    from .http.app import build_app
    from .http.web import setup_web
    from .webtcp import OnDemandTcp

    stop = _install_signal_handlers()
    store = make_store(settings)
    await store.start()
    stop_tables: Stop | None = None
    lifecycle = Lifecycle()
    loopback = settings.listen is not None and is_loopback(settings.listen[0])
    policy = AccessPolicy(None if settings.no_auth else claim.token, loopback_bind=loopback)
    runner: web.AppRunner | None = None
    try:
        # The app starts and stops the service itself (on_startup / on_cleanup).
        service = StreamService(store, settings)
        tables, stop_tables = await open_side_tables(settings, store)
        # One middleware for both: every request pays for each layer it passes.
        middlewares = (lifecycle.middleware(admit=policy.admitter()),)
        app = build_app(service, settings, middlewares=middlewares, tables=tables)
        web_tcp = OnDemandTcp(settings, claim, policy, lifecycle)  # `chanctl web` opens TCP
        setup_web(app, policy, web_tcp)  # the /ui/ pages and POST /v1/web
        runner = _make_runner(app, settings)
        web_tcp.attach(runner)
        await runner.setup()
        listeners = (claim.unix, claim.tcp)
        await web_tcp.reopen()  # the web view's listener, if an earlier daemon had opened it
        for sock in listeners:
            if sock is not None:
                site = GuardedSite(runner, sock, lifecycle, settings.limits)
                await site.start()
        _announce_ready(settings, claim, store.fsync_policy)
        signum = await stop
        log.info("received %s: shutting down", signal.Signals(signum).name)
        await _stop_accepting(settings, runner, lifecycle)
    finally:
        await _stop_all(store, runner, stop_tables)
    return 0


def _make_runner(app: web.Application, settings: Settings) -> web.AppRunner:
    lim = settings.limits
    return web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        keepalive_timeout=lim.idle_keepalive_s,
        max_line_size=lim.max_header_line,
        max_field_size=lim.max_header_line,
        max_headers=lim.max_headers,
        # aiohttp would otherwise keep reading (and discarding) an unread request body for up
        # to 10 s after the response, e.g. a whole 1 GiB upload refused with 413. Such a
        # connection is closed instead (its response says so: errors.error_envelope).
        lingering_time=0.0,
        shutdown_timeout=5.0,
    )


def _announce_ready(settings: Settings, claim: Claim, fsync_policy: str) -> None:
    claim.info.update(ready=True, fsync=fsync_policy)
    claim.socket_lock.describe(claim.info)
    claim.data_lock.describe(claim.info)
    if settings.pid_file is not None:
        write_pid_file(settings.pid_file)
    listen = claim.info.get("listen")
    log.info(
        "chanctl daemon %s ready: pid %d, socket %s, data %s, fsync %s, store %s%s",
        __version__,
        os.getpid(),
        settings.socket_path,
        settings.data_dir,
        fsync_policy,
        settings.store,
        f", tcp {listen} (auth: {claim.info.get('auth')})" if listen else "",
    )


def _install_signal_handlers() -> asyncio.Future[int]:
    """First SIGTERM/SIGINT resolves the returned future; a second one exits immediately."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[int] = loop.create_future()

    def on_signal(signum: int) -> None:
        if not stop.done():
            stop.set_result(signum)
            return
        log.warning("second %s: exiting without a clean shutdown", signal.Signals(signum).name)
        logging.shutdown()
        os._exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    return stop


async def _stop_accepting(settings: Settings, runner: web.AppRunner, life: Lifecycle) -> None:
    """Close the listeners, then give in-flight requests (appends) a bounded time to finish.

    The store is still running here, so an append that is already being handled completes and
    is acknowledged normally; requests arriving on kept-alive connections get a 503.
    """
    for site in list(runner.sites):
        await site.stop()
    left = await life.drain(settings.limits.shutdown_grace_s)
    if left:
        log.warning("%d request(s) still running after the grace period; stopping anyway", left)


async def _stop_all(
    store: ChannelStore, runner: web.AppRunner | None, stop_tables: Stop | None = None
) -> None:
    """The app first, then the side tables, then the store.

    ``runner.cleanup`` runs the app's shutdown hooks (live readers get a clean end of stream),
    waits for the remaining handlers and stops the service; only then is the store stopped,
    which fsyncs whatever is still pending and closes its files.
    """
    try:
        if runner is not None:
            await runner.cleanup()
    finally:
        try:
            if stop_tables is not None:
                await stop_tables()
        finally:
            await store.stop()
