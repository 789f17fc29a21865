"""``chanctl doctor`` (issue 9): one line per check, the fix under each failure, exit 1 on any.

Each case is a real situation: a healthy daemon on the local-disk engine, the same with its
socket or token file loosened, no daemon at all, a daemon acknowledging before fsync, and a
NATS backend that is up and then killed. Output is plain (``ok``/``FAIL``/``warn``) because
stdout is a pipe here; ``--json`` carries the same checks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import natskit
from clikit import Chanctl
from daemonkit import StartDaemon, TestEnv

from chanctl import __version__

NAMES = ["socket", "daemon", "version", "data dir", "disk", "fsync", "service", "tcp", "nats"]


def line(text: str, name: str) -> str:
    """The line of check ``name`` and its fix line, if any."""
    lines = text.splitlines()
    for i, row in enumerate(lines):
        if row[5:].startswith(name + " "):
            fix = lines[i + 1] if i + 1 < len(lines) and "fix: " in lines[i + 1] else ""
            return row + ("\n" + fix.strip() if fix else "")
    raise AssertionError(f"no {name!r} check in:\n{text}")


def test_healthy_then_loosened_modes(tenv: TestEnv, start_daemon: StartDaemon) -> None:
    start_daemon(store="local")
    ch = Chanctl(tenv)
    ch.ok("pub", "doc", "hello")  # so the data directory has channel files to check
    healthy = ch("doctor")
    assert healthy.code == 0, healthy.text
    assert [row[:5] for row in healthy.lines] == ["ok   "] * len(NAMES), healthy.text
    assert [row[5:].split("  ")[0].strip() for row in healthy.lines] == NAMES
    assert "daemon and CLI are both" in line(healthy.text, "version")
    report = json.loads(ch("doctor", "--json").text)
    assert report["ok"] is True
    assert [c["name"] for c in report["checks"]] == NAMES
    assert {c["status"] for c in report["checks"]} == {"ok"}

    os.chmod(tenv.socket, 0o666)
    loose = ch("doctor")
    assert loose.code == 1
    assert line(loose.text, "socket") == (
        f"FAIL socket    {tenv.socket}: mode 0666, not 0600\nfix: chmod 600 {tenv.socket}"
    )
    os.chmod(tenv.socket, 0o600)

    tenv.token_file.parent.mkdir(mode=0o700, exist_ok=True)
    tenv.token_file.write_text("x" * 43 + "\n")
    os.chmod(tenv.token_file, 0o644)
    leaky = ch("doctor", "--json")
    assert leaky.code == 1
    tcp = {c["name"]: c for c in json.loads(leaky.text)["checks"]}["tcp"]
    assert tcp["status"] == "fail" and "mode 0644, not 0600" in tcp["detail"]
    assert tcp["fix"].startswith(f"chmod 600 {tenv.token_file}")
    os.chmod(tenv.token_file, 0o600)

    os.chmod(tenv.data_dir, 0o755)
    open_data = ch("doctor")
    assert open_data.code == 1
    assert f"fix: chmod 700 {tenv.data_dir}" in line(open_data.text, "data dir")
    os.chmod(tenv.data_dir, 0o700)
    assert ch("doctor").code == 0


def test_stopped_daemon_fails_with_the_start_hint(tenv: TestEnv) -> None:
    done = Chanctl(tenv)("doctor")
    assert done.code == 1
    assert line(done.text, "daemon") == (
        "FAIL daemon    not reachable: no chanctl daemon is running (nothing listens on "
        f"{tenv.socket})\nfix: chanctl daemon start"
    )
    assert line(done.text, "version").startswith("skip version   daemon not reachable")


def test_an_older_daemon_still_running_fails_the_version_check(
    tenv: TestEnv, start_daemon: StartDaemon
) -> None:
    """After an upgrade the old daemon keeps running until restarted: the real daemon, made to
    report an older version by a sitecustomize on its PYTHONPATH."""
    old = tenv.root / "old"
    old.mkdir()
    (old / "sitecustomize.py").write_text('import chanctl\nchanctl.__version__ = "0.0.1-old"\n')
    start_daemon(env={"PYTHONPATH": str(old)})
    done = Chanctl(tenv)("doctor")
    assert done.code == 1
    assert line(done.text, "version") == (
        f"FAIL version   daemon is 0.0.1-old, this CLI is {__version__}\n"
        "fix: chanctl daemon stop && chanctl daemon start"
    )


def test_lazy_fsync_is_a_warning_that_explains_the_risk(
    tenv: TestEnv, start_daemon: StartDaemon
) -> None:
    start_daemon("--fsync", "interval:50", store="local")
    done = Chanctl(tenv)("doctor")
    assert done.code == 0, done.text  # warnings do not fail the check
    fsync = line(done.text, "fsync")
    assert fsync.startswith(
        "warn fsync     interval:50: appends acknowledged in the last 50 ms are lost on a "
        "power loss or kernel crash"
    )
    assert "fix: restart the daemon with --fsync always" in fsync


def test_nats_backend_up_then_down(
    tenv: TestEnv, tmp_path: Path, start_daemon: StartDaemon
) -> None:
    node = natskit.single(tmp_path)
    ch = Chanctl(tenv)
    try:
        start_daemon("--nats-sync", "always", store=node.url)
        up = ch("doctor")
        assert up.code == 0, up.text
        assert line(up.text, "nats") == f"ok   nats      {node.url} answer"
        assert line(up.text, "fsync") == (
            "ok   fsync     nats:R1,sync_interval=always: the server syncs each append before "
            "acknowledging"
        )
        node.kill()
        down = ch("doctor")
        assert down.code == 1
        nats = line(down.text, "nats")
        assert nats.startswith(f"FAIL nats      no NATS server answers ({node.url}: ")
        assert nats.endswith("fix: start nats-server, or fix --store in the daemon's options")
    finally:
        node.stop()
