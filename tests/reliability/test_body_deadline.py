"""R3 of reliability.md, request bodies: a body that trickles in forever is cut off.

A client can send a valid head declaring a large body and then one byte every few seconds,
holding a connection and a handler indefinitely (the head deadline is already met). This
guards ``body_read_timeout_s``: the daemon answers 408 once the body is overdue, closes the
connection and stores nothing, while a body that arrives slowly but in time is still accepted.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemonkit import StartDaemon, TestEnv, http_unix

from .loadkit import local_daemon, raw_unix

BODY_TIMEOUT_S = 2.0
TEXT = {"Content-Type": "text/plain"}


def _head(name: str, framing: str) -> bytes:
    """A POST head declaring a 1,000,000-byte body, by Content-Length or chunked."""
    length = "Content-Length: 1000000" if framing == "length" else "Transfer-Encoding: chunked"
    return (
        f"POST /v1/stream/{name} HTTP/1.1\r\nHost: d\r\nContent-Type: text/plain\r\n"
        f"{length}\r\n\r\n"
    ).encode()


def _pieces(data: bytes, framing: str, n: int) -> Iterator[bytes]:
    """``data`` in ``n`` pieces on the wire (chunked: one chunk each, then the last chunk)."""
    step = -(-len(data) // n)
    for i in range(0, len(data), step):
        part = data[i : i + step]
        yield part if framing == "length" else b"%x\r\n%s\r\n" % (len(part), part)
    if framing == "chunked":
        yield b"0\r\n\r\n"


def _response(s: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """The response bytes, and whether the daemon then closed the connection."""
    s.settimeout(timeout)
    out = b""
    try:
        while data := s.recv(65536):
            out += data
        return out, True
    except TimeoutError:
        return out, False


def _tail(sock: Path, name: str) -> str:
    r = http_unix(sock, "HEAD", f"/v1/stream/{name}")
    assert r.status == 200, r
    return r.headers["stream-next-offset"]


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_r3_trickled_body_gets_408_and_stores_nothing(
    tenv: TestEnv, start_daemon: StartDaemon, framing: str
) -> None:
    local_daemon(start_daemon, f"body_read_timeout_s={BODY_TIMEOUT_S}")
    r = http_unix(tenv.socket, "PUT", "/v1/stream/b", headers=TEXT)
    assert r.status == 201, r
    before = _tail(tenv.socket, "b")
    s = raw_unix(tenv.socket)
    s.sendall(_head("b", framing))
    t0 = time.monotonic()
    s.sendall(b"x" if framing == "length" else b"1\r\nx\r\n")
    answered: float | None = None
    with s:
        # One byte every 0.5 s, far slower than the declared body needs, until the daemon answers.
        while time.monotonic() - t0 < 4 * BODY_TIMEOUT_S + 5:
            s.settimeout(0.5)
            try:
                reply = s.recv(65536)
            except TimeoutError:
                s.sendall(b"x" if framing == "length" else b"1\r\nx\r\n")
                continue
            answered = time.monotonic() - t0
            rest, closed = _response(s, 5)
            reply += rest
            break
    assert answered is not None, "the daemon never answered a body trickling for 13 s"
    print(f"\nR3 trickled body ({framing}): answered after {answered:.2f}s: {reply[:40]!r}")
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:200]
    assert closed, "the connection stayed open after 408"
    assert BODY_TIMEOUT_S - 0.1 <= answered < BODY_TIMEOUT_S + 2, answered
    assert _tail(tenv.socket, "b") == before, "a timed-out body was (partly) stored"


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_r3_slow_steady_body_within_deadline_succeeds(
    tenv: TestEnv, start_daemon: StartDaemon, framing: str
) -> None:
    local_daemon(start_daemon, f"body_read_timeout_s={BODY_TIMEOUT_S + 1}")
    r = http_unix(tenv.socket, "PUT", "/v1/stream/b", headers=TEXT)
    assert r.status == 201, r
    body = bytes(range(256)) * 256  # 64 KiB, in 16 pieces over ~1.5 s
    head = _head("b", framing).replace(b"1000000", str(len(body)).encode())
    t0 = time.monotonic()
    with raw_unix(tenv.socket) as s:
        s.sendall(head)
        for piece in _pieces(body, framing, 16):
            s.sendall(piece)
            time.sleep(0.1)
        reply, _ = _response(s, 0.5)
    took = time.monotonic() - t0
    print(f"\nR3 slow steady body ({framing}): {len(body)} bytes over {took:.2f}s: {reply[:20]!r}")
    assert reply.startswith(b"HTTP/1.1 204 "), reply[:200]
    r = http_unix(tenv.socket, "GET", "/v1/stream/b?offset=-1")
    assert r.status == 200 and r.body == body, (r.status, len(r.body))
