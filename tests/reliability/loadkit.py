"""Measuring a real daemon under resource pressure (R1-R6 of reliability.md).

The daemon runs as its own process (``start_daemon`` with the local engine); what it costs is
read from outside with psutil (RSS, open fds, CPU time), sampled on a thread while the test
drives load, so a budget is checked against the peak and not a lucky moment. Helpers talk
HTTP over the real unix socket: blocking ``http_unix`` for setup, raw sockets where the test must
control exactly which bytes go out (a header with no body, a trickle, a reader that stalls).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from daemonkit import DaemonProcess, StartDaemon, http_unix

from . import daemonproc

JSON = {"Content-Type": "application/json"}
MiB = 1 << 20


def local_daemon(
    start: StartDaemon, *limits: str, args: Sequence[str] = (), env: dict[str, str] | None = None
) -> DaemonProcess:
    """The real daemon on the local engine, each ``NAME=VALUE`` passed as ``--limit``."""
    flags = [f for lim in limits for f in ("--limit", lim)]
    return start(*flags, *args, store="local", env=env)


@dataclass
class Usage:
    """Peaks and CPU of the daemon process between ``Sampler.start`` and ``stop``."""

    rss_start: int = 0
    rss_max: int = 0
    fds_max: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    samples: int = 0

    @property
    def cpu_cores(self) -> float:
        """Average CPU use in cores (1.0 = one core busy the whole time)."""
        return self.cpu_s / self.wall_s if self.wall_s else 0.0

    def line(self) -> str:
        return (
            f"rss start {self.rss_start / MiB:.1f} MiB, peak {self.rss_max / MiB:.1f} MiB "
            f"(+{(self.rss_max - self.rss_start) / MiB:.1f}), fds peak {self.fds_max}, "
            f"cpu {self.cpu_s:.2f}s over {self.wall_s:.1f}s = {self.cpu_cores:.2f} cores "
            f"({self.samples} samples)"
        )


@dataclass
class Sampler:
    """Samples a process every ``interval`` seconds on a daemon thread."""

    pid: int
    interval: float = 0.05
    usage: Usage = field(default_factory=Usage)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.proc = psutil.Process(self.pid)

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.usage = Usage(rss_start=self.proc.memory_info().rss)
        self._t0 = time.monotonic()
        self._cpu0 = _cpu(self.proc)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> Usage:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.sample()  # a short run may have ended between two samples
            self._thread = None
            self.usage.cpu_s = _cpu(self.proc) - self._cpu0
            self.usage.wall_s = time.monotonic() - self._t0
        return self.usage

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        u = self.usage
        try:
            u.rss_max = max(u.rss_max, self.proc.memory_info().rss)
            u.fds_max = max(u.fds_max, self.proc.num_fds())
        except psutil.NoSuchProcess:
            return
        u.samples += 1


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def num_fds(pid: int) -> int:
    return int(psutil.Process(pid).num_fds())


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: Sequence[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"n={len(ms)} p50 {statistics.median(ms) if ms else 0:.1f} ms, "
        f"p99 {percentile(ms, 0.99):.1f} ms, max {max(ms, default=0):.1f} ms"
    )


def raw_unix(sock: Path, sndbuf: int | None = None, rcvbuf: int | None = None) -> socket.socket:
    """A connected unix socket; small buffers make "bytes sent" close to "bytes read"."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if sndbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(str(sock))
    return s


def create_json(sock: Path, name: str) -> None:
    r = http_unix(sock, "PUT", f"/v1/stream/{name}", headers=JSON)
    assert r.status in (200, 201), r


def append_json(sock: Path, name: str, values: Iterable[Any], **headers: str) -> int:
    """Append JSON values as one batch; returns the status (204/200 accepted)."""
    body = json.dumps(list(values)).encode()
    return http_unix(sock, "POST", f"/v1/stream/{name}", body, {**JSON, **headers}).status


def read_all(sock: Path, name: str, offset: str = "-1") -> list[Any]:
    """Every message from ``offset`` to the tail, following Stream-Next-Offset."""
    return daemonproc.read_all(sock, name, offset, timeout=30)


class SseParser:
    """Incremental ``text/event-stream`` parser: feed bytes, get complete (event, data) pairs.

    Only complete events are returned, so a connection cut mid-event never yields half of one:
    exactly what a resuming reader must rely on.
    """

    def __init__(self) -> None:
        self._pending: list[bytes] = []  # the unfinished line, in pieces (a line can be 1 MiB)
        self._event = "message"
        self._data: list[bytes] = []

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        self._pending.append(data)
        if b"\n" not in data:
            return []
        *lines, rest = b"".join(self._pending).split(b"\n")
        self._pending = [rest]
        out: list[tuple[str, bytes]] = []
        for line in lines:
            if not line:
                if self._data:
                    out.append((self._event, b"\n".join(self._data)))
                self._event, self._data = "message", []
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
            elif line.startswith(b"event:"):
                self._event = line[6:].strip().decode()
        return out


@contextlib.contextmanager
def shm_dir() -> Iterator[Path]:
    """A data directory in /dev/shm: for tests that measure the daemon, not the disk (there an
    fsync costs nothing; a process, unlike a power loss, keeps the page cache)."""
    path = Path(tempfile.mkdtemp(prefix="ct-", dir="/dev/shm"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def request_bytes(method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + body


def pipeline(sock: Path, requests: Sequence[bytes], window: int = 256) -> list[tuple[int, bytes]]:
    """Send requests back to back on one connection (HTTP/1.1 pipelining), at most ``window``
    unanswered; return (status, body) in order. Costs the client next to nothing per request,
    so the daemon, not the test's HTTP client, sets the pace."""
    statuses: list[tuple[int, bytes]] = []
    buf = b""
    with raw_unix(sock) as s:
        sent = 0
        while len(statuses) < len(requests):
            if sent < len(requests) and sent - len(statuses) < window:
                upto = min(len(requests), len(statuses) + window)
                s.sendall(b"".join(requests[sent:upto]))
                sent = upto
            data = s.recv(1 << 20)
            assert data, f"connection closed after {len(statuses)} responses"
            buf += data
            while (end := buf.find(b"\r\n\r\n")) >= 0:
                head = buf[:end].decode("latin-1").lower()
                length = (
                    int(head.split("content-length:", 1)[1].split("\r\n")[0])
                    if ("content-length:" in head)
                    else 0
                )
                if len(buf) < end + 4 + length:
                    break
                statuses.append((int(head.split(" ", 2)[1]), buf[end + 4 : end + 4 + length]))
                buf = buf[end + 4 + length :]
    return statuses
