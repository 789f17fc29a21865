"""Playing systemd's part in tests: a socket unit's listening socket, and a service started
with it as fd 3 (``sd_listen_fds(3)``), without a running systemd.

Containers and CI runners have no user manager, so the tests do exactly what systemd does for a
socket-activated service: bind and listen on ``ListenStream=`` with ``SocketMode=0600``, then
fork, put the socket at fd 3, set ``LISTEN_PID`` to the child's own pid and ``LISTEN_FDS``, and
exec the unit's ``ExecStart=``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from daemonkit import TestEnv

# What systemd does between fork and exec: the socket at fd 3, then the variables naming us.
SHIM = (
    "import os, sys\n"
    "os.dup2(int(sys.argv[1]), 3)\n"
    "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=sys.argv[2])\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


def listening_socket(path: Path) -> socket.socket:
    """Bind and listen as systemd's socket unit would (SocketMode=0600, DirectoryMode=0700)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    sock.listen(64)
    return sock


@contextlib.contextmanager
def activated(
    tenv: TestEnv,
    listener: socket.socket,
    *argv: str,
    fds: str = "1",
    exec_start: Sequence[str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python ARGV`` (or the whole ``exec_start`` command) as systemd would start it;
    its stdout and stderr go to ``activated.stderr`` in the test root."""
    command = list(exec_start) if exec_start is not None else [sys.executable, *argv]
    err = open(tenv.root / "activated.stderr", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-c", SHIM, str(listener.fileno()), fds, *command],
        pass_fds=[listener.fileno()],
        env=tenv.env,
        stdin=subprocess.DEVNULL,
        stdout=err,
        stderr=err,
        cwd=tenv.root,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        err.close()
