"""``--limit NAME=VALUE``: the one daemon flag that sets any field of ``Limits``.

Guards against a flag that silently ignores a misspelt limit, accepts a value the daemon would
misbehave with (zero, negative, infinite), or is lost when ``chanctl daemon start`` re-executes
the daemon with ``to_argv``.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import psutil
import pytest
from chanctl.daemon.config import Limits
from chanctl.daemon.options import build_settings, parse_argv, to_argv
from daemonkit import TestEnv, cli

from chanctl.errors import UsageError


def test_limits_are_set_typed_and_survive_the_argv_round_trip(tenv: TestEnv) -> None:
    base = ["--socket", str(tenv.socket), "--data-dir", str(tenv.data_dir)]
    opts = parse_argv(
        [*base, "--limit", "write_deadline_s=2.5", "--limit", "max-live-readers=7"]
        + ["--limit", "max_live_readers=9", "--header-read-timeout", "3"]
    )
    assert parse_argv(to_argv(opts)) == opts
    limits = build_settings(opts).limits
    assert limits == dataclasses.replace(
        Limits(), write_deadline_s=2.5, max_live_readers=9, header_read_timeout_s=3.0
    )
    assert isinstance(limits.max_live_readers, int)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("max_readers=5", "max_live_readers_per_peer"),  # unknown: the known names are listed
        ("write_deadline_s", "expected NAME=VALUE"),
        ("max_live_readers=2.5", "positive integer"),
        ("max_live_readers=0", "positive integer"),
        ("write_deadline_s=-1", "positive number"),
        ("write_deadline_s=inf", "positive number"),
    ],
)
def test_bad_limits_are_refused_by_name(tenv: TestEnv, item: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        build_settings(parse_argv(["--socket", str(tenv.socket), "--limit", item]))


def test_the_daemon_refuses_to_start_with_an_unknown_limit(tenv: TestEnv) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "chanctl.daemon", "--foreground", "--limit", "nope=1"],
        env=tenv.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode != 0
    assert "invalid --limit 'nope=1'" in res.stderr
    assert all(f.name in res.stderr for f in dataclasses.fields(Limits)), res.stderr


def test_cli_start_and_install_pass_limits_on(tenv: TestEnv) -> None:
    """`chanctl daemon start` and `daemon install` take --limit too, check it before spawning
    or writing anything, and hand it to the daemon they start or the unit they write."""
    bad = cli(tenv, "daemon", "start", "--limit", "nope=1")
    assert bad.returncode == 2, bad.stderr
    assert "invalid --limit 'nope=1'" in bad.stderr
    assert not tenv.socket.exists()
    unit = cli(tenv, "daemon", "install", "--dry-run", "--limit", "max_live_readers=5")
    assert unit.returncode == 0, unit.stderr
    assert "--limit max_live_readers=5" in unit.stdout
    started = cli(tenv, "daemon", "start", "--store", "memory", "--limit", "max_live_readers=5")
    assert started.returncode == 0, started.stderr
    try:
        pid = int(json.loads(cli(tenv, "daemon", "status", "--json").stdout)["pid"])
        cmdline = psutil.Process(pid).cmdline()
        assert cmdline[cmdline.index("--limit") + 1] == "max_live_readers=5", cmdline
    finally:
        cli(tenv, "daemon", "stop")
