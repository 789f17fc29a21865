"""Start the daemon on first use (cli.md 2.2), so `chanctl pub x hi` works on a fresh machine.

Only "nothing listens on the socket" leads here; auth or protocol errors never start anything.
Racing commands serialize on a start lock beside the socket: the first spawns the daemon through
the same code as `chanctl daemon start` (``daemonctl.start_detached``), the others wait for the
lock and then find the daemon answering. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import time
from pathlib import Path

from . import daemonctl, paths
from .errors import DaemonNotRunning, DaemonUnavailable, DaemonUnhealthy
from .transport import Endpoint

ENV_NO_AUTOSTART = "CHANCTL_NO_AUTOSTART"
START_WAIT_S = 15.0  # recovery of a large data directory can take a few seconds
POLL_S = 0.05


def start_allowed(endpoint: Endpoint, flag: bool | None) -> bool:
    """Auto-start only for a unix socket, and not when disabled by flag or environment."""
    if endpoint.socket_path is None or flag is False:
        return False
    return flag is True or os.environ.get(ENV_NO_AUTOSTART, "") in ("", "0")


def ensure_daemon(endpoint: Endpoint) -> daemonctl.DaemonStatus | None:
    """Make a daemon answer on ``endpoint``'s socket; returns its status if *we* started it."""
    assert endpoint.socket_path is not None
    sock = Path(endpoint.socket_path)
    paths.ensure_private_dir(sock.parent)
    with _start_lock(sock):
        if _answers(sock):
            return None  # a racing command started it while we waited for the lock
        if daemonctl.is_running(sock):  # spawned but still recovering: just wait for it
            _wait_until_answering(sock)
            return None
        return daemonctl.start_detached(_daemon_argv(sock), sock, paths.log_file(), START_WAIT_S)


def _daemon_argv(sock: Path) -> list[str]:
    """The flags `chanctl daemon start` would pass, resolved now (env -> explicit flags)."""
    from .daemon.options import DaemonOptions, build_settings, to_argv

    opts = DaemonOptions(socket=str(sock))
    settings = build_settings(opts)
    argv: list[str] = to_argv(dataclasses.replace(opts, data_dir=str(settings.data_dir)))
    return argv


@contextlib.contextmanager
def _start_lock(sock: Path):  # type: ignore[no-untyped-def]
    """An exclusive flock, polled with a deadline so a stuck starter cannot hang us forever."""
    lock = sock.with_name(sock.name + ".start-lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + START_WAIT_S + 5.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DaemonUnavailable(
                        f"another chanctl command is still starting the daemon on {sock}",
                        hint="check `chanctl daemon status` and the daemon log",
                    ) from None
                time.sleep(POLL_S)  # the holder is spawning the daemon
        yield
    finally:
        os.close(fd)  # also releases the flock


def _answers(sock: Path) -> bool:
    try:
        daemonctl.status(sock, timeout=1.0)
    except (DaemonNotRunning, DaemonUnhealthy):
        return False
    return True


def _wait_until_answering(sock: Path) -> None:
    deadline = time.monotonic() + START_WAIT_S
    while not _answers(sock):
        if time.monotonic() > deadline:
            raise DaemonUnavailable(
                f"a daemon holds {paths.lock_file(sock)} but does not answer on {sock}",
                hint=f"see the daemon log ({paths.log_file()}) or `chanctl daemon status`",
            )
        time.sleep(POLL_S)
