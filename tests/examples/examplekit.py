"""Helpers for the examples' tests: where the examples are, and the processes a test runs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class Procs:
    """Processes a test started; whatever is still running at the end is killed."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.started: list[subprocess.Popen[str]] = []

    def python(self, env: Mapping[str, str], script: str, *args: str) -> subprocess.Popen[str]:
        return self.spawn(env, [sys.executable, str(EXAMPLES / script), *args])

    def spawn(self, env: Mapping[str, str], argv: list[str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            argv,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.cwd,
        )
        self.started.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
