"""SIGTERM is a clean stop: live readers get a proper end, acknowledged appends survive.

Guards the shutdown order in ``chanctl.daemon.server``: listeners close first, in-flight
requests finish, the app ends live readers (long-poll and SSE) with a response rather than a
reset, and the store is stopped last. Runs the real HTTP layer and, for durability, the local
store.
"""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest
from daemonkit import DaemonProcess, StartDaemon, TestEnv, http_unix, wait_for

TEXT = {"Content-Type": "text/plain"}


def _create(tenv: TestEnv, name: str) -> str:
    made = http_unix(tenv.socket, "PUT", f"/v1/stream/{name}", b"", TEXT)
    assert made.status in (200, 201), made
    head = http_unix(tenv.socket, "HEAD", f"/v1/stream/{name}")
    return head.headers["stream-next-offset"]


def _stop_and_time(daemon: DaemonProcess) -> float:
    began = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(20) == 0
    return time.monotonic() - began


@pytest.mark.parametrize("live", ["long-poll", "sse"])
def test_sigterm_ends_live_readers_cleanly(
    tenv: TestEnv, start_daemon: StartDaemon, live: str
) -> None:
    daemon = start_daemon("--long-poll-timeout", "60")
    tail = _create(tenv, "waiting")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as reader:
        reader.settimeout(20)
        reader.connect(str(tenv.socket))
        reader.sendall(
            f"GET /v1/stream/waiting?offset={tail}&live={live} HTTP/1.1\r\n"
            "Host: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        # A later round trip on another connection: by the time it is answered, the event
        # loop has long dispatched the reader's request, which was sent first.
        assert http_unix(tenv.socket, "GET", "/v1/health").status == 200
        assert _stop_and_time(daemon) < 15
        received = b""
        while chunk := reader.recv(65536):
            received += chunk
    status_line = received.split(b"\r\n", 1)[0].decode()
    assert status_line.startswith("HTTP/1.1 "), f"no response, got {received!r}"
    assert int(status_line.split()[1]) < 500, status_line
    if live == "sse":
        assert received.endswith(b"0\r\n\r\n"), "the event stream was cut, not ended"


def test_acked_appends_survive_sigterm(tenv: TestEnv, start_daemon: StartDaemon) -> None:
    daemon = start_daemon(store="local")
    _create(tenv, "work")
    acked: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        for i in range(100_000):
            if stop.is_set():
                return
            try:
                reply = http_unix(tenv.socket, "POST", "/v1/stream/work", f"{i}\n".encode(), TEXT)
            except OSError:
                return  # the daemon went away mid-request: indeterminate, not acked
            if reply.status // 100 == 2:
                acked.append(i)
            elif reply.status != 503:
                raise AssertionError(f"unexpected {reply.status} during shutdown")

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    wait_for(lambda: len(acked) >= 20, 20, "some appends to be acknowledged")
    _stop_and_time(daemon)
    stop.set()
    thread.join(15)
    start_daemon(store="local")
    body = http_unix(tenv.socket, "GET", "/v1/stream/work?offset=-1").body.decode()
    stored = [int(line) for line in body.splitlines()]
    assert set(acked) <= set(stored), "an acknowledged append was lost"
    assert stored == sorted(stored) and len(stored) == len(set(stored))
