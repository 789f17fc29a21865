"""C6 of reliability.md through the real daemon: one bit flipped in the middle of a sealed segment.

The behaviour pinned here (see daemon/store/local/reader.py, daemon/errors.py, daemon/core.py):

- Detection is lazy: the first read that reaches the damaged segment checks every record of it
  (CRC32C) and quarantines the channel at the first bad record, message S.
- Catch-up reads serve every message below S, then answer ``500`` with
  ``Chanctl-Corrupt-Offset: S`` and the JSON error envelope ("quarantined", "run chanctl fsck").
  Any offset at or after S gets that answer: no byte at or after S is ever served.
- Long-poll answers the same way. SSE does too when it starts at or after S; a stream that
  reaches S ends after its last complete event (whose control event points at S), so the
  client's reconnection gets the 500.
- HEAD reports ``Chanctl-Corrupt-Offset``; appends are refused with ``503`` and the same header
  (no Retry-After: only a repair helps) until the channel is repaired.
- Other channels work normally. The quarantined channel is never deleted: not by the restart,
  not when its TTL runs out, and its files stay byte for byte as they were.
"""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path

from chanctl.daemon.store.local.meta import encode_dir_name

from chanctl.protocol import format_offset

from .daemonproc import DaemonProc, UnixHTTPConnection, request, walk

JSON = {"Content-Type": "application/json"}
COUNT = 40


def text(name: str, i: int) -> str:
    return f"{name}-{i:04d}-" + "x" * 80


def segments(data: Path, name: str) -> list[Path]:
    return sorted((data / "channels" / encode_dir_name(name)).glob("*.log"))


def flip_a_bit_mid_segment(seg: Path, name: str) -> int:
    """Flip one bit inside the payload of the message nearest the middle of ``seg``; return
    that message's seq (each append is one record holding one message)."""
    data = bytearray(seg.read_bytes())
    found = {i: data.find(text(name, i).encode()) for i in range(COUNT)}
    inside = {i: pos for i, pos in found.items() if pos >= 0}
    assert len(inside) >= 5, "the segment should hold several records"
    seq = min(inside, key=lambda i: abs(inside[i] - len(data) // 2))
    data[inside[seq] + 20] ^= 0x04
    seg.write_bytes(bytes(data))
    return seq


def catch_up(d: DaemonProc, name: str) -> tuple[list[str], int, dict[str, str], bytes]:
    """Follow Stream-Next-Offset from -1 until a non-200: (served, status, headers, body)."""
    served, status, headers, body = walk(d.sock, name)
    assert status != 200, "the corruption went unnoticed"
    return served, status, headers, body


def assert_quarantine_error(status: int, headers: dict[str, str], body: bytes, seq: int) -> None:
    assert status == 500, body
    assert headers["chanctl-corrupt-offset"] == format_offset(seq)
    envelope = json.loads(body)
    assert envelope["ok"] is False and envelope["status"] == 500
    assert "quarantined" in envelope["error"] and "chanctl fsck" in envelope["error"]


def sse_body(d: DaemonProc, name: str, offset: str) -> tuple[int, dict[str, str], bytes]:
    """One whole SSE response (the daemon ends it), read until the connection closes."""
    conn = UnixHTTPConnection(str(d.sock), timeout=15)
    try:
        conn.request("GET", f"/v1/stream/{name}?offset={offset}&live=sse")
        resp = conn.getresponse()
        try:
            body = resp.read()
        except http.client.IncompleteRead as exc:  # the stream was cut: keep what arrived
            body = exc.partial
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def seeded_daemon(tmp_path: Path) -> DaemonProc:
    d = DaemonProc(
        tmp_path / "data",
        tmp_path / "s.sock",
        tmp_path / "daemon.log",
        extra_args=("--segment-bytes", "1024"),
    )
    d.start()
    for name, extra in (("bad", {}), ("bad-ttl", {"Stream-TTL": "2"}), ("good", {})):
        status, _, body = request(
            str(d.sock), "PUT", f"/v1/stream/{name}", headers={**JSON, **extra}
        )
        assert status == 201, body
        for i in range(COUNT):
            payload = json.dumps(text(name, i)).encode()
            status, _, body = request(str(d.sock), "POST", f"/v1/stream/{name}", payload, JSON)
            assert status == 204, body
    assert d.stop() == 0
    return d


def test_a_flipped_bit_in_a_sealed_segment_quarantines_only_that_channel(tmp_path: Path) -> None:
    d = seeded_daemon(tmp_path)
    data = tmp_path / "data"
    victim = segments(data, "bad")[0]  # the oldest segment: sealed, several newer ones follow
    assert len(segments(data, "bad")) >= 3
    bad_seq = flip_a_bit_mid_segment(victim, "bad")
    ttl_seq = flip_a_bit_mid_segment(segments(data, "bad-ttl")[0], "bad-ttl")
    damaged = {p.name: p.read_bytes() for p in segments(data, "bad")}
    d.start()
    try:
        # First the TTL channel (its 2 s TTL counts from the start): this read detects the
        # damage; afterwards it stays idle for longer than its TTL while the sweep runs.
        served, status, headers, body = catch_up(d, "bad-ttl")
        assert_quarantine_error(status, headers, body, ttl_seq)
        idle_since = time.monotonic()

        # Catch-up: everything before the bad record, then the quarantine error.
        served, status, headers, body = catch_up(d, "bad")
        assert served == [text("bad", i) for i in range(bad_seq)]
        assert_quarantine_error(status, headers, body, bad_seq)
        for seq in (bad_seq, bad_seq + 1, COUNT - 1):  # at or after it, even in good segments
            status, headers, body = request(
                str(d.sock), "GET", f"/v1/stream/bad?offset={format_offset(seq)}"
            )
            assert_quarantine_error(status, headers, body, bad_seq)

        # Long-poll: the last good messages, then the error.
        before = format_offset(bad_seq - 2)
        status, _, body = request(
            str(d.sock), "GET", f"/v1/stream/bad?offset={before}&live=long-poll"
        )
        assert status == 200 and json.loads(body) == [
            text("bad", bad_seq - 2),
            text("bad", bad_seq - 1),
        ]
        at = format_offset(bad_seq)
        assert_quarantine_error(
            *request(str(d.sock), "GET", f"/v1/stream/bad?offset={at}&live=long-poll"), bad_seq
        )

        # SSE: the stream stops short of the bad record; resuming from it gets the error.
        status, _, stream = sse_body(d, "bad", "-1")
        assert status == 200
        assert f"bad-{bad_seq - 1:04d}".encode() in stream
        assert f"bad-{bad_seq:04d}".encode() not in stream
        last_control = stream.rsplit(b"event: control\ndata:", 1)[1].split(b"\n", 1)[0]
        assert json.loads(last_control)["streamNextOffset"] == at
        assert_quarantine_error(*sse_body(d, "bad", at), bad_seq)

        # HEAD says so; appends are refused; nothing of it was served past the bad record.
        status, headers, _ = request(str(d.sock), "HEAD", "/v1/stream/bad")
        assert status == 200 and headers["chanctl-corrupt-offset"] == at
        status, headers, body = request(str(d.sock), "POST", "/v1/stream/bad", b'"more"', JSON)
        assert status == 503 and headers["chanctl-corrupt-offset"] == at, body
        assert "retry-after" not in headers and "quarantined" in json.loads(body)["error"]

        # Other channels: unaffected.
        served, status, _, _ = catch_up_all(d, "good")
        assert served == [text("good", i) for i in range(COUNT)]
        status, _, _ = request(str(d.sock), "POST", "/v1/stream/good", b'"more"', JSON)
        assert status == 204

        # A quarantined channel outlives its TTL.
        time.sleep(max(0.0, 3.5 - (time.monotonic() - idle_since)))
        status, headers, _ = request(str(d.sock), "HEAD", "/v1/stream/bad-ttl")
        assert status == 200 and headers["chanctl-corrupt-offset"] == format_offset(ttl_seq)
        assert "kept for `chanctl fsck`" in d.log.read_text()
        names = [e["name"] for e in json.loads(request(str(d.sock), "GET", "/v1/channels")[2])]
        assert "bad" in names
    finally:
        assert d.stop() == 0

    # Never deleted, never "repaired" behind the operator's back; the next start agrees.
    assert {p.name: p.read_bytes() for p in segments(data, "bad")} == damaged
    d.start()
    try:
        served, status, headers, body = catch_up(d, "bad")
        assert len(served) == bad_seq
        assert_quarantine_error(status, headers, body, bad_seq)
        assert (data / "channels" / encode_dir_name("bad-ttl")).is_dir()
    finally:
        d.stop()


def catch_up_all(d: DaemonProc, name: str) -> tuple[list[str], int, dict[str, str], bytes]:
    """Like ``catch_up`` for a healthy channel: stops at the tail instead of failing there."""
    served, status, headers, body = walk(d.sock, name)
    assert status == 200, body
    return served, status, headers, body
