"""`chanctl fsck` against data written by the real daemon, run as the real CLI.

A clean directory is ok (exit 0); a flipped byte in a sealed segment is CORRUPT at the offset
of the damaged message (exit 1), other channels stay ok; a torn tail of the last segment is
reported but not an error; a running daemon's directory is refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from chanctl.daemon.store.local.meta import encode_dir_name

from chanctl.protocol import format_offset

from .daemonproc import DaemonProc, request

JSON = {"Content-Type": "application/json"}
COUNT = 30


def text(name: str, i: int) -> str:
    return f"{name}-{i:04d}-" + "x" * 80


def segments(data: Path, name: str) -> list[Path]:
    return sorted((data / "channels" / encode_dir_name(name)).glob("*.log"))


def fsck(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chanctl.entry", "fsck", "--data-dir", str(data), *args],
        env={**os.environ, "PYTHONSAFEPATH": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def seeded(tmp_path: Path) -> DaemonProc:
    """Two channels of COUNT one-message appends over several 1 KiB segments; stopped."""
    d = DaemonProc(
        tmp_path / "data",
        tmp_path / "s.sock",
        tmp_path / "daemon.log",
        extra_args=("--segment-bytes", "1024"),
    )
    d.start()
    for name in ("bad", "good"):
        status, _, body = request(str(d.sock), "PUT", f"/v1/stream/{name}", headers=JSON)
        assert status == 201, body
        for i in range(COUNT):
            payload = json.dumps(text(name, i)).encode()
            status, _, body = request(str(d.sock), "POST", f"/v1/stream/{name}", payload, JSON)
            assert status == 204, body
    assert d.stop() == 0
    return d


def test_clean_directory_is_ok(tmp_path: Path) -> None:
    seeded(tmp_path)
    data = tmp_path / "data"
    nsegs = len(segments(data, "good"))
    assert nsegs >= 3
    result = fsck(data)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"bad: ok: {COUNT} messages in {len(segments(data, 'bad'))} segments",
        f"good: ok: {COUNT} messages in {nsegs} segments",
    ]
    result = fsck(data, "good", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["channel"] == "good" and doc["ok"] is True
    assert doc["messages"] == COUNT and doc["segments"] == nsegs
    assert doc["corrupt"] is None and doc["torn_tail"] is None


def test_flipped_byte_in_a_sealed_segment_is_corrupt_at_its_offset(tmp_path: Path) -> None:
    d = seeded(tmp_path)
    data = tmp_path / "data"
    victim = segments(data, "bad")[1]  # sealed: newer segments follow
    raw = bytearray(victim.read_bytes())
    seq = next(i for i in range(COUNT) if text("bad", i).encode() in raw)
    seq += 1  # the second message of the segment, so the offset is not the segment's base
    pos = raw.find(text("bad", seq).encode())
    assert pos > 0
    raw[pos + 20] ^= 0x01
    victim.write_bytes(bytes(raw))

    result = fsck(data)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        f"bad: CORRUPT at offset {format_offset(seq)} (segment {victim.name}, byte "
    ), lines
    assert lines[0].endswith("checksum mismatch")
    assert lines[1].startswith("good: ok: ")

    only_good = fsck(data, "good")
    assert only_good.returncode == 0 and "bad" not in only_good.stdout

    doc = json.loads(fsck(data, "bad", "--json").stdout)
    assert doc["ok"] is False and doc["corrupt"]["offset"] == format_offset(seq)
    assert doc["corrupt"]["segment"] == victim.name
    assert 0 < doc["corrupt"]["byte"] < pos

    d.start()  # the daemon quarantines the channel at the same offset
    try:
        offset = "-1"
        while True:
            status, headers, _ = request(str(d.sock), "GET", f"/v1/stream/bad?offset={offset}")
            if status != 200:
                break
            offset = headers["stream-next-offset"]
            assert headers.get("stream-up-to-date") != "true", "the daemon missed the damage"
    finally:
        assert d.stop() == 0
    assert status == 500 and headers["chanctl-corrupt-offset"] == format_offset(seq)
    assert fsck(data, "bad").stdout.splitlines()[0] == lines[0]  # files left as they were


def test_torn_tail_of_the_last_segment_is_not_an_error(tmp_path: Path) -> None:
    seeded(tmp_path)
    data = tmp_path / "data"
    last = segments(data, "good")[-1]
    size = last.stat().st_size
    with open(last, "ab") as f:
        f.write(b"\x40\x00\x00\x00garbage")  # a record header whose body never arrived
    result = fsck(data, "good")
    assert result.returncode == 0, result.stderr
    assert "torn tail (would be truncated at start-up)" in result.stdout
    assert f"segment {last.name}, byte {size}" in result.stdout


def test_refuses_while_a_daemon_holds_the_data_directory(tmp_path: Path) -> None:
    d = seeded(tmp_path)
    d.start()
    try:
        result = fsck(tmp_path / "data")
    finally:
        assert d.stop() == 0
    assert result.returncode == 1
    assert "daemon" in result.stderr and "chanctl daemon stop" in result.stderr
    assert result.stdout == ""


def test_unknown_channel_is_not_found(tmp_path: Path) -> None:
    seeded(tmp_path)
    result = fsck(tmp_path / "data", "nope")
    assert result.returncode == 4
    assert "no channel named 'nope'" in result.stderr
