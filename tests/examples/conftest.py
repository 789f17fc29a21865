"""Fixtures for the examples' tests: each example runs as its own processes against a real
daemon, exactly as examples/README.md tells a user to run it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from daemonkit import DaemonProcess, TestEnv
from examplekit import Procs


@pytest.fixture
def ex_env(tenv: TestEnv, daemon: DaemonProcess) -> dict[str, str]:
    """The environment of an example's processes: the test daemon, never an auto-started one."""
    return {
        **tenv.env,
        "CHANCTL_URL": f"unix://{tenv.socket}",
        "CHANCTL_NO_AUTOSTART": "1",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def procs(tenv: TestEnv) -> Iterator[Procs]:
    p = Procs(tenv.root)
    yield p
    p.kill_all()
