"""The security contract beyond tests/daemon/test_security.py (reliability.md 2.4; S3-S6, B7).

Each test runs the real daemon and talks to it over its real sockets:

S3: a wrong token is refused in constant time (a wrong first byte and a wrong last byte cost the
    same, medians within 5%) because the daemon compares through ``hmac.compare_digest``; the
    token reaches no log, argv, environment, error body, crash dump or URL path.
S4: a foreign Host gets 421 on every route, the web view's static files included; a cross-origin
    write is refused with or without the token (another port of 127.0.0.1 is another origin) and
    appends nothing; no response allows another origin; nosniff everywhere, no-store on HEAD.
S5: a steering message one run handled is never handled again, even after the daemon was killed.
S6: no message body reaches the log or an error body; faulthandler dumps land in the log and
    hold no token; a steer payload reaches the job's stdin byte for byte.
B7: header values that do reach the log stay on one line, escaped.
"""

from __future__ import annotations

import hashlib
import json
import re
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from daemonkit import DaemonProcess, Reply, StartDaemon, TestEnv, cli, http_tcp, http_unix, wait_for
from reliability.tiers import scale

JSON = {"Content-Type": "application/json"}
TEXT = {"Content-Type": "text/plain"}
EVIL = "http://evil.example"
LOG_RECORD = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) \S+: ")
# What must never reach a log line raw: C0 (newline included: a record is one line), DEL, C1,
# bidi overrides and isolates, and the surrogates a non-UTF-8 header byte decodes to.
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


@dataclass
class Tcp:
    """A daemon listening on loopback TCP with a bearer token."""

    tenv: TestEnv
    proc: DaemonProcess
    host: str
    port: int
    token: str

    def auth(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **(extra or {})}

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        return http_tcp(self.host, self.port, method, path, body, headers)

    def unix(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        return http_unix(self.tenv.socket, method, path, body, headers)

    def log(self) -> str:
        return self.tenv.log_file.read_text(errors="surrogateescape")


def _start_tcp(tenv: TestEnv, start_daemon: StartDaemon, **kwargs: object) -> Tcp:
    proc = start_daemon("--listen", "127.0.0.1:0", **kwargs)
    host, port = proc.tcp_address()
    return Tcp(tenv, proc, host, port, tenv.token_file.read_text().strip())


@pytest.fixture
def tcp(tenv: TestEnv, start_daemon: StartDaemon) -> Tcp:
    """Detached (so it logs to its log file, as a user's daemon does), durable local store."""
    return _start_tcp(tenv, start_daemon, store="local", foreground=False)


def _raw(host: str, port: int, request: bytes) -> bytes:
    """One request with exactly these bytes (no client normalises them); the whole answer."""
    return _exchange(socket.create_connection((host, port), timeout=5), request)


def _raw_unix(path: Path, request: bytes) -> bytes:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(path))
    return _exchange(s, request)


def _exchange(s: socket.socket, request: bytes) -> bytes:
    with s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def _reply(raw: bytes) -> Reply:
    """Parse a raw HTTP/1.1 response (as ``_raw`` returns it)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    return Reply(int(status_line.split()[1]), headers, body)


def _pieces(secret: str, width: int = 12) -> list[str]:
    """Every ``width``-character window of ``secret``: a partial echo is a leak too."""
    return [secret[i : i + width] for i in range(len(secret) - width + 1)]


def _leaks(secret: str, text: str | bytes) -> list[str]:
    hay = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return [piece for piece in _pieces(secret) if piece in hay]


# -- S3: constant-time refusal ---------------------------------------------------------------


def _flip(token: bytes, index: int) -> bytes:
    """``token`` with one byte changed, the length kept (so only the position differs)."""
    other = b"A" if token[index : index + 1] != b"A" else b"B"
    return token[:index] + other + token[index + 1 :]


def _read_response(s: socket.socket, buf: bytearray) -> bytes:
    """One HTTP response off a keep-alive connection (the daemon always sends Content-Length)."""

    def more() -> None:
        chunk = s.recv(65536)
        assert chunk, "the daemon closed a keep-alive connection"
        buf.extend(chunk)

    while b"\r\n\r\n" not in buf:
        more()
    head_end = buf.index(b"\r\n\r\n") + 4
    found = re.search(rb"(?i)\r\ncontent-length: *(\d+)", buf[:head_end])
    assert found is not None, bytes(buf[:head_end])
    length = int(found.group(1))
    while len(buf) < head_end + length:
        more()
    response = bytes(buf[: head_end + length])
    del buf[: head_end + length]
    return response


def _time_refusals(tcp: Tcp, tokens: list[bytes], rounds: int) -> list[list[int]]:
    """Round-trip nanoseconds of a 401 for each token, interleaved on one keep-alive
    connection (alternating the order each round), so load drifts hit all tokens alike."""
    requests = [
        b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n\r\n"
        % (tcp.port, token)
        for token in tokens
    ]
    samples: list[list[int]] = [[] for _ in tokens]
    buf = bytearray()
    with socket.create_connection((tcp.host, tcp.port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for request in requests * 50:  # warm-up; also proves each one is a 401
            s.sendall(request)
            assert _read_response(s, buf).startswith(b"HTTP/1.1 401 ")
        for i in range(rounds):
            order = range(len(tokens)) if i % 2 == 0 else reversed(range(len(tokens)))
            for k in order:
                began = time.perf_counter_ns()
                s.sendall(requests[k])
                _read_response(s, buf)
                samples[k].append(time.perf_counter_ns() - began)
    return samples


def test_wrong_token_refused_in_constant_time(tenv: TestEnv, start_daemon: StartDaemon) -> None:
    """Medians of a wrong first byte and a wrong last byte within 5% (best of 3 runs)."""
    tcp = _start_tcp(tenv, start_daemon)
    token = tcp.token.encode()
    wrong = [_flip(token, 0), _flip(token, len(token) - 1)]
    spreads = []
    for _ in range(3):
        first, last = _time_refusals(tcp, wrong, scale(2000, 20000))
        a, b = statistics.median(first), statistics.median(last)
        spreads.append(abs(a - b) / min(a, b))
        if spreads[-1] < 0.05:
            break
    assert min(spreads) < 0.05, f"median spread per run: {spreads}"


# Imported by `site` at the daemon's start-up (PYTHONPATH): hmac.compare_digest stays the real
# one, but each call is noted as the sha256 of both arguments (never the values themselves).
SPY = """
import hashlib, hmac, os
_real = hmac.compare_digest
_fd = os.open(os.environ["CHANCTL_TEST_COMPARE_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
def _noted(a, b):
    line = hashlib.sha256(a).hexdigest() + " " + hashlib.sha256(b).hexdigest() + "\\n"
    os.write(_fd, line.encode())
    return _real(a, b)
hmac.compare_digest = _noted
"""


def _sha(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


def test_token_is_compared_with_compare_digest(tenv: TestEnv, start_daemon: StartDaemon) -> None:
    """The timing test cannot see a 43-byte ``==`` (nanoseconds under ~0.3 ms of HTTP), so
    this proves the path instead: every bearer, wrong at its first or its last byte, is
    checked by ``hmac.compare_digest`` against the whole token, in the real daemon."""
    spy = tenv.root / "spy"
    spy.mkdir()
    (spy / "sitecustomize.py").write_text(SPY)
    notes = tenv.root / "compare-digest.log"
    env = {"PYTHONPATH": str(spy), "CHANCTL_TEST_COMPARE_LOG": str(notes)}
    tcp = _start_tcp(tenv, start_daemon, env=env)
    token = tcp.token.encode()
    sent = [_flip(token, 0), _flip(token, len(token) - 1)] * 5
    for bearer in sent:
        headers = {"Authorization": "Bearer " + bearer.decode()}
        assert tcp.call("GET", "/v1/health", headers=headers).status == 401
    assert tcp.call("GET", "/v1/health", headers=tcp.auth()).status == 200
    calls = [tuple(line.split()) for line in notes.read_text().splitlines()]
    against_token = [call for call in calls if call[1] == _sha(token)]
    assert against_token == [(_sha(bearer), _sha(token)) for bearer in [*sent, token]]


def test_token_never_leaks(tcp: Tcp) -> None:
    """Log (default level), stderr, argv, environment, every error body and a SIGUSR1 stack
    dump hold not even 12 characters of the token, after it was sent right, nearly right, in
    a malformed header, with a foreign Host and cross-origin."""
    near = tcp.token[:-1] + ("A" if tcp.token[-1] != "A" else "B")
    replies = [
        tcp.call("GET", "/v1/health", headers={"Authorization": f"Bearer {near}"}),
        tcp.call("GET", "/ui/", headers={"Authorization": f"Bearer {near}"}),
        tcp.call("GET", "/ui/app.js", headers={"Authorization": f"Bearer {near}"}),
        tcp.call("POST", "/ui/session", headers={"Authorization": f"Bearer {near}"}),
        tcp.call("GET", "/v1/health", headers={"Authorization": near}),  # no scheme
        tcp.call("GET", "/v1/health", headers=tcp.auth({"Host": f"evil.example:{tcp.port}"})),
        tcp.call("PUT", "/v1/stream/x", b"", tcp.auth({"Origin": EVIL})),
        tcp.call("GET", "/v1/stream/missing", headers=tcp.auth()),
        tcp.call("PUT", "/v1/stream/bad%0Aname", b"", tcp.auth()),
    ]
    assert [r.status for r in replies] == [401, 401, 401, 401, 401, 421, 403, 404, 400]
    ok = tcp.call("GET", "/ui/?channel=x", headers=tcp.auth())
    assert ok.status == 200
    # A client bug: the token followed by a control byte. aiohttp's parser quotes the line.
    bad = _raw(
        tcp.host,
        tcp.port,
        b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
        + tcp.token.encode()
        + b"\x01\r\nConnection: close\r\n\r\n",
    )
    assert bad.startswith(b"HTTP/1.0 400 ")
    tcp.proc.signal(signal.SIGUSR1)  # faulthandler: dump every thread's stack, keep running
    wait_for(lambda: "most recent call first" in tcp.log(), 10, "the stack dump in the log")
    assert tcp.proc.healthy()
    pid = tcp.proc.pid
    places = {
        "log": tcp.log(),
        "stderr": tcp.proc.stderr,
        "cmdline": Path(f"/proc/{pid}/cmdline").read_bytes(),
        "environ": Path(f"/proc/{pid}/environ").read_bytes(),
        **{f"error body {r.status}": r.body for r in replies},
    }
    leaked = {where: found for where, text in places.items() if (found := _leaks(tcp.token, text))}
    assert not leaked
    assert "missing or wrong bearer token" in places["log"]  # the refusals were logged
    assert "bad HTTP request from 127.0.0.1" in places["log"]


def test_daemon_start_does_not_pass_chanctl_token_on(tenv: TestEnv) -> None:
    """``CHANCTL_TOKEN`` (a client setting) is not handed to the daemon `chanctl` starts."""
    secret = "client-side-token-" + secrets.token_hex(16)
    started = cli(tenv, "daemon", "start", "--store", "memory", env={"CHANCTL_TOKEN": secret})
    assert started.returncode == 0, started.stderr
    status = json.loads(cli(tenv, "daemon", "status", "--json").stdout)
    try:
        environ = Path(f"/proc/{status['pid']}/environ").read_bytes()
        cmdline = Path(f"/proc/{status['pid']}/cmdline").read_bytes()
    finally:
        assert cli(tenv, "daemon", "stop").returncode == 0
    assert b"XDG_STATE_HOME=" in environ  # the environment is passed, only not the token
    assert secret.encode() not in environ + cmdline


def test_web_url_carries_the_token_in_the_fragment_only(tcp: Tcp) -> None:
    """What `chanctl web` prints: the part a browser sends (path and query) has no token, and
    loading exactly that part gets only the unlock page, with nothing logged of the token."""
    result = cli(tcp.tenv, "web", "--no-open", "jobs/build-1")
    assert result.returncode == 0, result.stderr
    url = urlsplit(result.stdout.strip())
    assert url.fragment == f"token={tcp.token}"
    sent = url.path + ("?" + url.query if url.query else "")
    assert sent == "/ui/?channel=jobs%2Fbuild-1"
    assert (url.hostname, url.port) == (tcp.host, tcp.port)
    page = tcp.call("GET", sent)
    assert page.status == 401 and b"<script>" in page.body  # the unlock page, nothing else
    assert b'src="app.js"' not in page.body
    assert not _leaks(tcp.token, result.stderr + tcp.log() + page.body.decode())


# -- S4: browsers --------------------------------------------------------------------------

ROUTES: list[tuple[str, str, bytes | None, dict[str, str]]] = [
    ("GET", "/v1/health", None, {}),
    ("GET", "/v1/channels", None, {}),
    ("GET", "/v1/stream/s4?offset=-1", None, {}),
    ("HEAD", "/v1/stream/s4", None, {}),
    ("OPTIONS", "/v1/stream/s4", None, {"Access-Control-Request-Method": "POST"}),
    ("PUT", "/v1/stream/fresh", b"[]", JSON),
    ("POST", "/v1/stream/s4", b'"x"', JSON),
    ("POST", "/v1/stream/s4", b"x", TEXT),
    ("DELETE", "/v1/stream/s4", None, {}),
    ("GET", "/v1/control/s4?offset=-1", None, {}),
    ("POST", "/v1/control/s4", b'{"type":"steer","data":"stop"}', JSON),
    ("GET", "/v1/producer/s4", None, {}),
    ("PUT", "/v1/producer/s4", b"{}", JSON),
    ("DELETE", "/v1/producer/s4", None, {}),
    ("GET", "/v1/cursors/s4?name=c", None, {}),
    ("PUT", "/v1/cursors/s4?name=c", b'{"offset":"-1"}', JSON),
    ("DELETE", "/v1/cursors/s4?name=c", None, {}),
    ("GET", "/ui", None, {}),
    ("GET", "/ui/", None, {}),
    ("GET", "/ui/app.js", None, {}),
    ("GET", "/ui/style.css", None, {}),
    ("GET", "/ui/index.html", None, {}),
    ("POST", "/ui/session", None, {}),
    ("POST", "/v1/web", None, {}),
]
MUTATING = [r for r in ROUTES if r[0] not in ("GET", "HEAD", "OPTIONS")]


def _seed(tcp: Tcp) -> list[object]:
    """Channel s4 with one message; returns the state a write could change (``_contents``)."""
    assert tcp.unix("PUT", "/v1/stream/s4", b'["seed"]', JSON).status == 201
    return _contents(tcp)


def _contents(tcp: Tcp) -> list[object]:
    """Everything a refused write could have changed."""
    return [
        tcp.unix("GET", "/v1/stream/s4?offset=-1").body,
        tcp.unix("HEAD", "/v1/stream/fresh").status,
        tcp.unix("HEAD", "/v1/control/s4").status,
        tcp.unix("GET", "/v1/producer/s4").body,
        tcp.unix("GET", "/v1/cursors/s4").body,
        tcp.unix("GET", "/v1/channels").body,
    ]


def test_foreign_host_refused_on_every_route(tcp: Tcp) -> None:
    """DNS rebinding: with or without the token, every route (static files too) answers 421
    to a Host that is not loopback, or to no Host at all, and nothing changes."""
    before = _seed(tcp)
    for host in (f"evil.example:{tcp.port}", "evil.example", "127.0.0.1.evil.example", "10.0.0.1"):
        for auth in (tcp.auth(), {}):
            for method, path, body, headers in ROUTES:
                reply = tcp.call(method, path, body, {**headers, **auth, "Host": host})
                assert reply.status == 421, (host, bool(auth), method, path, reply)
                assert reply.headers["x-content-type-options"] == "nosniff"
                assert "access-control-allow-origin" not in reply.headers
    no_host = _raw(tcp.host, tcp.port, b"GET /ui/app.js HTTP/1.0\r\n\r\n")
    assert no_host.startswith(b"HTTP/1.0 421 ") or no_host.startswith(b"HTTP/1.1 421 ")
    assert _contents(tcp) == before
    same = tcp.call("GET", "/ui/app.js", headers=tcp.auth({"Host": f"localhost:{tcp.port}"}))
    assert same.status == 200  # the check is not simply refusing everything


def test_cross_origin_writes_refused_with_or_without_token(tcp: Tcp) -> None:
    """A page of another origin cannot write: not with a text/plain form post (no token), not
    with the token either, not from another port of 127.0.0.1, not as ``Origin: null``."""
    before = _seed(tcp)
    origins = [
        EVIL,
        "null",
        f"http://127.0.0.1:{tcp.port + 1 if tcp.port < 65535 else tcp.port - 1}",
        f"http://localhost:{tcp.port}",  # the request says Host: 127.0.0.1:PORT
        f"https://127.0.0.1:{tcp.port}",
    ]
    for origin in origins:
        for auth in (tcp.auth(), {}):
            for method, path, body, headers in MUTATING:
                reply = tcp.call(method, path, body, {**headers, **auth, "Origin": origin})
                assert reply.status == 403, (origin, bool(auth), method, path, reply)
                assert "access-control-allow-origin" not in reply.headers
    assert _contents(tcp) == before, "a refused write changed something"
    reads = tcp.call("GET", "/v1/stream/s4?offset=-1", headers=tcp.auth({"Origin": EVIL}))
    assert reads.status == 200 and "access-control-allow-origin" not in reads.headers
    # The page's own origin (what the web view sends) may write.
    own = tcp.auth({**JSON, "Origin": f"http://127.0.0.1:{tcp.port}"})
    assert tcp.call("POST", "/v1/stream/s4", b'"mine"', own).status in (200, 204)
    assert b'"mine"' in tcp.unix("GET", "/v1/stream/s4?offset=-1").body


def test_no_auth_listener_refuses_other_local_origins(start_daemon: StartDaemon) -> None:
    """With ``--no-auth`` the Origin check is the only guard against a form post: a page
    served by some other program on 127.0.0.1 must not append (it is another origin)."""
    daemon = start_daemon("--listen", "127.0.0.1:0", "--no-auth")
    host, port = daemon.tcp_address()
    assert http_tcp(host, port, "PUT", "/v1/stream/n", b"", TEXT).status == 201
    for origin in (f"http://127.0.0.1:{port - 1}", "http://localhost:8888", EVIL, "null"):
        form = {**TEXT, "Origin": origin}
        assert http_tcp(host, port, "POST", "/v1/stream/n", b"pwned", form).status == 403
    assert http_tcp(host, port, "GET", "/v1/stream/n?offset=-1").body == b""
    assert f"Origin 'http://127.0.0.1:{port - 1}'" in daemon.stderr


def test_preflight_and_browser_headers(tcp: Tcp) -> None:
    """No response of any route lets another origin read it (no Access-Control-Allow-Origin,
    preflights included); every one says nosniff; HEAD says no-store (PROTOCOL 12.7)."""
    _seed(tcp)
    preflight = {"Origin": EVIL, "Access-Control-Request-Method": "POST"}
    replies: list[tuple[str, Reply]] = []
    for auth in (tcp.auth(), {}):
        for method, path, body, headers in ROUTES:
            for extra in ({"Origin": EVIL}, preflight if method == "OPTIONS" else {}):
                reply = tcp.call(method, path, body, {**headers, **auth, **extra})
                replies.append((f"{method} {path} {bool(auth)} {extra}", reply))
    statuses = {r.status for _, r in replies}
    assert {200, 204, 401, 403, 404} <= statuses  # successes and every kind of refusal
    for what, reply in replies:
        assert "access-control-allow-origin" not in reply.headers, what
        assert reply.headers.get("x-content-type-options") == "nosniff", what
    for auth in (tcp.auth(), {}):
        for path in ("/v1/stream/s4", "/v1/stream/missing", "/v1/control/s4"):
            head = tcp.call("HEAD", path, headers=auth)
            assert head.headers.get("cache-control") == "no-store", (path, head)
            assert head.headers.get("x-content-type-options") == "nosniff"


# -- S5: control-lane authority --------------------------------------------------------------


def _run(
    tenv: TestEnv, name: str, *cmd: str, opts: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "chanctl.entry", "run", name, "-q", *opts, "--", *cmd],
        env=tenv.env,
        cwd=tenv.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_handled_stop_stays_handled_after_a_daemon_crash(
    tenv: TestEnv, start_daemon: StartDaemon
) -> None:
    """The control lane's read position is kept by the daemon, durably: a `stop` the first
    run obeyed does not stop the next run, even after the daemon was killed with SIGKILL."""
    first_daemon = start_daemon(store="local")
    assert cli(tenv, "send", "s5", "stop").returncode == 0  # before any run: waits for one
    first = _run(tenv, "s5", "sleep", "1000", opts=("--no-close",))
    assert first.wait(30) == 143, "the waiting stop stops the first run"
    first_daemon.proc.kill()
    first_daemon.wait_exit()
    start_daemon(store="local")
    second = _run(tenv, "s5", "sh", "-c", "echo up; exec sleep 1000")
    try:
        up = cli(tenv, "wait", "s5", "--for", "match=^up$", "--timeout", "30s")
        assert up.returncode == 0, up.stderr
        # Acknowledged: the run has read past the old stop, which it must not have obeyed.
        assert cli(tenv, "send", "s5", "signal", "CONT", "--wait").returncode == 0
        assert second.poll() is None, "an old, handled stop stopped a new run"
        assert cli(tenv, "send", "s5", "stop", "--wait").returncode == 0
        assert second.wait(30) == 143
    finally:
        if second.poll() is None:
            second.kill()
            second.wait(10)


# -- S6: secrets and untrusted content at rest -----------------------------------------------


def test_no_message_body_in_log_or_error_bodies(tcp: Tcp) -> None:
    """Bodies, accepted or refused, and steering included, never reach the log at the default
    level; error bodies quote at most a name (escaped, ASCII JSON), never a body."""
    mark = "BODY-" + secrets.token_hex(8)
    producer = {"Producer-Id": "p1", "Producer-Epoch": "0", "Producer-Seq": "0", **JSON}
    steer = json.dumps({"type": "steer", "data": f"stdin {mark}-steer"}).encode()
    accepted = [
        tcp.unix("PUT", "/v1/stream/s6", json.dumps([f"{mark}-create"]).encode(), JSON),
        tcp.unix("POST", "/v1/stream/s6", json.dumps([f"{mark}-append"]).encode(), JSON),
        tcp.unix("POST", "/v1/stream/s6", json.dumps(f"{mark}-producer").encode(), producer),
        tcp.unix("POST", "/v1/control/s6", steer, JSON),
        tcp.call("POST", "/v1/stream/s6", json.dumps(f"{mark}-tcp").encode(), tcp.auth(JSON)),
    ]
    assert all(r.status in (200, 201, 204) for r in accepted), accepted
    refused = {
        "bad json": tcp.unix("POST", "/v1/stream/s6", f'{{"data": "{mark}" '.encode(), JSON),
        "nan": tcp.unix("POST", "/v1/stream/s6", f'[NaN, "{mark}"]'.encode(), JSON),
        "content type": tcp.unix("POST", "/v1/stream/s6", mark.encode(), TEXT),
        "no channel": tcp.unix("POST", "/v1/stream/none", json.dumps(mark).encode(), JSON),
        "too big": _reply(
            _raw_unix(
                tcp.tenv.socket,
                b"POST /v1/stream/s6 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000000\r\n"
                b'Content-Type: application/json\r\n\r\n"' + mark.encode() * 1000,
            )
        ),
        "bad name": tcp.unix("PUT", "/v1/stream/a%0A%1B[2J", mark.encode(), TEXT),
        "bad steer": tcp.unix("POST", "/v1/control/s6", mark.encode(), JSON),
        "no token": tcp.call("POST", "/v1/stream/s6", json.dumps(mark).encode(), JSON),
        "cross-origin": tcp.call(
            "POST", "/v1/stream/s6", json.dumps(mark).encode(), tcp.auth({**JSON, "Origin": EVIL})
        ),
    }
    codes = {what: r.status for what, r in refused.items()}
    assert codes == {
        "bad json": 400,
        "nan": 400,
        "content type": 409,
        "no channel": 404,
        "too big": 413,
        "bad name": 400,
        "bad steer": 400,
        "no token": 401,
        "cross-origin": 403,
    }
    for what, reply in refused.items():
        assert mark.encode() not in reply.body, what
        body = reply.body.decode("ascii")  # JSON with every non-ASCII character escaped
        assert not UNSAFE.search(body) and len(body) < 1024, (what, body)
        assert reply.json()["ok"] is False
    # A malformed chunked body: aiohttp answers itself; the log keeps only its reason.
    chunked = _raw(
        tcp.host,
        tcp.port,
        b"POST /v1/stream/s6 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
        + tcp.token.encode()
        + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{mark}\r\n\r\n".encode(),
    )
    assert chunked.startswith(b"HTTP/1.") and b" 400 " in chunked.split(b"\r\n")[0]
    read = tcp.unix("GET", "/v1/stream/s6?offset=-1").body
    polled = tcp.call("GET", "/v1/stream/s6?offset=-1&live=long-poll", headers=tcp.auth())
    assert read.count(mark.encode()) == 4 and polled.body == read
    log = tcp.log()
    assert mark not in log, "a message body reached the daemon log"
    assert "bad HTTP request from 127.0.0.1" in log  # the chunked one was logged, bodiless


def test_crash_dump_lands_in_the_log_without_the_token(tcp: Tcp) -> None:
    """A fatal signal (SIGSEGV) makes faulthandler write every thread's stack to the log:
    evidence for a bug report, with no token (nor anything else but code locations)."""
    secret = tcp.token
    assert tcp.call("GET", "/v1/health", headers=tcp.auth()).status == 200
    resource.prlimit(tcp.proc.pid, resource.RLIMIT_CORE, (0, 0))  # no core file in the tree
    tcp.proc.signal(signal.SIGSEGV)
    assert tcp.proc.wait_exit() == -signal.SIGSEGV
    log = tcp.log()
    assert "Fatal Python error: Segmentation fault" in log
    assert re.search(r'File ".*/asyncio/base_events\.py", line \d+ in run_forever', log)
    assert not _leaks(secret, log + tcp.proc.stderr)


def test_steer_stdin_reaches_the_job_byte_for_byte(
    tenv: TestEnv, start_daemon: StartDaemon
) -> None:
    """Control bytes, quotes, shell syntax, bidi and a newline in a JSON ``stdin`` steer reach
    the job's stdin exactly (plus the one newline the verb adds), through no shell."""
    start_daemon()
    out = tenv.root / "stdin.bin"
    canary = tenv.root / "pwned"
    job = f"import sys; open({str(out)!r}, 'wb').write(sys.stdin.buffer.read())"
    wrapper = _run(tenv, "in", sys.executable, "-c", job)
    try:
        payload = f"a\tb\x1b[2J\x07 $(touch {canary}) `touch {canary}`; \\ 'q' \"é\" \u202e\nline 2"
        command = json.dumps({"cmd": "stdin", "arg": payload})
        sent = cli(tenv, "send", "in", "--json", command, "--wait")
        assert sent.returncode == 0, sent.stderr
        assert cli(tenv, "send", "in", "eof", "--wait").returncode == 0
        assert wrapper.wait(30) == 0
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
            wrapper.wait(10)
    assert out.read_bytes() == payload.encode() + b"\n"
    assert not canary.exists()


# -- B7: log injection --------------------------------------------------------------------

NASTY = {
    "bidi": "\u202e".encode(),
    "c1": "\x85\x9b".encode(),  # NEL and CSI as UTF-8
    "raw c1": b"\x85",  # not UTF-8: decodes to a lone surrogate
    "isolate": "\u2066".encode(),
}
REFUSED_BY_THE_PARSER = [b"\r", b"\n", b"\x1b[2J", b"\x1b]52;c;ZXZpbA==\x07", b"\x00", b"\x7f"]


def _log_lines(tcp: Tcp) -> Iterator[str]:
    raw = tcp.tenv.log_file.read_bytes()
    assert raw.endswith(b"\n")
    text = raw.decode("utf-8")  # strict: nothing undecodable was written
    yield from text[:-1].split("\n")


def test_log_records_stay_one_escaped_line(tcp: Tcp) -> None:
    """The attacker-controlled values that reach the log (the Host and Origin of refused
    requests) are escaped on their record's one line; the bytes HTTP itself forbids (CR, LF,
    ESC, NUL...) are refused by the parser and logged as its reason only."""
    tcp.unix("PUT", "/v1/stream/b7", b"[]", JSON)
    for value in NASTY.values():
        host = b"evil" + value + b".example"
        origin = b"http://127.0.0.1" + value
        for header in (b"Host: " + host, b"Host: 127.0.0.1\r\nOrigin: " + origin):
            reply = _raw(
                tcp.host,
                tcp.port,
                b"POST /v1/stream/b7 HTTP/1.1\r\n"
                + header
                + b"\r\nUser-Agent: ua"
                + value
                + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]",
            )
            assert reply.split(b" ", 2)[1] in (b"421", b"403"), reply
    for value in REFUSED_BY_THE_PARSER:
        reply = _raw(
            tcp.host,
            tcp.port,
            b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Evil: a"
            + value
            + b"b\r\nConnection: close\r\n\r\n",
        )
        assert reply.split(b" ", 2)[1] == b"400", (value, reply)
    # Names with control characters are refused before they could be logged.
    nasty_name = "/v1/stream/a%0D%0Ab%1B%5B2J%E2%80%AE%C2%85"
    assert tcp.unix("PUT", nasty_name, b"[]", JSON).status == 400
    producer = _raw_unix(
        tcp.tenv.socket,
        b"POST /v1/stream/b7 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Producer-Id: p" + NASTY["bidi"] + NASTY["raw c1"] + b"\r\nProducer-Epoch: 0\r\n"
        b'Producer-Seq: 0\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"x"',
    )
    assert producer.split(b" ", 2)[1] in (b"200", b"204", b"400"), producer
    lines = list(_log_lines(tcp))
    for line in lines:
        assert LOG_RECORD.match(line), line
        assert not UNSAFE.search(line), line
    text = "\n".join(lines)
    for escaped in ("\\u202e", "\\x85\\x9b", "\\udc85", "\\u2066"):
        assert f"Host 'evil{escaped}.example' is not loopback" in text, escaped
        assert f"Origin 'http://127.0.0.1{escaped}'" in text, escaped
    assert text.count("bad HTTP request from 127.0.0.1") == len(REFUSED_BY_THE_PARSER)
