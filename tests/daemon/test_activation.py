"""Socket activation (issue 9): the daemon serves a socket systemd made, started by the first
request.

The test plays systemd's part for real: it binds and listens on the daemon's socket path (mode
0600 from the umask, as SocketMode=0600 does), connects and sends a request while no daemon
exists, and only then starts ``python -m chanctl.daemon`` with that socket as fd 3 and
``LISTEN_PID``/``LISTEN_FDS`` set for the daemon's own pid (through an exec shim, which is how
systemd does it: set the variables in the forked child, then exec). The queued request must be
answered, peer credentials still checked, the socket left in place at exit and the variables
gone from the daemon's environment.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

from daemonkit import TestEnv, http_unix
from sdkit import activated, listening_socket

# Runs inside the activated daemon's place: what does a child of it inherit?
CHILD_ENV_PROBE = (
    "import os, subprocess, sys\n"
    "from chanctl.daemon.activation import inherited_socket\n"
    "got = inherited_socket()\n"
    "print('manager', got and got.manager, got and got.sock.getsockname())\n"
    "print('fd3 inheritable', os.get_inheritable(3))\n"
    "child = subprocess.run([sys.executable, '-c', 'import os; "
    'print(sorted(k for k in os.environ if k.startswith("LISTEN_")))\'],'
    " capture_output=True, text=True)\n"
    "print('child sees', child.stdout.strip())\n"
)


def test_first_request_waits_in_the_backlog_and_is_answered(tenv: TestEnv) -> None:
    listener = listening_socket(tenv.socket)
    # The request is sent before any daemon exists: it waits in the kernel's backlog.
    early = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    early.connect(str(tenv.socket))
    early.sendall(b"PUT /v1/stream/early HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
    daemon = ("-m", "chanctl.daemon", "--foreground", "--store", "memory")
    with activated(tenv, listener, *daemon) as proc:
        early.settimeout(15)
        head = early.recv(65536).split(b"\r\n", 1)[0]
        assert head == b"HTTP/1.1 201 Created", head
        early.close()
        # The daemon serves the same socket, which is still the one we made.
        health = http_unix(tenv.socket, "GET", "/v1/health")
        assert health.status == 200 and health.json()["ok"] is True
        st = os.lstat(tenv.socket)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        # Its lock file says who runs it, which `daemon logs` and `doctor` rely on.
        holder = (tenv.runtime_dir / "chanctl.lock").read_text()
        assert '"service_manager": "systemd"' in holder
        # Peer credentials are still checked on the inherited socket: even with the modes
        # opened up, another uid gets 403 (CI runs as root, which can act as nobody).
        if os.getuid() == 0:
            for path, mode in ((tenv.root, 0o711), (tenv.root / "run", 0o711)):
                os.chmod(path, mode)
            os.chmod(tenv.runtime_dir, 0o711)
            os.chmod(tenv.socket, 0o666)
            assert _as_nobody(tenv.socket) == "403"
        proc.terminate()
        assert proc.wait(15) == 0
    # systemd owns the socket: the daemon leaves it in place, still listening for the next
    # request (which, under systemd, would start the daemon again).
    assert stat.S_ISSOCK(os.lstat(tenv.socket).st_mode)
    again = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    again.connect(str(tenv.socket))
    again.close()
    listener.close()
    err = (tenv.root / "activated.stderr").read_text()
    assert "ready" in err and "Traceback" not in err, err


_AS_NOBODY = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "s.settimeout(10)\n"
    "s.connect(sys.argv[1])\n"
    "s.sendall(b'GET /v1/health HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n')\n"
    "print(s.recv(4096).split(b' ')[1].decode())\n"
)


def _as_nobody(sock: Path) -> str:
    """The HTTP status uid 65534 gets on ``sock`` (SO_PEERCRED is recorded at connect)."""
    done = subprocess.run(
        ["/usr/bin/python3", "-I", "-S", "-c", _AS_NOBODY, str(sock)],
        user=65534,
        group=65534,
        extra_groups=[],
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_activation_variables_are_not_inherited(tenv: TestEnv) -> None:
    listener = listening_socket(tenv.socket)
    with activated(tenv, listener, "-c", CHILD_ENV_PROBE) as proc:
        assert proc.wait(30) == 0
    out = (tenv.root / "activated.stderr").read_text()
    assert f"manager systemd {tenv.socket}" in out, out
    assert "fd3 inheritable False" in out, out
    assert "child sees []" in out, out
    listener.close()


def test_activation_for_another_pid_is_ignored(tenv: TestEnv) -> None:
    """LISTEN_PID names some other process (a parent's leftovers): bind our own socket."""
    env = {**tenv.env, "LISTEN_PID": "1", "LISTEN_FDS": "1"}
    probe = "from chanctl.daemon.activation import inherited_socket; print(inherited_socket())"
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and done.stdout.strip() == "None", done.stderr


def test_a_socket_that_is_not_listening_is_refused(tenv: TestEnv) -> None:
    """fd 3 must be a listening unix stream socket; anything else is a clear start-up error."""
    tenv.runtime_dir.mkdir(mode=0o700, parents=True)
    wrong = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    wrong.bind(str(tenv.socket))
    daemon = ("-m", "chanctl.daemon", "--foreground", "--store", "memory")
    with activated(tenv, wrong, *daemon) as proc:
        assert proc.wait(30) != 0
    err = (tenv.root / "activated.stderr").read_text()
    assert "not a listening unix stream socket" in err, err
    wrong.close()
