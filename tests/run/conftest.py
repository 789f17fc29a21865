"""Fixtures for the `chanctl run` / steering tests: the real CLI against a real daemon.

The CLI helpers live in tests/cli/clikit.py; that folder is put on ``sys.path`` here so this
folder can be run on its own (pytest adds a test folder to the path only once it collects it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "cli"))

from clikit import Chanctl  # noqa: E402
from daemonkit import DaemonProcess, TestEnv  # noqa: E402


@pytest.fixture
def ch(daemon: DaemonProcess, tenv: TestEnv) -> Chanctl:
    """`chanctl` against a running daemon (in-memory store)."""
    return Chanctl(tenv)
