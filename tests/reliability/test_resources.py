"""R1, R4 and R5 of reliability.md: oversized bodies, a full disk, many channels and producers.

Guards against a daemon that reads (or buffers) a huge upload it is going to refuse, that
acknowledges or half-writes appends on a full disk or needs a restart once space is back, and
that leaks file descriptors or memory with many channels and idempotent producers.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemonkit import StartDaemon, TestEnv, cli

from .history import History, check
from .loadkit import (
    MiB,
    Sampler,
    append_json,
    create_json,
    local_daemon,
    num_fds,
    pipeline,
    raw_unix,
    read_all,
    request_bytes,
    rss,
    shm_dir,
)
from .tiers import scale

LIMIT = 1 * MiB  # Limits.max_body_bytes


def _recv_all(s: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the daemon sends until it closes the connection."""
    s.settimeout(timeout)
    out = b""
    while data := s.recv(65536):
        out += data
    return out


def test_r1_oversized_bodies_refused_without_reading_them(
    tenv: TestEnv, start_daemon: StartDaemon
) -> None:
    d = local_daemon(start_daemon)
    create_json(tenv.socket, "r1")
    assert append_json(tenv.socket, "r1", ["before"]) == 204
    sampler = Sampler(d.pid)
    sampler.start()
    head = b"POST /v1/stream/r1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"

    # A declared 1 GiB body: refused from the head alone, and the connection is closed.
    with raw_unix(tenv.socket) as s:
        t0 = time.monotonic()
        s.sendall(head + b"Content-Length: 1073741824\r\n\r\n")
        reply = _recv_all(s)
        declared_s = time.monotonic() - t0
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"connection: close" in reply.lower(), reply[:400]

    # A chunked 1 GiB body: the daemon stops reading just past the limit. With an 8 KiB send
    # buffer, what the client got into the socket bounds what the daemon read.
    with raw_unix(tenv.socket, sndbuf=4096) as s:
        s.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
        frame = memoryview(b"10000\r\n" + b"7" * 65536 + b"\r\n")
        sent = 0
        t0 = time.monotonic()
        with pytest.raises(OSError) as cut:
            while sent < 1 << 30:
                sent += s.send(frame[sent % len(frame) :])
        chunked_s = time.monotonic() - t0
        reply = _recv_all(s)
    usage = sampler.stop()
    print(
        f"\nR1: declared 1 GiB -> 413 in {declared_s * 1000:.1f} ms; chunked 1 GiB cut after "
        f"{sent} bytes sent ({(sent - LIMIT) / 1024:.0f} KiB past the limit) in "
        f"{chunked_s * 1000:.0f} ms; daemon {usage.line()}"
    )
    assert cut.value.errno in (errno.EPIPE, errno.ECONNRESET), cut.value
    assert sent <= LIMIT + 64 * 1024 + 16 * len(b"10000\r\n\r\n"), sent
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert usage.rss_max - usage.rss_start < 2 * LIMIT, usage.line()
    assert read_all(tenv.socket, "r1") == ["before"], "no byte of a refused body is appended"


def test_r1_a_client_that_sends_everything_first_still_reads_its_413(
    tenv: TestEnv, start_daemon: StartDaemon
) -> None:
    """Browsers' fetch (and the conformance suite) send a whole 10 MiB body before reading the
    answer; closing the connection with their bytes unread would reset it, so they would see a
    network error instead of the 413. Such a body is drained after the answer, and the daemon
    stays usable; nothing of it is stored."""
    local_daemon(start_daemon)
    create_json(tenv.socket, "r1-fetch")
    body = b"[" + b'"x",' * (10 * 1024 * 1024 // 4) + b'"x"]'
    with raw_unix(tenv.socket) as s:
        s.sendall(
            b"POST /v1/stream/r1-fetch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )  # all of it, before reading anything: a reset would raise here or below
        reply = _recv_all(s)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert read_all(tenv.socket, "r1-fetch") == []
    assert append_json(tenv.socket, "r1-fetch", ["after"]) == 204


# -- R4: disk full -------------------------------------------------------------------------------


@pytest.fixture
def small_fs(tenv: TestEnv) -> Iterator[Path | None]:
    """An 8 MiB tmpfs, or None where this process may not mount (not root), or when
    ``CHANCTL_R4_FAILPOINTS=1`` asks for the fallback (to exercise it as root)."""
    mnt = tenv.root / "small"
    mnt.mkdir()
    cmd = ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mnt)]
    if (
        os.environ.get("CHANCTL_R4_FAILPOINTS") == "1"
        or subprocess.run(cmd, capture_output=True).returncode
    ):
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill_once(sock: Path, history: History, name: str, tag: str, n: int) -> int:
    """One ~64 KiB batch of ids ``tag:n*64..``; records its outcome, returns the status."""
    ids = [f"{tag}:{n * 64 + i}" for i in range(64)]
    ops = [history.invoke(i, name) for i in ids]
    status = append_json(sock, name, [{"id": i, "pad": "f" * 900} for i in ids])
    for op in ops:
        op.status = "ok" if status == 204 else "fail"
    return status


def test_r4_disk_full_507_then_resumes_without_restart(
    tenv: TestEnv, small_fs: Path | None, start_daemon: StartDaemon
) -> None:
    """(``small_fs`` before ``start_daemon``: the daemons are stopped before the unmount.)"""
    if small_fs is None:
        _disk_full_by_failpoint(tenv, start_daemon)
        return
    data = small_fs / "data"
    filler = small_fs / "filler"
    filler.write_bytes(b"\0" * (2 * MiB))  # freed later: the "operator deletes a file" step
    d = local_daemon(start_daemon, args=("--data-dir", str(data)))
    create_json(tenv.socket, "r4")
    sse = _SseTail(tenv.socket, "r4")
    history = History()
    statuses: list[int] = []
    n = 0
    while 507 not in statuses and n < 200:  # 8 MiB fills after ~90 batches
        statuses.append(_fill_once(tenv.socket, history, "r4", "a", n))
        n += 1
    full_at = len(statuses)
    for _ in range(10):  # the disk stays full: never a 2xx
        statuses.append(_fill_once(tenv.socket, history, "r4", "a", n))
        n += 1
    after_full = statuses[full_at - 1 :]
    reads = read_all(tenv.socket, "r4")  # reads go on while the disk is full
    filler.unlink()
    resumed = _fill_once(tenv.socket, history, "r4", "b", 0)
    got_live = sse.wait_for("b:63")
    print(
        f"\nR4: 8 MiB tmpfs full after {full_at - 1} acked batches "
        f"({len(reads)} messages); then {after_full}; after freeing 2 MiB: {resumed}"
    )
    assert set(after_full) == {507}, f"appends on a full disk must all get 507: {after_full}"
    assert all(s == 204 for s in statuses[: full_at - 1]), statuses
    assert [m["id"] for m in reads] == [o.msg_id for o in history.ops if o.status == "ok"][:-64]
    assert resumed == 204, "appends must resume once space is freed, without a restart"
    assert got_live, "the SSE reader opened before the disk filled must see the new append"
    d.stop()
    assert cli(tenv, "fsck", "--data-dir", str(data)).returncode == 0, "no torn record on disk"
    local_daemon(start_daemon, args=("--data-dir", str(data)))
    log = [m["id"] for m in read_all(tenv.socket, "r4")]
    assert check(history, "r4", log, idempotent=set()) == []


def _disk_full_by_failpoint(tenv: TestEnv, start_daemon: StartDaemon) -> None:
    """Without the privilege to mount: the disk fills in the middle of the 5th append (100
    bytes of its record written, then ENOSPC), and has room again for the next one."""
    why = " (failpoint fallback: no tmpfs could be mounted)"
    fp = {"CHANCTL_FAILPOINTS": "append.before_write=short_write:100@5"}
    d = local_daemon(start_daemon, env=fp)
    create_json(tenv.socket, "r4")
    sse = _SseTail(tenv.socket, "r4")
    history = History()
    statuses = [_fill_once(tenv.socket, history, "r4", "a", n) for n in range(8)]
    reads = read_all(tenv.socket, "r4")
    print(f"\nR4{why}: statuses {statuses}")
    assert statuses == [204] * 4 + [507] + [204] * 3, f"{statuses}{why}"
    assert len(reads) == 7 * 64, f"the short write must be rolled back{why}"
    assert sse.wait_for("a:511"), f"the live reader must see appends after the 507{why}"
    d.stop()
    assert cli(tenv, "fsck", "--data-dir", str(tenv.data_dir)).returncode == 0, why
    local_daemon(start_daemon)
    log = [m["id"] for m in read_all(tenv.socket, "r4")]
    assert check(history, "r4", log, idempotent=set()) == [], why


class _SseTail:
    """A live SSE reader on its own connection, collecting message ids as they arrive."""

    def __init__(self, sock: Path, name: str) -> None:
        self.s = raw_unix(sock)
        self.s.sendall(
            f"GET /v1/stream/{name}?offset=-1&live=sse HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        self.buf = b""

    def wait_for(self, msg_id: str, timeout: float = 10.0) -> bool:
        needle = json.dumps(msg_id).encode()
        deadline = time.monotonic() + timeout
        self.s.settimeout(0.2)
        while needle not in self.buf and time.monotonic() < deadline:
            try:
                self.buf += self.s.recv(1 << 20)
            except TimeoutError:
                pass
        self.s.close()
        return needle in self.buf


# -- R5: many channels and producers -------------------------------------------------------------


def _spread(sock: Path, requests: list[bytes], conns: int) -> list[tuple[int, bytes]]:
    """``pipeline`` over ``conns`` connections at once; replies in request order."""
    parts: list[list[tuple[int, bytes]]] = [[] for _ in range(conns)]

    def run(k: int) -> None:
        parts[k] = pipeline(sock, requests[k::conns])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    replies: list[tuple[int, bytes]] = [(0, b"")] * len(requests)
    for k, part in enumerate(parts):
        replies[k::conns] = part
    return replies


def test_r5_many_channels_and_producers(tenv: TestEnv, start_daemon: StartDaemon) -> None:
    channels, producers, conns = scale(1000, 10_000), scale(20_000, 1_000_000), 8
    with shm_dir() as data:  # memory and descriptors are measured here, not the disk
        d = local_daemon(start_daemon, args=("--data-dir", str(data)))
        sampler = Sampler(d.pid, interval=0.1)
        sampler.start()
        t0 = time.monotonic()
        names = [f"r5-{i}" for i in range(channels)]
        ct: dict[str, str] = {"Content_Type": "application/json"}
        created = _spread(
            tenv.socket, [request_bytes("PUT", f"/v1/stream/{n}", b"", **ct) for n in names], conns
        )
        posts = [
            request_bytes("POST", f"/v1/stream/{n}", json.dumps([n]).encode(), **ct) for n in names
        ]
        appended = _spread(tenv.socket, posts, conns)
        channels_s = time.monotonic() - t0
        fds_channels = sampler.usage.fds_max
        assert {st for st, _ in created} == {201} and {st for st, _ in appended} == {204}

        create_json(tenv.socket, "r5-prod")
        rss_before = rss(d.pid)
        t0 = time.monotonic()
        jobs = [
            request_bytes(
                "POST",
                "/v1/stream/r5-prod",
                json.dumps([i]).encode(),
                **ct,
                Producer_Id=f"producer-{i}",
                Producer_Epoch="0",
                Producer_Seq="0",
            )
            for i in range(producers)
        ]
        statuses = _spread(tenv.socket, jobs, conns)
        producers_s = time.monotonic() - t0
        rss_after = rss(d.pid)
        usage = sampler.stop()
        per_producer = (rss_after - rss_before) / producers
        retry = pipeline(tenv.socket, [jobs[0]])[0][0]
        print(
            f"\nR5: {channels} channels created+appended in {channels_s:.1f}s (fds peak "
            f"{fds_channels}); {producers} producers in {producers_s:.1f}s "
            f"({producers / producers_s:.0f}/s), RSS +{(rss_after - rss_before) / MiB:.1f} MiB "
            f"= {per_producer:.0f} B/producer; retry of producer-0 seq 0 -> {retry}; "
            f"daemon {usage.line()}, fds now {num_fds(d.pid)}"
        )
        assert {st for st, _ in statuses} == {200}, "every new producer's first append: 200"
        assert usage.fds_max <= 256 + conns + 64, usage.line()
        assert usage.rss_max < 300 * MiB, usage.line()
        # Producers are remembered per channel in an LRU of 100,000 (store/local/producers.py):
        # below that a retry is a duplicate (204), beyond it the oldest are forgotten.
        assert retry == (204 if producers <= 100_000 else 200), retry
        assert per_producer < 2048, f"{per_producer:.0f} bytes per remembered producer"
        assert len(read_all(tenv.socket, "r5-prod")) == producers + (retry == 200)
        gets = _spread(
            tenv.socket, [request_bytes("GET", f"/v1/stream/{n}?offset=-1") for n in names], conns
        )
        want = [(200, json.dumps([n]).encode()) for n in names]
        unreadable = [n for n, g, w in zip(names, gets, want, strict=True) if g != w]
        assert not unreadable, f"channels not readable afterwards: {unreadable[:5]}"
        d.stop()
