"""Socket activation: serve a listening socket the service manager already made.

With ``chanctl daemon install`` the socket belongs to systemd (``chanctl.socket``) or launchd
(the agent's ``Sockets`` key): it exists before the daemon runs, and the first client that
connects starts the daemon, its request waiting in the listen backlog meanwhile. The daemon then
takes that socket instead of binding one, and leaves the socket file alone when it exits, since
the manager keeps listening on it to start the next daemon.

systemd's protocol is a few environment variables (``sd_listen_fds(3)``): ``LISTEN_PID`` names
the process the sockets are meant for and ``LISTEN_FDS`` how many start at fd 3. It is small
enough to read by hand, so no libsystemd binding is needed. launchd hands sockets over through
``launch_activate_socket`` in libSystem, reached with ctypes; the agent's plist sets
``CHANCTL_LAUNCHD_SOCKET`` to the socket's key so a daemon started by hand never asks.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from dataclasses import dataclass

from chanctl.errors import ConfigError

SD_LISTEN_FDS_START = 3
SYSTEMD_ENV = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
ENV_LAUNCHD_SOCKET = "CHANCTL_LAUNCHD_SOCKET"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Activated:
    """The socket handed to us, and who handed it (``systemd`` or ``launchd``)."""

    sock: socket.socket
    manager: str


def inherited_socket() -> Activated | None:
    """The listening unix socket a service manager passed us, or None to bind our own.

    The activation variables are removed from the environment whatever they held, so that no
    process this one starts mistakes our sockets for its own.
    """
    pid, count = (os.environ.get(k) for k in SYSTEMD_ENV[:2])
    for key in SYSTEMD_ENV:
        os.environ.pop(key, None)
    launchd_key = os.environ.pop(ENV_LAUNCHD_SOCKET, None)
    if pid is not None and count is not None:
        if pid.strip() == str(os.getpid()) and count.strip().isdigit() and int(count) >= 1:
            if int(count) > 1:
                log.warning("systemd passed %s sockets; serving only the first (fd 3)", count)
            return Activated(_adopt(SD_LISTEN_FDS_START, "systemd"), "systemd")
    if launchd_key and sys.platform == "darwin":
        return Activated(_adopt(_launchd_fd(launchd_key), "launchd"), "launchd")
    return None


def _adopt(fd: int, manager: str) -> socket.socket:
    """Wrap ``fd`` as our listener after checking it is what the daemon serves on."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ConfigError(
            f"{manager} passed fd {fd} for the daemon's socket, but it is unusable: {exc.strerror}",
            hint="check the ListenStream= of chanctl.socket, or reinstall: chanctl daemon install",
        ) from exc
    listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM or not listening:
        sock.detach()  # not ours to close
        raise ConfigError(
            f"{manager} passed fd {fd}, which is not a listening unix stream socket",
            hint="the socket unit must use ListenStream=/path/to/chanctl.sock",
        )
    os.set_inheritable(fd, False)  # systemd passes it inheritable; our children get nothing
    sock.setblocking(False)
    return sock


def _launchd_fd(key: str) -> int:
    """The first fd launchd created for ``key`` in the agent's ``Sockets`` dictionary."""
    import ctypes

    libc = ctypes.CDLL(None)
    fds = ctypes.POINTER(ctypes.c_int)()
    count = ctypes.c_size_t()
    err = libc.launch_activate_socket(key.encode(), ctypes.byref(fds), ctypes.byref(count))
    if err != 0 or count.value < 1:
        raise ConfigError(
            f"launchd has no socket {key!r} for this process ({os.strerror(err or 2)})",
            hint="reinstall the agent: chanctl daemon install",
        )
    fd = int(fds[0])
    libc.free(fds)
    return fd
