"""Fixtures for end-to-end CLI tests: the real `chanctl` console entry point as a subprocess
against a real daemon subprocess, in a private set of XDG directories (tests/conftest.py)."""

from __future__ import annotations

import pytest
from clikit import Chanctl
from daemonkit import DaemonProcess, TestEnv


@pytest.fixture
def ch(daemon: DaemonProcess, tenv: TestEnv) -> Chanctl:
    """`chanctl` against a running daemon (in-memory store: fast, nothing to recover)."""
    return Chanctl(tenv)


@pytest.fixture
def ch_nodaemon(tenv: TestEnv) -> Chanctl:
    """`chanctl` with no daemon running yet (auto-start tests)."""
    return Chanctl(tenv)
