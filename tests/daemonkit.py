"""Helpers for tests that run the real daemon as a subprocess and talk to it over real sockets.

Nothing here mocks anything: ``DaemonProcess`` runs ``python -m chanctl.daemon``, readiness is
polled over the socket (never a bare sleep), and teardown is terminate -> wait -> kill. Paths
live under a short directory in /tmp because pytest's ``tmp_path`` can overflow the ~104-byte
unix socket path limit.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 15.0
POLL_S = 0.02


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self.unix_path))
        self.sock = sock


def _exchange(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes | None,
    headers: Mapping[str, str] | None,
) -> Reply:
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def http_unix(
    sock: Path,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> Reply:
    """One HTTP/1.1 request over a unix socket, with the standard library only."""
    return _exchange(_UnixConnection(sock, timeout), method, path, body, headers)


def http_tcp(
    host: str,
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> Reply:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    return _exchange(conn, method, path, body, headers)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until true; fail the test with ``what`` if it never becomes true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL_S)


@dataclass
class TestEnv:
    """An isolated set of chanctl locations, and the environment that points at them."""

    __test__ = False  # not a test class, despite the name

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls) -> TestEnv:
        root = Path(tempfile.mkdtemp(prefix="ct", dir="/tmp"))
        for name in ("run", "data", "state", "config"):
            (root / name).mkdir(mode=0o700)
        # The CI's own markers (CI, GITHUB_ACTIONS, GITLAB_CI) change what `chanctl run` prints;
        # tests that want them set them explicitly.
        ci_vars = ("CI", "GITHUB_ACTIONS", "GITLAB_CI")
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("CHANCTL_") and k not in ci_vars
        }
        env.update(
            XDG_RUNTIME_DIR=str(root / "run"),
            XDG_DATA_HOME=str(root / "data"),
            XDG_STATE_HOME=str(root / "state"),
            XDG_CONFIG_HOME=str(root / "config"),
            TYPER_USE_RICH="0",
            COLUMNS="100",
        )
        return cls(root=root, env=env)

    @property
    def runtime_dir(self) -> Path:
        return self.root / "run" / "chanctl"

    @property
    def socket(self) -> Path:
        return self.runtime_dir / "chanctl.sock"

    @property
    def pid_file(self) -> Path:
        return self.runtime_dir / "chanctl.pid"

    @property
    def data_dir(self) -> Path:
        return self.root / "data" / "chanctl"

    @property
    def log_file(self) -> Path:
        return self.root / "state" / "chanctl" / "daemon.log"

    @property
    def token_file(self) -> Path:
        return self.root / "config" / "chanctl" / "token"

    def cleanup(self) -> None:
        """Stop any daemon still holding this environment's lock (e.g. one the CLI detached)."""
        for lock in self.root.rglob("*.lock"):
            kill_lock_holder(lock)
        shutil.rmtree(self.root, ignore_errors=True)


def kill_lock_holder(lock: Path) -> None:
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return  # nobody holds it
    except BlockingIOError:
        pid = json.loads(os.pread(fd, 65536, 0) or b"{}").get("pid")
    finally:
        os.close(fd)
    if isinstance(pid, int):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def cli(
    tenv: TestEnv, *args: str, timeout: float = 30.0, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``chanctl ARGS`` as a separate process, the way a user's shell would."""
    return subprocess.run(
        [sys.executable, "-m", "chanctl.cli", *args],
        env={**tenv.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=tenv.root,
    )


# The browser tests (web view, browser example) drive Debian's chromium through Playwright.
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_python_blocks(heading: str) -> list[str]:
    """The ```python examples of one README section (``## heading`` up to the next ``## ``),
    so tests can run them as printed and the documented calls cannot drift from the code."""
    section = README.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def run_python(tenv: TestEnv, code: str) -> subprocess.CompletedProcess[str]:
    """``python -c code`` in the test's chanctl environment, output captured as text."""
    return subprocess.run(
        [sys.executable, "-c", code], env=tenv.env, capture_output=True, text=True, timeout=60
    )


class DaemonProcess:
    """``python -m chanctl.daemon`` as a child process, with its stderr kept in a file."""

    def __init__(
        self,
        tenv: TestEnv,
        args: Sequence[str] = (),
        *,
        store: str = "memory",
        foreground: bool = True,
        umask: int = -1,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.tenv = tenv
        argv = [sys.executable, "-m", "chanctl.daemon", "--store", store, *args]
        if foreground:
            argv.append("--foreground")
        self.stderr_path = tenv.root / f"daemon-{time.monotonic_ns()}.stderr"
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                argv,
                env={**tenv.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                umask=umask,
                start_new_session=True,
                cwd=tenv.root,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def healthy(self, sock: Path | None = None) -> bool:
        try:
            return http_unix(sock or self.tenv.socket, "GET", "/v1/health", timeout=1).status == 200
        except OSError:
            return False

    def wait_ready(self, sock: Path | None = None, timeout: float = READY_TIMEOUT_S) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"daemon exited with {self.proc.returncode} before it was ready:\n"
                    + self.stderr
                )
            return self.healthy(sock)

        wait_for(ready, timeout, "the daemon to answer /v1/health")

    def wait_exit(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def holder(self) -> dict[str, Any]:
        """What the daemon wrote into its socket lock file (pid, listen address, ...)."""
        raw = (self.tenv.runtime_dir / "chanctl.lock").read_text()
        return dict(json.loads(raw))

    def tcp_address(self) -> tuple[str, int]:
        listen = str(self.holder()["listen"])
        host, _, port = listen.rpartition(":")
        return host.strip("[]"), int(port)

    def stop(self) -> None:
        """terminate -> wait -> kill; never leaves a process behind."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


StartDaemon = Callable[..., DaemonProcess]
"""The type of the ``start_daemon`` fixture: ``start_daemon(*flags, store=, foreground=, ...)``."""
