"""``--limit NAME=VALUE``: the one daemon flag that sets any field of ``Limits``.

Guards against a flag that silently ignores a misspelt limit, accepts a value the daemon would
misbehave with (zero, negative, infinite), or is lost when ``chanctl daemon start`` re-executes
the daemon with ``to_argv``.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from chanctl.daemon.config import Limits
from chanctl.daemon.options import build_settings, parse_argv, to_argv
from daemonkit import TestEnv

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
