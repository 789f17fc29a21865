"""HTTP framing abuse against the real daemon (reliability contract B5), over its unix socket
and its loopback TCP listener, with raw bytes on the wire.

Every abusive request is refused (400/413/414/431) or its connection closed, unless its framing
is legitimate HTTP/1.1 (then it appends exactly its own body, once). What must never happen is
a desync: after each case a marker request is sent on the same connection, if it is still
open, and on a fresh one; a marker is answered as itself (the cursor endpoint echoes its
name) or not at all, and no other response follows it. Each smuggling case hides a complete
request that would append ``smuggled`` to the channel ``victim``, which must stay empty. The
daemon stays up and logs no traceback.

aiohttp's C parser drops a chunked body that turns malformed after the handler started reading
it without telling the handler, which then waited for the rest forever; the daemon now closes
such a connection (``HeadDeadline._check_body`` in daemon/connections.py).
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from daemonkit import StartDaemon, TestEnv, http_unix

REFUSED = {400, 413, 414, 431}
FIRST_ANSWER_S = 0.5  # how long a case may take to answer before the marker is sent
TEXT = b"Content-Type: text/plain"


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    body: bytes | None = None  # legitimate framing: what it may append to channel x


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    body: bytes


class Wire:
    """One raw connection; reads responses one at a time from a single buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.closed = False

    def send(self, data: bytes) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        """Read more bytes; False at EOF or reset, TimeoutError past ``deadline``."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        try:
            more = self.sock.recv(65536)
        except TimeoutError:
            raise
        except ConnectionResetError:
            more = b""
        if not more:
            self.closed = True
            return False
        self.buf += more
        return True

    def _take_until(self, sep: bytes, deadline: float) -> bytes | None:
        while sep not in self.buf:
            if not self._fill(deadline):
                return None
        head, _, self.buf = self.buf.partition(sep)
        return head

    def _take(self, n: int, deadline: float) -> bytes | None:
        while len(self.buf) < n:
            if not self._fill(deadline):
                return None
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, timeout: float) -> Resp | None:
        """The next whole response; None when the daemon closed the connection instead."""
        deadline = time.monotonic() + timeout
        head = self._take_until(b"\r\n\r\n", deadline)
        if head is None:
            return None
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while (size_line := self._take_until(b"\r\n", deadline)) not in (None, b"0"):
                assert size_line is not None
                body += self._take(int(size_line, 16) + 2, deadline) or b""
            self._take_until(b"\r\n", deadline)
        else:
            body = self._take(int(headers.get("content-length", "0")), deadline) or b""
        return Resp(int(status_line.split()[1]), headers, body)


@dataclass
class Target:
    """Where requests go: the unix socket, or the TCP listener (its Host must match)."""

    tenv: TestEnv
    tcp: tuple[str, int] | None = None
    appended: list[bytes] = field(default_factory=list)

    @property
    def host(self) -> bytes:
        return b"localhost" if self.tcp is None else b"%s:%d" % (self.tcp[0].encode(), self.tcp[1])

    def connect(self) -> Wire:
        if self.tcp is None:
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(str(self.tenv.socket))
        else:
            sock = socket.create_connection(self.tcp)
        return Wire(sock)

    def request(
        self, headers: list[bytes], body: bytes = b"", line: bytes = b"POST /v1/stream/x HTTP/1.1"
    ) -> bytes:
        head = [line, b"Host: " + self.host, TEXT, *headers]
        return b"\r\n".join(head) + b"\r\n\r\n" + body

    def marker(self, name: str) -> bytes:
        return self.request([], line=f"GET /v1/cursors/mk?name={name} HTTP/1.1".encode())


def smuggled(t: Target) -> bytes:
    """A complete request that appends ``smuggled`` to ``victim`` if it is ever executed."""
    line = b"POST /v1/stream/victim HTTP/1.1"
    return t.request([b"Content-Length: 8"], b"smuggled", line=line)


def cl_len(body: bytes) -> bytes:
    """A Content-Length header to splice in before the end of a head."""
    return b"\r\nContent-Length: %d\r\n\r\n" % len(body)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


HELLO = chunk(b"hello") + b"0\r\n\r\n"


def corpus(t: Target) -> list[Case]:
    smug = smuggled(t)
    post = t.request

    def te(*values: bytes, body: bytes = HELLO + smug) -> bytes:
        return post([b"Transfer-Encoding" + v for v in values], body)

    def cl(*values: bytes, body: bytes = b"hello") -> bytes:
        return post([b"Content-Length" + v for v in values], body)

    def chunked(body: bytes) -> bytes:
        return te(b": chunked", body=body)

    def headers(n: int) -> bytes:  # n headers in all (Host, Content-Type, Content-Length)
        return post([b"X-H%d: v" % i for i in range(n - 3)] + [b"Content-Length: 5"], b"hello")

    cl_te = b"0\r\n\r\n" + smug
    te_cl = chunk(b"a" + smug) + b"0\r\n\r\n"
    get = b"GET /v1/stream/x HTTP/1.1"
    long_get = get.replace(b"x ", b"x?" + b"a" * 9000 + b" ")
    return [
        # Content-Length and Transfer-Encoding together (CL.TE, TE.CL)
        Case("CL.TE", te(b": chunked", body=cl_te).replace(b"\r\n\r\n", cl_len(cl_te), 1)),
        Case("TE.CL", te(b": chunked", body=te_cl).replace(b"\r\n\r\n", cl_len(b"a"), 1)),
        # TE.TE: obfuscated Transfer-Encoding
        Case("TE xchunked", te(b": xchunked")),
        Case("TE chunked, identity", te(b": chunked, identity")),
        Case("TE twice", te(b": chunked", b": identity")),
        Case("TE space before colon", te(b" : chunked")),
        Case("TE vertical tab", te(b":\x0bchunked")),
        Case("TE obs-fold", post([b"Transfer-Encoding:", b" chunked"], HELLO + smug)),
        # Legitimate spellings: chunked is the final coding, values are case-insensitive.
        Case("TE identity, chunked", te(b": identity, chunked", body=HELLO), b"hello"),
        Case("TE tab", te(b":\tchunked", body=HELLO), b"hello"),
        Case("TE CHUNKED", te(b": CHUNKED", body=HELLO), b"hello"),
        Case("chunk extension", chunked(b"5;a=b\r\nhello\r\n0\r\n\r\n"), b"hello"),
        # Content-Length abuse
        Case("CL twice, different", cl(b": 5", b": 13", body=b"hellosmuggled")),
        Case("CL twice, same", cl(b": 5", b": 5")),
        Case("CL list", cl(b": 5, 5")),
        Case("CL space before colon", cl(b" : 5")),
        Case("CL plus sign", cl(b": +5")),
        Case("CL negative", cl(b": -1")),
        Case("CL hex", cl(b": 0x5")),
        Case("CL overflow", cl(b": " + b"9" * 30)),
        Case("CL obs-fold", post([b"X-A: a", b"Content-Length:", b" 5"], b"hello")),
        # Bad chunk sizes and chunk framing
        Case("chunk size negative", chunked(b"-1\r\nhello\r\n0\r\n\r\n")),
        Case("chunk size hex overflow", chunked(b"1" + b"0" * 16 + b"5\r\nhello\r\n0\r\n\r\n")),
        Case("chunk size 0x", chunked(b"0x5\r\nhello\r\n0\r\n\r\n")),
        Case("chunk size trailing space", chunked(b"5 \r\nhello\r\n0\r\n\r\n")),
        Case("chunk missing CRLF", chunked(b"5\r\nhelloXX0\r\n\r\n")),
        Case("chunk bare LF", chunked(b"5\nhello\n0\n\n")),
        Case("chunk longer than sent", chunked(b"10\r\nhello\r\n0\r\n\r\n")),
        Case("chunk shorter than sent", chunked(b"3\r\nhello\r\n0\r\n\r\n")),
        Case("trailer with CL", chunked(HELLO[:-2] + b"Content-Length: 5\r\n\r\n")),
        # Sizes and counts (aiohttp: 8190-byte lines, 128 headers)
        Case("header line over 8190", post([b"X-Long: " + b"a" * 9000], b"")),
        Case("request line over 8190", post([], line=long_get)),
        Case("129 headers", headers(129)),
        Case("128 headers", headers(128), b"hello"),
        # Other malformed heads
        Case("obs-fold", post([b"Content-Length: 5", b"X-Fold: a", b" b"], b"hello")),
        Case("bare LF head", cl(b": 5").replace(b"\r\n", b"\n")),
        Case("bare CR in a value", post([b"X-A: a\rContent-Length: 5"], b"hello")),
        Case("NUL in a value", post([b"X-A: a\x00b", b"Content-Length: 5"], b"hello")),
        Case("space in a name", post([b"X A: a", b"Content-Length: 5"], b"hello")),
        Case("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        # A GET's body is framed by its Content-Length: the request inside is never run.
        Case("GET with a body", post([b"Content-Length: %d" % len(smug)], smug, line=get), b""),
    ]  # fmt: skip


@pytest.fixture
def target(
    request: pytest.FixtureRequest, tenv: TestEnv, start_daemon: StartDaemon
) -> Iterator[Target]:
    daemon = start_daemon("--listen", "127.0.0.1:0", "--no-auth")
    t = Target(tenv, daemon.tcp_address() if request.param == "tcp" else None)
    for name in ("x", "victim"):
        assert (
            http_unix(
                tenv.socket, "PUT", f"/v1/stream/{name}", None, {"Content-Type": "text/plain"}
            ).status
            == 201
        )
    yield t
    assert daemon.healthy(), "the daemon must stay up"
    log = daemon.stderr
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    assert read(tenv, "victim") == b"", "a smuggled request was executed"
    assert read(tenv, "x") == b"".join(t.appended)


def read(tenv: TestEnv, name: str) -> bytes:
    reply = http_unix(tenv.socket, "GET", f"/v1/stream/{name}?offset=-1")
    assert reply.status == 200
    return reply.body


def assert_marker(resp: Resp | None, name: str) -> bool:
    """True when ``resp`` is the marker's own answer; False when the connection closed."""
    if resp is None:
        return False
    assert resp.status == 200 and json.loads(resp.body)["name"] == name, (name, resp)
    return True


def no_more(wire: Wire) -> None:
    """Nothing else is ever answered on this connection."""
    with contextlib.suppress(TimeoutError):
        assert wire.response(0.05) is None, "an extra response: the connection is desynced"


def is_marker(resp: Resp, name: str) -> bool:
    return (
        resp.status == 200 and resp.body.startswith(b"{") and json.loads(resp.body)["name"] == name
    )


def check_first(t: Target, case: Case, first: Resp) -> None:
    """The abusive request's own answer: a refusal, or a success for legitimate framing."""
    accepted = case.body is not None and 200 <= first.status < 300
    assert first.status in REFUSED or accepted, (case.name, first)
    if accepted and case.body:
        t.appended.append(case.body)


def run_case(t: Target, i: int, case: Case) -> str:
    wire = t.connect()
    try:
        wire.send(case.data)
        try:
            first: Resp | None = wire.response(FIRST_ANSWER_S)
            outcome = "closed" if first is None else str(first.status)
        except TimeoutError:  # still reading a body (or just slow): the marker goes after it
            first, outcome = None, "waiting"
        if first is not None:
            check_first(t, case, first)
        if not wire.closed:
            wire.send(t.marker(f"s{i}"))
            answer = wire.response(5)
            if answer is not None and outcome == "waiting" and not is_marker(answer, f"s{i}"):
                check_first(t, case, answer)  # the case's own late answer, then the marker's
                outcome = f"late {answer.status}"
                answer = None if wire.closed else wire.response(5)
            if assert_marker(answer, f"s{i}"):
                no_more(wire)
    finally:
        wire.sock.close()
    fresh = t.connect()
    fresh.send(t.marker(f"f{i}"))
    assert assert_marker(fresh.response(5), f"f{i}")
    fresh.sock.close()
    return outcome


@pytest.mark.parametrize("target", ["unix", "tcp"], indirect=True)
def test_framing_abuse_is_refused_without_desync(target: Target) -> None:
    cases = corpus(target)
    outcomes = {case.name: run_case(target, i, case) for i, case in enumerate(cases)}
    print(f"B5 ({'tcp' if target.tcp else 'unix'}): {len(cases)} abusive requests: {outcomes}")
    for name in ("CL.TE", "TE.CL", "TE xchunked", "CL twice, different", "129 headers"):
        assert outcomes[name] == "400", (name, outcomes[name])


@pytest.mark.parametrize("target", ["unix", "tcp"], indirect=True)
def test_pipelined_requests_are_answered_in_order(target: Target) -> None:
    bodies = [b"one", b"two", b"three", b"four"]
    wire = target.connect()
    wire.send(
        b"".join(target.request([b"Content-Length: %d" % len(b)], b) for b in bodies)
        + target.marker("p")
    )
    offsets = []
    for _ in bodies:
        resp = wire.response(5)
        assert resp is not None and resp.status == 204, resp
        offsets.append(resp.headers["stream-next-offset"])
    assert_marker(wire.response(5), "p")
    no_more(wire)
    wire.sock.close()
    target.appended += bodies
    assert offsets == sorted(offsets) and len(set(offsets)) == len(bodies)


@pytest.mark.parametrize("target", ["unix", "tcp"], indirect=True)
def test_pipeline_with_a_bad_request_in_the_middle(target: Target) -> None:
    """Requests after the bad one are never run; each 2xx matches exactly one stored body."""
    good = [target.request([b"Content-Length: 2"], b"g%d" % i) for i in range(3)]
    bad = target.request([b"Content-Length: 5", b"Content-Length: 6"], b"hello!")
    wire = target.connect()
    wire.send(good[0] + good[1] + bad + good[2] + target.marker("m"))
    answered = []
    while (resp := wire.response(5)) is not None:
        answered.append(resp.status)
        if resp.status in REFUSED:
            break
    no_more(wire)
    wire.sock.close()
    print(f"B5 pipeline with a bad request: answers {answered}")
    assert answered[-1] == 400 and set(answered[:-1]) <= {204}
    target.appended += [b"g%d" % i for i in range(len(answered) - 1)]


@pytest.mark.parametrize("target", ["unix"], indirect=True)
def test_a_bad_chunk_after_the_head_closes_the_connection(target: Target) -> None:
    """The head and a first chunk arrive, the handler starts reading, then the framing breaks."""
    head = target.request([b"Transfer-Encoding: chunked"]) + chunk(b"hello")
    for tail in (
        b"zz\r\n",
        b"-1\r\n",
        b"1" + b"0" * 16 + b"\r\n",
        b"3\r\nabcXY",
        b"5\r\nhello\n0\r\n\r\n",
    ):
        wire = target.connect()
        wire.send(head)
        time.sleep(0.05)  # let the handler start on the first chunk
        wire.send(tail + target.marker("c"))
        start = time.monotonic()
        resp = wire.response(5)
        assert resp is None or resp.status in REFUSED, (tail, resp)
        assert wire.closed or wire.response(5) is None, tail
        assert time.monotonic() - start < 2, "closed at once, not after a timeout"
        wire.sock.close()
