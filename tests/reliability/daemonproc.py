"""Run the real daemon as a subprocess that crash tests can SIGKILL and restart.

Crash tests need a daemon they own outright (not a shared fixture): they kill it at random
moments, restart it on the same data directory and socket, and inspect what survived.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def scratch(fallback: Path, need: int = 512 << 20) -> Iterator[Path]:
    """A scratch directory on /dev/shm when it has ``need`` bytes free, else ``fallback``.

    Process-crash tests may run on tmpfs (reliability.md 4.0): the page cache survives the
    process death they simulate, so what they check is unchanged, and a tmpfs fsync costs
    nothing, which keeps hundreds of crash rounds inside the CI budget. Failure reports go
    under the test's own tmp_path, so they outlive this directory."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > need:
        path = Path(tempfile.mkdtemp(prefix="chanctl-crash-", dir=shm))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
    else:
        yield fallback


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def request(
    sock: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    conn = UnixHTTPConnection(sock, timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def walk(
    sock: str | Path, name: str, offset: str = "-1", timeout: float = 10.0
) -> tuple[list[Any], int, dict[str, str], bytes]:
    """Read ``name`` from ``offset``, following Stream-Next-Offset, until the tail (up to
    date) or an answer other than 200: the messages served, then the status, headers and body
    of the answer that ended the walk (a quarantined channel ends in its error)."""
    served: list[Any] = []
    while True:
        status, headers, body = request(
            str(sock), "GET", f"/v1/stream/{name}?offset={offset}", timeout=timeout
        )
        if status != 200:
            return served, status, headers, body
        served += json.loads(body)
        offset = headers["stream-next-offset"]
        if headers.get("stream-up-to-date") == "true":
            return served, status, headers, body


def read_all(sock: str | Path, name: str, offset: str = "-1", timeout: float = 10.0) -> list[Any]:
    """Every message of a healthy channel from ``offset`` to its tail."""
    served, status, _, body = walk(sock, name, offset, timeout)
    assert status == 200, body
    return served


class DaemonProc:
    """One daemon on a fixed data directory and socket, restartable."""

    def __init__(
        self,
        data_dir: Path,
        sock: Path,
        log: Path,
        fsync: str = "always",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.data_dir, self.sock, self.log, self.fsync = data_dir, sock, log, fsync
        self.extra_args = extra_args  # more daemon flags, e.g. ("--segment-bytes", "1024")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None, wait: bool = True) -> None:
        argv = [
            sys.executable,
            "-m",
            "chanctl.daemon",
            "--foreground",
            "--socket",
            str(self.sock),
            "--data-dir",
            str(self.data_dir),
            "--fsync",
            self.fsync,
            *self.extra_args,
        ]
        full_env = {**os.environ, **(env or {})}
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(argv, stdout=logf, stderr=logf, env=full_env)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"daemon exited {self.proc.returncode}: {self.log.read_text()[-2000:]}"
                )
            try:
                status, _, body = request(str(self.sock), "GET", "/v1/health")
                if status == 200 and json.loads(body).get("ok"):
                    return
            except OSError:
                pass
            time.sleep(0.005)  # fine-grained: C11 times restarts with this loop
        raise TimeoutError(f"daemon not ready after {timeout}s: {self.log.read_text()[-2000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def wait_exit(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)
