"""Start, stop and inspect the daemon from the client side, without importing the daemon.

Everything here returns values or raises ``ChanctlError``; printing is the CLI's job. Liveness
questions are answered by what the daemon itself maintains: ``GET /v1/health`` on the socket
("does it answer?"), and the flock beside the socket, whose file also describes its holder
("which pid, which data directory?"). The pid file is only a convenience for other tools.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _uds, paths
from .errors import (
    DaemonAlreadyRunning,
    DaemonNotRunning,
    DaemonStartFailed,
    DaemonUnhealthy,
    TimedOut,
)

HEALTH_PATH = "/v1/health"
POLL_S = 0.05


@dataclass(frozen=True)
class DaemonStatus:
    """What ``chanctl daemon status`` shows; ``health`` is the daemon's own answer, verbatim."""

    socket: Path
    pid: int | None
    version: str | None
    data_dir: str | None
    fsync: str | None
    store: str | None
    listen: str | None
    auth: str | None
    log_file: str | None
    started_at: float | None
    health: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["socket"] = str(self.socket)
        return d


def read_holder(sock: Path) -> dict[str, Any]:
    """The description the running daemon wrote into its lock file ({} if none)."""
    try:
        with open(paths.lock_file(sock), encoding="utf-8") as f:
            value = json.loads(f.read() or "{}")
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _pick(health: dict[str, Any], holder: dict[str, Any], key: str) -> Any:
    value = health.get(key)
    return value if value is not None else holder.get(key)


def status(sock: Path, timeout: float = 2.0) -> DaemonStatus:
    """Ask the daemon on ``sock`` how it is; raises DaemonNotRunning when nothing answers."""
    reply = _uds.request(sock, "GET", HEALTH_PATH, timeout)
    if reply.status != 200:
        raise DaemonUnhealthy(
            f"the daemon on {sock} answered {HEALTH_PATH} with HTTP {reply.status}",
            hint="see the daemon log (`chanctl daemon status` shows where it is)",
        )
    body = reply.json()
    health = body if isinstance(body, dict) else {}
    holder = read_holder(sock)
    fsync = _pick(health, holder, "fsync") or health.get("fsync_policy")
    return DaemonStatus(
        socket=sock,
        pid=_pick(health, holder, "pid"),
        version=_pick(health, holder, "version"),
        data_dir=_pick(health, holder, "data_dir"),
        fsync=fsync,
        store=holder.get("store"),
        listen=holder.get("listen"),
        auth=holder.get("auth"),
        log_file=holder.get("log_file"),
        started_at=holder.get("started_at"),
        health=health,
    )


def is_running(sock: Path) -> bool:
    """True if the lock beside ``sock`` is held, i.e. a daemon process owns this socket."""
    try:
        fd = os.open(paths.lock_file(sock), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the probe lock at once
    return False


def start_detached(
    daemon_argv: Sequence[str], sock: Path, log_file: Path, wait_s: float = 15.0
) -> DaemonStatus:
    """Spawn ``python -m chanctl.daemon`` in its own session and wait until it answers.

    ``sys.executable`` (not ``python`` from PATH) keeps pipx/uv tool installs working. stdio
    goes to the log so that even a crash before logging is set up leaves a trace there.
    """
    with contextlib.suppress(DaemonUnhealthy, DaemonNotRunning):
        st = status(sock)
        raise DaemonAlreadyRunning(
            f"a chanctl daemon is already running (pid {st.pid}, socket {sock})",
            hint="stop it first with `chanctl daemon stop`",
        )
    paths.ensure_private_dir(log_file.parent)
    fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    offset = os.lseek(fd, 0, os.SEEK_END)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chanctl.daemon", *daemon_argv],
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            start_new_session=True,
            close_fds=True,
            cwd="/",
            # A client's token is no business of the daemon (it reads its own file), and a
            # process's environment stays readable in /proc for as long as it runs.
            env={k: v for k, v in os.environ.items() if k != "CHANCTL_TOKEN"},
        )
    finally:
        os.close(fd)
    return _wait_ready(proc, sock, log_file, offset, wait_s)


def _wait_ready(
    proc: subprocess.Popen[bytes], sock: Path, log_file: Path, offset: int, wait_s: float
) -> DaemonStatus:
    deadline = time.monotonic() + wait_s
    while True:
        code = proc.poll()
        if code is not None:
            raise DaemonStartFailed(
                f"the daemon exited with status {code} while starting"
                + _log_excerpt(log_file, offset),
                hint=f"the full log is {log_file}",
            )
        with contextlib.suppress(DaemonNotRunning, DaemonUnhealthy):
            return status(sock, timeout=1.0)
        if time.monotonic() > deadline:
            raise DaemonStartFailed(
                f"the daemon (pid {proc.pid}) did not answer on {sock} within {wait_s:.0f} s",
                hint=f"it may still be recovering; see {log_file}, or stop it with "
                f"`kill {proc.pid}`",
            )
        time.sleep(POLL_S)


def _log_excerpt(log_file: Path, offset: int, lines: int = 8) -> str:
    try:
        with open(log_file, "rb") as f:
            f.seek(offset)
            text = f.read(64 * 1024).decode("utf-8", "replace")
    except OSError:
        return ""
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return "".join(f"\n  {line}" for line in tail)


@dataclass(frozen=True)
class Stopped:
    pid: int | None
    was_running: bool


def stop(sock: Path, timeout: float = 15.0) -> Stopped:
    """SIGTERM the daemon owning ``sock`` and wait (bounded) until it has released its lock."""
    if not is_running(sock):
        return Stopped(pid=None, was_running=False)
    pid = read_holder(sock).get("pid") or _read_pid_file(paths.pid_file(sock))
    if not isinstance(pid, int) or pid <= 0:
        raise DaemonUnhealthy(
            f"a daemon holds {paths.lock_file(sock)} but did not record its pid",
            hint="find it with `fuser` or `lsof` on that file and stop it by hand",
        )
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while is_running(sock):
        if time.monotonic() > deadline:
            raise TimedOut(
                f"the daemon (pid {pid}) did not stop within {timeout:.0f} s",
                hint=f"it may be finishing writes; wait, or force it with `kill -KILL {pid}`",
            )
        time.sleep(POLL_S)
    return Stopped(pid=pid, was_running=True)


def _read_pid_file(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
