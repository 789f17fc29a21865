"""Shared fixtures: an isolated chanctl environment and real daemon processes inside it.

Every test gets its own XDG runtime/data/state/config directories under a short /tmp path, so
tests never see the developer's daemon, never collide with each other, and sockets stay under
the unix path-length limit. ``start_daemon`` starts as many daemons as a test needs and stops
all of them afterwards (terminate, wait, kill).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from daemonkit import DaemonProcess, StartDaemon, TestEnv

# Processes the tests start (`python -m chanctl.daemon`, `python -c ...`) must import the
# installed package, where daemon/ lives at chanctl/daemon. Run from the repo root, the cwd on
# sys.path would put the source folder chanctl/ (which has no daemon/ inside) first.
os.environ["PYTHONSAFEPATH"] = "1"


@pytest.fixture
def tenv(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestEnv]:
    """Isolated locations; also applied to this process so in-process path lookups agree."""
    env = TestEnv.create()
    for key in list(env.env):
        if key.startswith("XDG_"):
            monkeypatch.setenv(key, env.env[key])
    for key in ("CHANCTL_SOCKET", "CHANCTL_URL", "CHANCTL_DATA_DIR", "CHANCTL_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    yield env
    env.cleanup()


@pytest.fixture
def start_daemon(tenv: TestEnv) -> Iterator[StartDaemon]:
    """Factory: ``start_daemon(*flags, store=, foreground=, umask=, wait=True)``."""
    started: list[DaemonProcess] = []

    def start(*args: str, wait: bool = True, **kwargs: Any) -> DaemonProcess:
        proc = DaemonProcess(tenv, args, **kwargs)
        started.append(proc)
        if wait:
            proc.wait_ready()
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def daemon(start_daemon: StartDaemon) -> DaemonProcess:
    """A ready daemon on the default socket, in-memory store, logging to its stderr file."""
    return start_daemon()
