"""Fixtures for end-to-end CLI tests: the real `chanctl` console entry point as a subprocess
against a real daemon subprocess, in a private set of XDG directories (tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from daemonkit import DaemonProcess, TestEnv


@dataclass
class Run:
    """The outcome of one `chanctl` process."""

    code: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode()

    @property
    def lines(self) -> list[str]:
        return self.out.decode().splitlines()


@dataclass
class Chanctl:
    """Runs `python -m chanctl.entry ARGS` (exactly what the `chanctl` script runs)."""

    tenv: TestEnv

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "chanctl.entry", *args]

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**self.tenv.env, **(extra or {})}

    def __call__(
        self, *args: str, input: bytes | str | None = None, env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Run:
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(
            self.argv(*args), input=data, capture_output=True, timeout=timeout,
            env=self.env(env), cwd=self.tenv.root,
            stdin=None if data is not None else subprocess.DEVNULL,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr.decode(errors="replace"))

    def ok(self, *args: str, **kwargs: Any) -> Run:
        """Run and insist on exit 0 (showing stderr otherwise)."""
        run = self(*args, **kwargs)
        assert run.code == 0, f"chanctl {' '.join(args)} exited {run.code}: {run.err}"
        return run

    def popen(self, *args: str, env: Mapping[str, str] | None = None,
              **kwargs: Any) -> subprocess.Popen[bytes]:
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(self.argv(*args), env=self.env(env), cwd=self.tenv.root,
                                **kwargs)


@pytest.fixture
def ch(daemon: DaemonProcess, tenv: TestEnv) -> Chanctl:
    """`chanctl` against a running daemon (in-memory store: fast, nothing to recover)."""
    return Chanctl(tenv)


@pytest.fixture
def ch_nodaemon(tenv: TestEnv) -> Chanctl:
    """`chanctl` with no daemon running yet (auto-start tests)."""
    return Chanctl(tenv)
