"""R2 of reliability.md: a reader too slow for the write deadline still makes progress.

The daemon aborts a connection whose writes stay blocked for ``write_deadline_s``. If one SSE
event could hold a whole read chunk (1 MiB), a reader draining a few KiB/s would be cut inside
every event and resume from the same offset forever. This guards the event cap: every cut
connection must have delivered complete events, so each reconnection starts further on, and
the reader finally has every record exactly once, in order, while the daemon's memory stays flat.
What a cut connection still delivers is what the kernel's socket buffers held (about 200 KiB on
a unix socket), which is why events must stay well below that.
"""

from __future__ import annotations

import itertools
import json
import select
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from daemonkit import StartDaemon, TestEnv, http_unix

from .loadkit import JSON, MiB, Sampler, SseParser, create_json, local_daemon, raw_unix
from .tiers import scale, seconds

PAD = "x" * 1000  # ~1 KiB per message


@dataclass
class Reader:
    """One SSE reader: the message numbers it got, and where each connection started."""

    offset: str = "-1"
    numbers: list[int] = field(default_factory=list)
    starts: list[str] = field(default_factory=list)
    closed: bool = False

    def connect(self, sock: Path, name: str) -> tuple[socket.socket, bytes]:
        """An SSE request on a raw connection; HTTP/1.0, so the body is not chunk-encoded.
        Returns the socket and whatever body bytes came with the response head."""
        self.starts.append(self.offset)
        s = raw_unix(sock)
        s.settimeout(30)  # a hang fails the test instead of stalling it
        s.sendall(f"GET /v1/stream/{name}?offset={self.offset}&live=sse HTTP/1.0\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = s.recv(4096)
            assert data, f"no response head: {head!r}"
            head += data
        head, body = head.split(b"\r\n\r\n", 1)
        assert head.split(b" ", 2)[1] == b"200", head
        return s, body

    def feed(self, parser: SseParser, data: bytes) -> None:
        for event, payload in parser.feed(data):
            if event == "data":
                self.numbers += [m["n"] for m in json.loads(payload)]
            elif event == "control":
                ctrl = json.loads(payload)
                self.offset = ctrl["streamNextOffset"]
                self.closed = bool(ctrl.get("streamClosed"))


def _hung_up(s: socket.socket) -> bool:
    """The daemon closed its end (bytes it sent before may still wait to be read)."""
    p = select.poll()
    p.register(s, select.POLLRDHUP)
    return any(ev & (select.POLLRDHUP | select.POLLHUP) for _, ev in p.poll(0))


def _slow_connection(r: Reader, sock: Path, name: str, rate: int, limit_s: float) -> bool:
    """Drain at ``rate`` bytes/s until the daemon hangs up (True) or ``limit_s`` passes.

    Once it hung up, the rest of what it sent is read at full speed: the daemon is no longer
    involved, so only the test's time would be spent."""
    s, body = r.connect(sock, name)
    parser = SseParser()
    r.feed(parser, body)
    step = 0.125
    end = time.monotonic() + limit_s
    with s:
        while not _hung_up(s):
            if time.monotonic() > end:
                return False
            r.feed(parser, s.recv(max(1, int(rate * step))))
            time.sleep(step)
        while data := s.recv(65536):
            r.feed(parser, data)
    return True


def _fast_connection(r: Reader, sock: Path, name: str) -> None:
    s, body = r.connect(sock, name)
    parser = SseParser()
    r.feed(parser, body)
    with s:
        while not r.closed and (data := s.recv(65536)):
            r.feed(parser, data)


def test_r2_slow_sse_reader_progresses_across_cuts(
    tenv: TestEnv, start_daemon: StartDaemon
) -> None:
    rate = scale(4096, 1024)  # bytes/s
    deadline = seconds(2, 10)
    backlog, cuts = scale(4, 16) * MiB, scale(4, 6)
    d = local_daemon(start_daemon, f"write_deadline_s={deadline}")
    create_json(tenv.socket, "slow")
    count = backlog // 1024
    for first in range(0, count, 512):
        msgs = [{"n": n, "pad": PAD} for n in range(first, min(count, first + 512))]
        r = http_unix(tenv.socket, "POST", "/v1/stream/slow", json.dumps(msgs).encode(), JSON)
        assert r.status == 204, r
    r = http_unix(tenv.socket, "POST", "/v1/stream/slow", headers={"Stream-Closed": "true"})
    assert r.status == 204, r

    reader = Reader()
    t0 = time.monotonic()
    with Sampler(d.pid) as sampler:
        got = []
        for _ in range(cuts):
            assert _slow_connection(reader, tenv.socket, "slow", rate, 4 * deadline + 5), (
                f"a reader draining {rate} B/s was not cut within {4 * deadline + 5}s"
            )
            got.append(len(reader.numbers))
        slow_s = time.monotonic() - t0
        while not reader.closed:
            _fast_connection(reader, tenv.socket, "slow")
    usage = sampler.usage
    print(
        f"\nR2 slow reader: {count} messages ({backlog // MiB} MiB); drained at {rate} B/s "
        f"with write_deadline_s={deadline}: {cuts} cuts in {slow_s:.1f}s, messages after each "
        f"cut {got}; {len(reader.starts)} connections in all; daemon {usage.line()}"
    )
    # Every cut connection delivered complete events: each reconnection starts further on.
    slow_starts = reader.starts[: cuts + 1]
    assert all(a < b for a, b in itertools.pairwise(slow_starts)), slow_starts
    assert got[0] > 0 and all(a < b for a, b in itertools.pairwise(got)), got
    assert reader.numbers == list(range(count)), "missing, repeated or reordered messages"
    assert usage.rss_max < usage.rss_start + 32 * MiB, usage.line()


def test_sse_events_hold_whole_messages_up_to_the_cap(
    tenv: TestEnv, start_daemon: StartDaemon
) -> None:
    """Each data event is whole messages (one larger message goes alone), and its control event
    names the offset right after them, for a text channel where the framing hides boundaries."""
    local_daemon(start_daemon)
    r = http_unix(tenv.socket, "PUT", "/v1/stream/t", headers={"Content-Type": "text/plain"})
    assert r.status == 201, r
    sizes = [10, 70_000, 1, 65_536, *[30_000] * 5, 200_000, *[5_000] * 40]
    msgs = [bytes([97 + i % 26]) * n for i, n in enumerate(sizes)]
    for m in msgs:
        r = http_unix(tenv.socket, "POST", "/v1/stream/t", m, {"Content-Type": "text/plain"})
        assert r.status == 204, r
    r = http_unix(tenv.socket, "POST", "/v1/stream/t", headers={"Stream-Closed": "true"})
    assert r.status == 204, r
    events: list[tuple[bytes, int]] = []  # (data, the sequence number after it)
    data: bytes | None = None
    with raw_unix(tenv.socket) as s:
        s.settimeout(30)
        s.sendall(b"GET /v1/stream/t?offset=-1&live=sse HTTP/1.0\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    for event, payload in SseParser().feed(raw.split(b"\r\n\r\n", 1)[1]):
        if event == "data":
            data = payload
        elif event == "control" and data is not None:
            events.append((data, int(json.loads(payload)["streamNextOffset"][:16])))
            data = None
    seq = 0
    for payload, nxt in events:
        assert nxt > seq and payload == b"".join(msgs[seq:nxt]), (seq, nxt, len(payload))
        assert len(payload) <= 64 * 1024 or nxt == seq + 1, (seq, nxt, len(payload))
        seq = nxt
    assert seq == len(msgs)
    print(f"\nSSE framing: {len(msgs)} messages ({sum(sizes)} bytes) in {len(events)} data events")
