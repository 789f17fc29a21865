"""R3 of reliability.md: a live reader whose client vanished gives its slot back at once.

A long-poll or SSE reader sleeps until new data, its timeout (30 s) or the next keep-alive
(15 s). If it only then noticed that its client had gone, a client reconnecting in a loop would
fill ``max_live_readers`` with dead connections and everyone else would get 503s. Here the
clients close abruptly (EOF on the unix socket, RST on TCP) while the channel stays quiet: the
slots, tasks and descriptors must be back within 2 s, and a new full set of readers must be
admitted and woken by the next append.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest
from daemonkit import StartDaemon, TestEnv, http_unix, wait_for

from .loadkit import append_json, create_json, local_daemon, num_fds, raw_unix

CAP = 20
NAME = "dead"
RELEASE_S = 2.0  # the brief's bound; the release itself is event-driven (milliseconds)


class Clients:
    """Raw connections to one daemon listener, each sending one live read of ``mode``."""

    def __init__(self, tenv: TestEnv, mode: str, tcp: tuple[str, int] | None) -> None:
        self.sock, self.tcp = tenv.socket, tcp
        host = "x" if tcp is None else f"{tcp[0]}:{tcp[1]}"
        path = f"/v1/stream/{NAME}?offset=now&live={mode}"
        self.request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()

    def open(self) -> socket.socket:
        s = raw_unix(self.sock) if self.tcp is None else socket.create_connection(self.tcp)
        s.sendall(self.request)
        return s

    def vanish(self, conns: list[socket.socket]) -> None:
        """Close without a word: on TCP with a reset, as a killed client or a dropped NAT
        entry would look; on the unix socket a plain close is all a client can do."""
        for s in conns:
            if self.tcp is not None:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()


def _readers(sock: Path) -> int:
    listing = http_unix(sock, "GET", "/v1/channels").json()
    return sum(int(ch["readers"]) for ch in listing if ch["name"] == NAME)


def _tasks(sock: Path) -> int:
    """The daemon's asyncio tasks, the two serving this very request included."""
    return int(http_unix(sock, "GET", "/v1/health").json()["tasks"])


def _recv_until(s: socket.socket, marker: bytes, timeout: float) -> bytes:
    s.settimeout(timeout)
    got = b""
    deadline = time.monotonic() + timeout
    while marker not in got and time.monotonic() < deadline:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def _since(t0: float) -> float:
    return time.monotonic() - t0


@pytest.mark.parametrize("listener", ["unix", "tcp"])
@pytest.mark.parametrize("mode", ["long-poll", "sse"])
def test_r3_dead_live_readers_release_their_slots(
    tenv: TestEnv, start_daemon: StartDaemon, mode: str, listener: str
) -> None:
    tcp_args = ("--listen", "127.0.0.1:0", "--no-auth") if listener == "tcp" else ()
    d = local_daemon(start_daemon, f"max_live_readers={CAP}", args=tcp_args)
    create_json(tenv.socket, NAME)
    clients = Clients(tenv, mode, d.tcp_address() if listener == "tcp" else None)
    sock = tenv.socket
    base_tasks, base_fds = _tasks(sock), num_fds(d.pid)

    dead = [clients.open() for _ in range(CAP)]
    wait_for(lambda: _readers(sock) == CAP, 10, "the first readers admitted")
    with clients.open() as over:  # the cap is really full: the next reader is refused
        assert _recv_until(over, b"\r\n\r\n", 5).startswith(b"HTTP/1.1 503")
    clients.vanish(dead)
    t0 = time.monotonic()

    # No append: only the disconnects can end these readers before their 15-30 s timeouts.
    wait_for(lambda: _readers(sock) == 0, RELEASE_S, "the dead readers' slots freed")
    slots_s = _since(t0)
    wait_for(lambda: _tasks(sock) <= base_tasks, RELEASE_S, "the daemon's tasks back to base")
    wait_for(lambda: num_fds(d.pid) <= base_fds, RELEASE_S, "the daemon's fds back to base")
    back_s = _since(t0)

    fresh = [clients.open() for _ in range(CAP)]
    wait_for(lambda: _readers(sock) == CAP, RELEASE_S, "a full set of new readers admitted")
    admitted_s = _since(t0)
    assert append_json(sock, NAME, [{"wake": "dead-readers"}]) in (200, 204)
    replies = [_recv_until(s, b"dead-readers", 5) for s in fresh]
    clients.vanish(fresh)
    print(
        f"\nR3 dead readers ({mode}, {listener}): {CAP} slots free {slots_s * 1000:.0f} ms "
        f"after their clients vanished, tasks {base_tasks} and fds {base_fds} back after "
        f"{back_s * 1000:.0f} ms, {CAP} new readers admitted after {admitted_s * 1000:.0f} ms"
    )
    assert all(r.startswith(b"HTTP/1.1 200") and b"dead-readers" in r for r in replies), [
        r[:200] for r in replies
    ]
    wait_for(lambda: _readers(sock) == 0, RELEASE_S, "the second readers' slots freed")
    assert "Traceback" not in d.stderr, d.stderr[-3000:]  # the handlers end quietly
