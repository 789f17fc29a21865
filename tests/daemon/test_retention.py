"""Retention through the real daemon and the local engine: the Chanctl-Max-* headers, the
daemon-wide defaults (--max-age / --max-bytes / --max-messages), the periodic sweep that
enforces them, 410 below the earliest retained offset, and forks that keep their source's
history alive.

The hidden flags --segment-bytes and --retention-interval make segments roll after a few
records and the sweep run five times a second, so whole segments get dropped within a test.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from chanctl.daemon.options import build_settings, parse_argv, to_argv
from chanctl.daemon.store.base import Retention
from daemonkit import StartDaemon, TestEnv, cli, http_unix, wait_for

from chanctl.errors import UsageError

JSON = {"Content-Type": "application/json"}
FAST = ("--segment-bytes", "1024", "--retention-interval", "0.2")


def off(seq: int) -> str:
    return f"{seq:016d}_{0:016d}"


def create(tenv: TestEnv, name: str, headers: dict[str, str] | None = None) -> int:
    made = http_unix(tenv.socket, "PUT", f"/v1/stream/{name}", b"", {**JSON, **(headers or {})})
    assert made.status in (200, 201), made
    return made.status


def text(name: str, i: int) -> str:
    return f"{name}-{i:04d}-" + "x" * 80


def append(tenv: TestEnv, name: str, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        body = json.dumps(text(name, i)).encode()
        assert http_unix(tenv.socket, "POST", f"/v1/stream/{name}", body, JSON).status == 204


def head(tenv: TestEnv, name: str) -> dict[str, str]:
    got = http_unix(tenv.socket, "HEAD", f"/v1/stream/{name}")
    assert got.status == 200, got
    return got.headers


def first(tenv: TestEnv, name: str) -> int:
    return int(head(tenv, name)["chanctl-first-offset"].split("_")[0])


def read_all(tenv: TestEnv, name: str, offset: str = "-1") -> list[str]:
    out: list[str] = []
    while True:
        got = http_unix(tenv.socket, "GET", f"/v1/stream/{name}?offset={offset}")
        assert got.status == 200, got
        out += got.json()
        offset = got.headers["stream-next-offset"]
        if got.headers.get("stream-up-to-date") == "true":
            return out


def listing(tenv: TestEnv) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in http_unix(tenv.socket, "GET", "/v1/channels").json()}


def test_limits_are_enforced_and_survive_a_restart(
    tenv: TestEnv, start_daemon: StartDaemon
) -> None:
    daemon = start_daemon(*FAST, "--max-age", "1d", store="local")
    create(tenv, "r", {"Chanctl-Max-Messages": "10"})
    append(tenv, "r", 60)
    wait_for(lambda: first(tenv, "r") > 0, 10, "the sweep to drop old segments of r")
    time.sleep(0.6)  # a few more sweeps: whatever one that ran mid-appends left over is gone
    low = first(tenv, "r")
    assert 60 - low >= 10  # never fewer than the limit asks for
    gone = http_unix(tenv.socket, "GET", f"/v1/stream/r?offset={off(low - 1)}")
    assert gone.status == 410 and gone.json()["status"] == 410
    kept = read_all(tenv, "r")
    assert kept == [text("r", i) for i in range(low, 60)]  # -1 starts at the data
    assert read_all(tenv, "r", off(low)) == kept
    shown = head(tenv, "r")
    assert (shown["chanctl-max-messages"], shown["chanctl-max-age"]) == ("10", "86400")
    assert listing(tenv)["r"]["retention"] == {
        "max_age_s": 86400,
        "max_bytes": None,
        "max_messages": 10,
    }

    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(20) == 0
    start_daemon(*FAST, "--max-age", "1d", store="local")
    assert head(tenv, "r")["chanctl-max-messages"] == "10"
    assert create(tenv, "r", {"Chanctl-Max-Messages": "10"}) == 200  # same config
    refused = http_unix(tenv.socket, "PUT", "/v1/stream/r", b"", JSON)
    assert refused.status == 409 and "retention" in refused.json()["error"]
    assert read_all(tenv, "r")[0] == text("r", first(tenv, "r"))


def test_a_fork_keeps_its_source_history_until_deleted(
    tenv: TestEnv, start_daemon: StartDaemon
) -> None:
    start_daemon(*FAST, store="local")
    keep5 = {"Chanctl-Max-Messages": "5"}
    for name in ("src", "control"):
        create(tenv, name, keep5)
        append(tenv, name, 3)  # all in the active segment: nothing can be dropped yet
    create(tenv, "fork", {"Stream-Forked-From": "/v1/stream/src", "Stream-Fork-Offset": off(3)})
    append(tenv, "fork", 3)
    for name in ("src", "control"):
        append(tenv, name, 37, start=3)  # now many segments over the limit, in both
    before = read_all(tenv, "fork")
    assert before == [text("src", i) for i in range(3)] + [text("fork", i) for i in range(3)]
    # Same limits, same data, no fork: once the sweep has trimmed "control" it has seen "src".
    wait_for(lambda: first(tenv, "control") > 0, 10, "the sweep to trim the unforked channel")
    time.sleep(0.6)  # a few more sweeps
    assert first(tenv, "src") == 0
    assert read_all(tenv, "fork") == before
    assert http_unix(tenv.socket, "DELETE", "/v1/stream/fork").status == 204
    wait_for(lambda: first(tenv, "src") > 0, 10, "the source to be trimmed once the fork is gone")


def test_retention_flags_round_trip_and_are_validated(tenv: TestEnv) -> None:
    base = ["--socket", str(tenv.socket), "--data-dir", str(tenv.data_dir)]
    flags = ["--max-age", "90m", "--max-bytes", "1000", "--max-messages", "7"]
    opts = parse_argv([*base, *flags, "--segment-bytes", "4096", "--retention-interval", "0.5"])
    assert parse_argv(to_argv(opts)) == opts
    settings = build_settings(opts)
    assert settings.default_retention == Retention(max_age_s=5400, max_bytes=1000, max_messages=7)
    assert (settings.segment_bytes, settings.retention_interval_s) == (4096, 0.5)
    assert build_settings(parse_argv(base)).default_retention == Retention()
    for bad in (["--max-age", "7w"], ["--max-bytes", "0"], ["--segment-bytes", "10"]):
        with pytest.raises(UsageError, match=bad[0]):
            build_settings(parse_argv([*base, *bad]))


@pytest.mark.parametrize(
    "command", [["-m", "chanctl.daemon"], ["-m", "chanctl.cli", "daemon", "start"]]
)
def test_help_shows_the_retention_flags_only(tenv: TestEnv, command: list[str]) -> None:
    run = subprocess.run(
        [sys.executable, *command, "--help"], capture_output=True, text=True, env=tenv.env
    )
    for flag in ("--max-age", "--max-bytes", "--max-messages"):
        assert flag in run.stdout
    assert "--segment-bytes" not in run.stdout and "--retention-interval" not in run.stdout


def test_a_bad_default_is_refused_before_starting(tenv: TestEnv) -> None:
    run = cli(tenv, "daemon", "start", "--foreground", "--max-messages", "0")
    assert run.returncode == 2 and "--max-messages" in run.stderr
