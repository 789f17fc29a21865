"""One daemon per socket and per data directory: locks, the socket file, the pid file.

The kernel-held ``flock`` is the single source of truth for "a daemon is running": it vanishes
when the process dies, however it dies, so there are no stale-pid puzzles. The lock file also
carries a small JSON description of its holder (pid, socket, data dir...), which is how a
refused second daemon can say *which* process is in the way and how ``chanctl daemon status``
shows the daemon's configuration.

The socket path is checked *before* binding, under the lock: asyncio's ``create_unix_server``
silently unlinks whatever socket sits at the path, even one a live daemon serves, so a second
daemon would steal the first one's clients without an error.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chanctl.errors import DaemonAlreadyRunning, UnsafePath


class FileLock:
    """An exclusive, non-blocking ``flock`` on ``path`` that also records who holds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, what: str) -> None:
        """Take the lock or raise DaemonAlreadyRunning naming the holder."""
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise UnsafePath(
                f"cannot open lock file {self.path}: {exc.strerror}",
                hint="it must be a regular file we can write (not a symlink)",
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder(fd)
            os.close(fd)
            raise _already_running(what, self.path, holder) from None
        os.fchmod(fd, 0o600)
        self._fd = fd

    def describe(self, info: Mapping[str, Any]) -> None:
        """Replace the holder description (written in place: readers tolerate a torn read)."""
        if self._fd is None:
            return
        data = (json.dumps(dict(info), sort_keys=True) + "\n").encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        """Drop the lock. The file stays: unlinking it could split two racing starters."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_holder(fd: int) -> dict[str, Any]:
    """The JSON a lock holder wrote, or {} if it has not written (or is mid-write)."""
    try:
        raw = os.pread(fd, 64 * 1024, 0)
        value = json.loads(raw.decode() or "{}")
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def read_holder_file(path: Path) -> dict[str, Any]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        return read_holder(fd)
    finally:
        os.close(fd)


def _already_running(what: str, lock: Path, holder: Mapping[str, Any]) -> DaemonAlreadyRunning:
    pid = holder.get("pid")
    who = f"pid {pid}" if isinstance(pid, int) else "another process"
    sock = holder.get("socket")
    stop = "chanctl daemon stop" + (f" --socket {sock}" if isinstance(sock, str) else "")
    return DaemonAlreadyRunning(
        f"chanctl daemon already running for this {what} ({who} holds {lock})",
        hint=f"stop it with `{stop}`" + (f" or `kill {pid}`" if isinstance(pid, int) else ""),
    )


def probe_socket_path(path: Path, holder_hint: str) -> None:
    """Make ``path`` free for a new socket, or refuse.

    Missing: fine. A socket nobody listens on (ECONNREFUSED): stale, unlink it. A socket that
    answers: another daemon (without our lock file, e.g. an older version) is using it. Anything
    that is not a socket (regular file, symlink, directory) is left untouched: it is not ours.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a socket"
        raise UnsafePath(
            f"socket path {path} exists and is {kind}; refusing to touch it",
            hint="move it away or choose another path with --socket / CHANCTL_SOCKET",
        )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(os.fspath(path))
        except ConnectionRefusedError:
            os.unlink(path)  # stale: its daemon died without cleaning up
            return
        except FileNotFoundError:
            return  # vanished meanwhile
        except TimeoutError:
            pass  # something holds it but does not accept: in use all the same
    raise DaemonAlreadyRunning(
        f"a daemon is already listening on {path}",
        hint=holder_hint,
    )


def bind_unix_socket(path: Path) -> socket.socket:
    """Bind (not yet listen) a unix socket created with mode 0600.

    The mode comes from the umask in force at ``bind``; a ``chmod`` afterwards would leave a
    window in which another user could connect. Clients that connect before ``listen`` get
    ECONNREFUSED, which readiness polling treats as "not yet".
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(os.fspath(path))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    sock.setblocking(False)
    return sock


def write_pid_file(path: Path) -> None:
    """Write our pid atomically (temp + rename), mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def remove_if_ours(path: Path, pid_file: bool = False) -> None:
    """Unlink our socket or pid file at shutdown, leaving anything someone else put there."""
    with contextlib.suppress(OSError):
        st = os.lstat(path)
        if pid_file:
            if path.read_text().strip() != str(os.getpid()):
                return
        elif not stat.S_ISSOCK(st.st_mode):
            return
        os.unlink(path)
