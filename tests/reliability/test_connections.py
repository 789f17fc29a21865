"""R3 of reliability.md: slowloris clients, live-reader caps and running out of descriptors.

Guards against request heads that trickle in forever (each holding an fd), against live readers
beyond the cap being queued instead of refused at once, against one TCP peer taking every live
slot, and against a daemon that dies, spins or stops serving for good when accept() hits EMFILE.
"""

from __future__ import annotations

import contextlib
import resource
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
from daemonkit import StartDaemon, TestEnv, http_tcp, http_unix, wait_for

from .loadkit import Sampler, create_json, local_daemon, num_fds, percentile, raw_unix, summary
from .tiers import scale, seconds

HEAD_DEADLINE_S = 2.0
LONG_POLL = b"GET /v1/stream/r3?offset=now&live=long-poll HTTP/1.1\r\nHost: %s\r\n\r\n"


@contextlib.contextmanager
def _enough_fds(n: int) -> Iterator[None]:
    """This test process opens thousands of sockets in tier 2."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _raise_nofile(pid: int, n: int) -> None:
    """The daemon must not hit EMFILE here (that is the other test)."""
    proc = psutil.Process(pid)
    soft, hard = proc.rlimit(psutil.RLIMIT_NOFILE)
    if soft < n:
        proc.rlimit(psutil.RLIMIT_NOFILE, (min(n, hard), hard))


class Prober(threading.Thread):
    """A fresh GET /v1/health on a new connection every 20 ms; records each one's latency."""

    def __init__(self, sock: Path) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            t0 = time.monotonic()
            try:
                status = http_unix(self.sock, "GET", "/v1/health", timeout=5).status
            except OSError as exc:
                self.failures.append(repr(exc))
                continue
            self.latencies.append(time.monotonic() - t0)
            if status != 200:
                self.failures.append(f"status {status}")

    def finish(self) -> None:
        self.done.set()
        self.join()


def _slowloris(sock: Path, count: int, every: float, give_up: float) -> list[float]:
    """Open ``count`` connections sending a request head one byte per ``every`` seconds; return
    how long each stayed open (inf: still open after ``give_up`` seconds)."""
    sel = selectors.DefaultSelector()
    opened: dict[socket.socket, float] = {}
    for _ in range(count):
        s = raw_unix(sock)
        s.sendall(b"GET /v1/health HTTP/1.1\r\nX-Slow: ")
        s.setblocking(False)
        opened[s] = time.monotonic()
        sel.register(s, selectors.EVENT_READ)
    lived: list[float] = []
    end = time.monotonic() + give_up
    tick = time.monotonic() + every
    while opened and time.monotonic() < end:
        for key, _ in sel.select(timeout=max(0.0, min(tick, end) - time.monotonic())):
            conn = key.fileobj
            assert isinstance(conn, socket.socket)
            with contextlib.suppress(OSError):
                if conn.recv(4096):
                    continue  # a response (there should be none) is not a close
            lived.append(time.monotonic() - opened.pop(conn))
            sel.unregister(conn)
            conn.close()
        if time.monotonic() >= tick:
            tick += every
            for s in opened:
                with contextlib.suppress(OSError):
                    s.send(b"a")
    lived += [float("inf")] * len(opened)
    for s in opened:
        s.close()
    return lived


def _open_long_polls(sock: Path, n: int) -> list[socket.socket]:
    conns = []
    for _ in range(n):
        s = raw_unix(sock)
        s.sendall(LONG_POLL % b"x")
        conns.append(s)
    return conns


def _refused(make: Iterator[socket.socket], host: bytes) -> tuple[list[float], list[bytes]]:
    """Send one long-poll on each socket; the time to its reply and the reply's head."""
    times, heads = [], []
    for s in make:
        with s:
            t0 = time.monotonic()
            s.sendall(LONG_POLL % host)
            s.settimeout(5)
            heads.append(s.recv(65536).split(b"\r\n\r\n")[0].lower())
            times.append(time.monotonic() - t0)
    return times, heads


def _readers(sock: Path) -> int:
    listing = http_unix(sock, "GET", "/v1/channels").json()
    return sum(int(ch["readers"]) for ch in listing if ch["name"] == "r3")


def test_r3_slowloris_closed_at_head_deadline_and_reader_cap(
    tenv: TestEnv, start_daemon: StartDaemon
) -> None:
    slow, cap, extra = scale(200, 2000), scale(50, 1024), scale(10, 50)
    with _enough_fds(slow + cap + extra + 256):
        d = local_daemon(
            start_daemon, f"header_read_timeout_s={HEAD_DEADLINE_S}", f"max_live_readers={cap}"
        )
        _raise_nofile(d.pid, slow + cap + extra + 256)
        create_json(tenv.socket, "r3")
        base_fds = num_fds(d.pid)
        sampler, prober = Sampler(d.pid), Prober(tenv.socket)
        sampler.start()
        prober.start()
        lived: list[float] = []
        loris = threading.Thread(
            target=lambda: lived.extend(_slowloris(tenv.socket, slow, 0.5, 4 * HEAD_DEADLINE_S))
        )
        loris.start()
        polls = _open_long_polls(tenv.socket, cap)
        wait_for(lambda: _readers(tenv.socket) == cap, 10, f"{cap} live readers admitted")
        times, heads = _refused((raw_unix(tenv.socket) for _ in range(extra)), b"x")
        loris.join()
        for s in polls:
            s.close()
        prober.finish()
        usage = sampler.stop()
        wait_for(lambda: num_fds(d.pid) <= base_fds + 2, 5, "descriptors back to the baseline")
    print(
        f"\nR3: {slow} slowloris connections lived {min(lived):.2f}-{max(lived):.2f}s "
        f"(deadline {HEAD_DEADLINE_S}s); {extra} readers over the cap of {cap}: "
        f"503 in {summary(times)}; fresh GETs meanwhile: {summary(prober.latencies)}, "
        f"{len(prober.failures)} failed; daemon fds {base_fds} -> peak {usage.fds_max}; "
        f"{usage.line()}"
    )
    assert all(HEAD_DEADLINE_S - 1 <= t <= HEAD_DEADLINE_S + 1 for t in lived), sorted(lived)
    assert all(h.startswith(b"http/1.1 503") and b"retry-after:" in h for h in heads), heads
    assert max(times) < seconds(1.0, 0.05), summary(times)
    assert not prober.failures, prober.failures[:5]
    assert percentile(prober.latencies, 0.99) < seconds(1.0, 0.2), summary(prober.latencies)
    # No connection cap beyond RLIMIT_NOFILE exists: each open connection is one fd, and
    # nothing else may grow with them.
    assert usage.fds_max <= base_fds + slow + cap + extra + 64, usage.line()


def test_r3_live_readers_capped_per_tcp_peer(tenv: TestEnv, start_daemon: StartDaemon) -> None:
    per_peer = 5
    d = local_daemon(
        start_daemon,
        f"max_live_readers_per_peer={per_peer}",
        args=("--listen", "127.0.0.1:0", "--no-auth"),
    )
    create_json(tenv.socket, "r3")
    host, port = d.tcp_address()
    host_header = f"{host}:{port}".encode()

    def tcp(source: str) -> socket.socket:
        return socket.create_connection((host, port), source_address=(source, 0))

    held = [tcp("127.0.0.1") for _ in range(per_peer)]
    for s in held:
        s.sendall(LONG_POLL % host_header)
    wait_for(lambda: _readers(tenv.socket) == per_peer, 10, "the peer's readers admitted")
    _, same_peer = _refused((tcp("127.0.0.1") for _ in range(3)), host_header)
    other = tcp("127.0.0.2")
    other.sendall(LONG_POLL % host_header)
    unix = _open_long_polls(tenv.socket, per_peer)
    wait_for(lambda: _readers(tenv.socket) == 2 * per_peer + 1, 10, "other peers admitted")
    for s in [*held, other, *unix]:
        s.close()
    assert all(h.startswith(b"http/1.1 503") and b"retry-after:" in h for h in same_peer)
    assert http_tcp(host, port, "GET", "/v1/health").status == 200


def test_r3_survives_emfile(tenv: TestEnv, start_daemon: StartDaemon) -> None:
    """RLIMIT_NOFILE 256 and more connections than that: the daemon keeps running, does not
    spin (asyncio stops accepting for a second at a time), and serves again afterwards."""
    d = local_daemon(start_daemon)
    proc = psutil.Process(d.pid)
    proc.rlimit(psutil.RLIMIT_NOFILE, (256, 256))
    assert proc.rlimit(psutil.RLIMIT_NOFILE) == (256, 256)
    conns: list[socket.socket] = []
    backlog_full = 0
    with _enough_fds(1024):
        # Connect until the listen backlog is full *while* the daemon is at its limit: only
        # then are connections waiting that it must try (and fail) to accept.
        deadline = time.monotonic() + 20
        starved = False
        while not starved:
            assert time.monotonic() < deadline, f"daemon at {num_fds(d.pid)} fds"
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(str(tenv.socket))
            except BlockingIOError:  # the listen backlog is full
                backlog_full += 1
                s.close()
                starved = num_fds(d.pid) >= 255
                time.sleep(0.01)
                continue
            conns.append(s)
        with Sampler(d.pid) as sampler:
            time.sleep(seconds(2.0, 5.0))
        alive = d.proc.poll() is None
        for s in conns:
            s.close()
        t0 = time.monotonic()
        wait_for(d.healthy, 10, "the daemon to serve again")
        back_s = time.monotonic() - t0
    usage = sampler.usage

    def accept_failures() -> list[str]:
        return [line for line in d.stderr.splitlines() if "cannot accept" in line]

    wait_for(lambda: bool(accept_failures()), 5, "the daemon to log its failed accept()")
    logged = accept_failures()
    print(
        f"\nR3 EMFILE: {len(conns)} connections held ({backlog_full} found the backlog full); "
        f"daemon at {usage.fds_max} fds used {usage.cpu_cores:.3f} cores while starved; "
        f"served again {back_s:.2f}s after they closed; {len(logged)} log line(s): "
        f"{logged[:1]}"
    )
    assert alive, d.stderr[-2000:]
    assert usage.cpu_cores < 0.2, usage.line()
    assert back_s < 3.0
    assert len(logged) == 1, logged  # once a minute at most (logs.AcceptStarved)
    assert "Too many open files" in logged[0]
