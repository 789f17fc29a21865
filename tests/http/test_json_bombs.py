"""JSON bombs against every daemon endpoint that decodes JSON (reliability contract B3).

chanctl decodes no msgpack; its equivalent risk is JSON. ``json.loads`` raises RecursionError,
not ValueError, on deep nesting, and a 100,000-deep ``[[[...]]]`` is only 200 KB: before
``protocol.loads_json`` the producer-claim and cursor endpoints answered it with a 500 and a
traceback. Every bomb here must get a 400 envelope at once, leave nothing behind (no message,
no cursor, no producer claim), cost the daemon no memory that stays, and log no traceback.
Values that are odd but valid JSON (lone surrogate escapes, duplicate keys in appended data)
are stored in one normalised form, so no two readers can disagree about them.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import subprocess
import sys
import time

import psutil
from daemonkit import DaemonProcess, TestEnv, http_unix

import chanctl

JSON = {"Content-Type": "application/json"}
DEEP = 100_000
# A loaded 2-core machine; the contract's goal is 10 ms.
MAX_REQUEST_S = 0.1
ROUNDS = 5

BOMBS: dict[str, bytes] = {
    "deep array": b"[" * DEEP + b"]" * DEEP,
    "deep object": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "deep, never closed": b"[" * DEEP,
    "deep, mixed": b'[{"a":' * (DEEP // 2) + b"0" + b"}]" * (DEEP // 2),
    "deep inside a valid claim": b'{"run_id":"r","pid":1,"x":' + b"[" * DEEP + b"]" * DEEP + b"}",
    "trailing garbage": b'{"offset":"-1","run_id":"r","pid":1} xx',
    "two documents": b'{"run_id":"r","pid":1}{"run_id":"r","pid":1}',
    "NaN": b'{"offset":NaN,"run_id":"r","pid":1,"ttl":NaN}',
    "Infinity": b'[{"ttl":Infinity,"x":-Infinity}]',
    "1e999": b'[{"ttl":1e999}]',
    "not UTF-8": b'["\xff\xfe"]',
    "UTF-8 BOM": b'\xef\xbb\xbf{"run_id":"r","pid":1}',
    "empty": b" ",
}
# Where each bomb is sent: (method, path). The append and create paths are JSON channels.
TARGETS = [
    ("POST", "/v1/stream/j"),
    ("PUT", "/v1/stream/created-by-a-bomb"),
    ("POST", "/v1/control/j"),
    ("PUT", "/v1/cursors/j?name=c"),
    ("PUT", "/v1/producer/j"),
]


def timed(tenv: TestEnv, method: str, path: str, body: bytes) -> tuple[int, float, bytes]:
    """One request on its own connection: (status, seconds to the answer, body). The daemon
    may answer (413) and close before the whole body is sent; that is not an error here."""
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(tenv.socket))
        start = time.perf_counter()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head.encode() + body)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        took = time.perf_counter() - start
        return resp.status, took, resp.read()


def read_values(tenv: TestEnv, path: str) -> list[object]:
    reply = http_unix(tenv.socket, "GET", path + "?offset=-1")
    assert reply.status == 200, reply.body
    return list(json.loads(reply.body))


def settled_rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def assert_clean_log(daemon: DaemonProcess) -> None:
    log = daemon.stderr
    assert "Traceback" not in log and "RecursionError" not in log, log[-3000:]
    assert " ERROR " not in log, log[-3000:]


def test_bombs_get_400_fast_and_leave_nothing(daemon: DaemonProcess, tenv: TestEnv) -> None:
    assert http_unix(tenv.socket, "PUT", "/v1/stream/j", b'["seed"]', JSON).status == 201
    assert http_unix(tenv.socket, "POST", "/v1/control/j", b'"seed"', JSON).status == 204
    for method, path in TARGETS:  # warm up: allocator arenas, imports, caches
        timed(tenv, method, path, BOMBS["deep array"])
    rss_before = settled_rss(daemon.pid)
    slowest = 0.0
    sent = 0
    for _ in range(ROUNDS):
        for what, body in BOMBS.items():
            for method, path in TARGETS:
                status, took, answer = timed(tenv, method, path, body)
                sent += 1
                # 413: a control body over its 64 KiB limit, refused before it is decoded.
                assert status in (400, 413), (what, method, path, status, answer[:200])
                assert json.loads(answer)["ok"] is False
                slowest = max(slowest, took)
    rss_delta = settled_rss(daemon.pid) - rss_before
    print(f"B3: {sent} bombs, slowest answer {slowest * 1000:.1f} ms, RSS delta {rss_delta} B")
    assert slowest < MAX_REQUEST_S
    assert rss_delta < 2 << 20, "bombs must not leave memory behind"
    assert read_values(tenv, "/v1/stream/j") == ["seed"]
    assert read_values(tenv, "/v1/control/j") == ["seed"]
    assert http_unix(tenv.socket, "HEAD", "/v1/stream/created-by-a-bomb").status == 404
    assert http_unix(tenv.socket, "GET", "/v1/cursors/j?name=c").json()["offset"] is None
    assert http_unix(tenv.socket, "GET", "/v1/producer/j").json() == {"state": "none"}
    assert daemon.healthy()
    assert_clean_log(daemon)


def test_a_huge_claimed_length_is_refused_before_the_body(
    daemon: DaemonProcess, tenv: TestEnv
) -> None:
    assert http_unix(tenv.socket, "PUT", "/v1/stream/j", None, JSON).status == 201
    for method, path in TARGETS:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(tenv.socket))
            head = (
                f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n"
                f"Content-Type: application/json\r\nContent-Length: {1 << 40}\r\n\r\n"
            )
            start = time.perf_counter()
            sock.sendall(head.encode() + b"[" * 1000)
            answer = sock.recv(65536)
            took = time.perf_counter() - start
        assert answer.startswith(b"HTTP/1.1 413"), (path, answer[:200])
        assert took < MAX_REQUEST_S, (path, took)
    assert read_values(tenv, "/v1/stream/j") == []
    assert daemon.healthy()
    assert_clean_log(daemon)


def test_odd_but_valid_json_is_stored_in_one_normal_form(
    daemon: DaemonProcess, tenv: TestEnv
) -> None:
    """Appended data is re-encoded: duplicate keys collapse (last wins) and a lone surrogate
    stays an escape, so what is read back is unambiguous valid JSON."""
    assert http_unix(tenv.socket, "PUT", "/v1/stream/j", None, JSON).status == 201
    body = b'[{"a":1,"a":2},"\\ud800x"]'
    assert http_unix(tenv.socket, "POST", "/v1/stream/j", body, JSON).status == 204
    raw = http_unix(tenv.socket, "GET", "/v1/stream/j?offset=-1").body
    assert raw == b'[{"a":2},"\\ud800x"]'
    # The clients render it in every mode (--raw keeps the surrogate, losslessly).
    for mode in ((), ("--json",), ("--raw",)):
        shown = subprocess.run(
            [sys.executable, "-m", "chanctl.cli", "tail", "j", "-n", "all", "--no-follow", *mode],
            env=tenv.env,
            capture_output=True,
            timeout=30,
        )
        assert shown.returncode == 0 and shown.stderr == b"", (mode, shown.stderr)
        assert len(shown.stdout.splitlines()) == 2, (mode, shown.stdout)
    # Control bodies must mean one thing: duplicate keys there are refused.
    claim = b'{"run_id":"a","run_id":"b","pid":1}'
    assert http_unix(tenv.socket, "PUT", "/v1/producer/j", claim, JSON).status == 400
    cursor = b'{"offset":"-1","offset":"0000000000000000_0000000000000000"}'
    assert http_unix(tenv.socket, "PUT", "/v1/cursors/j?name=c", cursor, JSON).status == 400
    assert_clean_log(daemon)


def test_the_deepest_value_the_daemon_stores_reads_back(
    daemon: DaemonProcess, tenv: TestEnv
) -> None:
    """Whatever nesting the daemon accepts, its clients can decode: no poison message. (This
    test's own deep stack used to make the library fail on what the daemon had stored.)"""
    assert http_unix(tenv.socket, "PUT", "/v1/stream/j", None, JSON).status == 201

    def accepted(depth: int) -> bool:
        body = b"[" + b"[" * depth + b"]" * depth + b"]"
        status = http_unix(tenv.socket, "POST", "/v1/stream/j", body, JSON).status
        assert status in (204, 400)
        return status == 204

    low, high = 1, 4000  # accepted(low), not accepted(high)
    assert accepted(low) and not accepted(high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if accepted(mid) else (low, mid)
    print(f"B3: deepest stored message nests {low} levels")
    with chanctl.Client(autostart=False) as c:
        values = [m.data for m in c.replay("j")]
    assert values[-1] == b"[" * low + b"]" * low
    assert_clean_log(daemon)
