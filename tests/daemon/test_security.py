"""Security defaults (reliability.md 2.4, tests S1-S3): only our uid, only with the token.

S1: the socket is 0600 in a 0700 directory from the first instant (umask 000 at start proves the
mode is not a late chmod), another uid gets EACCES, and even a socket chmod'ed open answers
that uid 403 through the SO_PEERCRED check; no abstract-namespace socket.
S2: the data directory is 0700 and its files 0600 whatever the umask.
S3: no TCP unless asked; TCP needs the bearer token; no open TCP on a non-loopback address; a
loose token file refuses to start; the token never leaks to argv or the log; DNS rebinding
(a foreign Host header) and cross-origin writes are refused.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from daemonkit import DaemonProcess, StartDaemon, TestEnv, http_tcp, http_unix

NOBODY = 65534

_CONNECT = """
import errno, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno)); sys.exit(0)
s.sendall(b"GET /v1/health HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
print(data.split(b"\\r\\n", 1)[0].decode())
"""


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _nobody_python() -> str:
    """An interpreter the nobody user can execute (ours may live under a 0700 /root)."""
    for candidate in ("/usr/bin/python3", shutil.which("python3") or ""):
        if not candidate:
            continue
        ok = subprocess.run(
            [candidate, "-I", "-S", "-c", "pass"],
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
            cwd="/",
            capture_output=True,
            timeout=30,
        )
        if ok.returncode == 0:
            return candidate
    pytest.skip("no python interpreter that the nobody user can run")


def _connect_as_nobody(sock: Path) -> str:
    result = subprocess.run(
        [_nobody_python(), "-I", "-S", "-c", _CONNECT, str(sock)],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def strict_daemon(tenv: TestEnv, start_daemon: StartDaemon) -> DaemonProcess:
    """A daemon started under umask 000, with the test root's parents opened for traversal."""
    os.chmod(tenv.root, 0o711)
    os.chmod(tenv.root / "run", 0o711)
    return start_daemon(umask=0)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another uid")
class TestS1UnixSocket:
    def test_modes_under_umask_000(self, tenv: TestEnv, strict_daemon: DaemonProcess) -> None:
        assert _mode(tenv.socket) == 0o600
        assert stat.S_ISSOCK(os.lstat(tenv.socket).st_mode)
        assert _mode(tenv.runtime_dir) == 0o700
        for path in (tenv.socket, tenv.runtime_dir):
            assert os.lstat(path).st_uid == os.getuid()
        for sidecar in ("chanctl.lock", "chanctl.pid"):
            assert _mode(tenv.runtime_dir / sidecar) == 0o600

    def test_other_uid_gets_eacces(self, tenv: TestEnv, strict_daemon: DaemonProcess) -> None:
        assert _connect_as_nobody(tenv.socket) == "EACCES"  # the 0700 directory stops it
        os.chmod(tenv.runtime_dir, 0o711)
        assert _connect_as_nobody(tenv.socket) == "EACCES"  # and so does the 0600 socket

    def test_peer_credentials_checked_after_chmod(
        self, tenv: TestEnv, strict_daemon: DaemonProcess
    ) -> None:
        os.chmod(tenv.runtime_dir, 0o711)
        os.chmod(tenv.socket, 0o666)
        assert _connect_as_nobody(tenv.socket) == "HTTP/1.1 403 Forbidden"
        assert f"rejected unix socket peer uid={NOBODY} pid=" in strict_daemon.stderr
        assert http_unix(tenv.socket, "GET", "/v1/health").status == 200  # we still get in

    def test_no_abstract_socket(self, strict_daemon: DaemonProcess) -> None:
        inodes = set()
        for fd in Path(f"/proc/{strict_daemon.pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
        rows = Path("/proc/net/unix").read_text().splitlines()[1:]
        ours = [r.split() for r in rows if r.split()[6] in inodes]
        assert ours, "the daemon's unix socket should be listed"
        paths = [r[7] for r in ours if len(r) > 7]
        assert paths and not any(p.startswith("@") for p in paths)


class TestS2DataDir:
    def test_memory_store_dir_and_lock(self, tenv: TestEnv, start_daemon: StartDaemon) -> None:
        start_daemon(umask=0)
        assert _mode(tenv.data_dir) == 0o700
        assert _mode(tenv.data_dir / "daemon.lock") == 0o600

    def test_existing_loose_data_dir_is_tightened(
        self, tenv: TestEnv, start_daemon: StartDaemon
    ) -> None:
        tenv.data_dir.mkdir(mode=0o755)
        os.chmod(tenv.data_dir, 0o755)
        start_daemon()
        assert _mode(tenv.data_dir) == 0o700

    def test_local_store_files_private_under_umask_000(
        self, tenv: TestEnv, start_daemon: StartDaemon
    ) -> None:
        start_daemon(umask=0, store="local")
        headers = {"Content-Type": "text/plain"}
        for name in ("alpha", "nested/beta"):
            made = http_unix(tenv.socket, "PUT", f"/v1/stream/{name}", b"hello", headers)
            assert made.status in (200, 201), made
            sent = http_unix(tenv.socket, "POST", f"/v1/stream/{name}", b"more", headers)
            assert sent.status in (200, 204), sent
        entries = list(tenv.data_dir.rglob("*"))
        assert any(p.is_file() for p in entries)
        for path in [tenv.data_dir, *entries]:
            want = 0o700 if path.is_dir() else 0o600
            assert _mode(path) == want, f"{path} has mode {_mode(path):04o}"


def _token(tenv: TestEnv) -> str:
    return tenv.token_file.read_text().strip()


class TestS3Tcp:
    def test_no_tcp_listener_by_default(self, daemon: DaemonProcess) -> None:
        assert psutil.Process(daemon.pid).net_connections(kind="inet") == []
        assert daemon.holder()["listen"] is None

    def test_listen_requires_the_token(self, tenv: TestEnv, start_daemon: StartDaemon) -> None:
        daemon = start_daemon("--listen", "127.0.0.1:0")
        host, port = daemon.tcp_address()
        assert host == "127.0.0.1"
        assert _mode(tenv.token_file) == 0o600
        assert _mode(tenv.token_file.parent) == 0o700
        token = _token(tenv)
        missing = http_tcp(host, port, "GET", "/v1/health")
        assert missing.status == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = http_tcp(host, port, "GET", "/v1/health", headers={"Authorization": "Bearer x"})
        assert wrong.status == 401
        almost = {"Authorization": f"Bearer {token[:-1]}"}
        assert http_tcp(host, port, "GET", "/v1/health", headers=almost).status == 401
        good = {"Authorization": f"Bearer {token}"}
        assert http_tcp(host, port, "GET", "/v1/health", headers=good).status == 200
        assert token.encode() not in missing.body + wrong.body
        listeners = psutil.Process(daemon.pid).net_connections(kind="inet")
        assert {c.laddr.ip for c in listeners} == {"127.0.0.1"}

    def test_token_survives_restart(self, tenv: TestEnv, start_daemon: StartDaemon) -> None:
        first = start_daemon("--listen", "127.0.0.1:0")
        token = _token(tenv)
        first.stop()
        start_daemon("--listen", "127.0.0.1:0")
        assert _token(tenv) == token

    def test_no_auth_on_loopback(self, start_daemon: StartDaemon) -> None:
        daemon = start_daemon("--listen", "127.0.0.1:0", "--no-auth")
        host, port = daemon.tcp_address()
        assert http_tcp(host, port, "GET", "/v1/health").status == 200

    @pytest.mark.parametrize("addr", ["0.0.0.0:0", "[::]:0"])
    def test_non_loopback_without_token_refused(
        self, tenv: TestEnv, start_daemon: StartDaemon, addr: str
    ) -> None:
        daemon = start_daemon("--listen", addr, "--no-auth", wait=False)
        assert daemon.wait_exit() == 1
        assert "without a token" in daemon.stderr and "is not loopback" in daemon.stderr
        assert not tenv.socket.exists()

    def test_loose_token_file_refused(self, tenv: TestEnv, start_daemon: StartDaemon) -> None:
        tenv.token_file.parent.mkdir(mode=0o700)
        tenv.token_file.write_text("a-token-that-may-have-leaked-already\n")
        os.chmod(tenv.token_file, 0o644)
        daemon = start_daemon("--listen", "127.0.0.1:0", wait=False)
        assert daemon.wait_exit() == 1
        assert "has mode 0644" in daemon.stderr
        assert "a-token-that-may-have-leaked" not in daemon.stderr
        assert _mode(tenv.token_file) == 0o644, "the daemon must not silently fix it"

    def test_token_not_in_argv_or_log(self, tenv: TestEnv, start_daemon: StartDaemon) -> None:
        daemon = start_daemon("--listen", "127.0.0.1:0", foreground=False)
        host, port = daemon.tcp_address()
        token = _token(tenv)
        http_tcp(host, port, "GET", "/v1/health", headers={"Authorization": "Bearer nope"})
        http_tcp(host, port, "GET", "/v1/health", headers={"Authorization": f"Bearer {token}"})
        cmdline = Path(f"/proc/{daemon.pid}/cmdline").read_bytes()
        assert token.encode() not in cmdline
        environ = Path(f"/proc/{daemon.pid}/environ").read_bytes()
        assert token.encode() not in environ
        log = tenv.log_file.read_text()
        assert "missing or wrong bearer token" in log
        assert token not in log and token not in daemon.stderr

    @pytest.mark.parametrize("host_header", ["evil.example", "evil.example:4437", "10.0.0.1"])
    def test_dns_rebinding_rejected(self, start_daemon: StartDaemon, host_header: str) -> None:
        daemon = start_daemon("--listen", "127.0.0.1:0", "--no-auth")
        host, port = daemon.tcp_address()
        reply = http_tcp(host, port, "GET", "/v1/health", headers={"Host": host_header})
        assert reply.status == 421
        for ok_host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
            assert (
                http_tcp(host, port, "GET", "/v1/health", headers={"Host": ok_host}).status == 200
            )

    def test_cross_origin_write_rejected(self, start_daemon: StartDaemon) -> None:
        daemon = start_daemon("--listen", "127.0.0.1:0", "--no-auth")
        host, port = daemon.tcp_address()
        evil = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
        assert http_tcp(host, port, "PUT", "/v1/stream/x", b"hi", headers=evil).status == 403
        assert http_tcp(host, port, "GET", "/v1/health", headers=evil).status == 200


class TestSlowClients:
    def test_request_head_deadline(self, tenv: TestEnv, start_daemon: StartDaemon) -> None:
        start_daemon("--header-read-timeout", "0.5")
        for opening in (b"", b"GET /v1/hea"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(10)
                s.connect(str(tenv.socket))
                s.sendall(opening)
                began = time.monotonic()
                assert s.recv(1024) == b"", "the daemon should close a slow connection"
                assert 0.3 < time.monotonic() - began < 5
        assert http_unix(tenv.socket, "GET", "/v1/health").status == 200
