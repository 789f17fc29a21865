"""Helpers for the CLI tests: run the real `chanctl` entry point, read a child's output with a
deadline (never a bare sleep)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from daemonkit import TestEnv

STREAM_WAIT_S = 30.0


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
        self,
        *args: str,
        input: bytes | str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Run:
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(
            self.argv(*args),
            input=data,
            capture_output=True,
            timeout=timeout,
            env=self.env(env),
            cwd=self.tenv.root,
            stdin=None if data is not None else subprocess.DEVNULL,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr.decode(errors="replace"))

    def ok(self, *args: str, **kwargs: Any) -> Run:
        """Run and insist on exit 0 (showing stderr otherwise)."""
        run = self(*args, **kwargs)
        assert run.code == 0, f"chanctl {' '.join(args)} exited {run.code}: {run.err}"
        return run

    def popen(
        self, *args: str, env: Mapping[str, str] | None = None, **kwargs: Any
    ) -> subprocess.Popen[bytes]:
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(self.argv(*args), env=self.env(env), cwd=self.tenv.root, **kwargs)


def read_until(stream: IO[bytes], marker: bytes, timeout: float = STREAM_WAIT_S) -> bytes:
    """Read a child's pipe until ``marker`` has arrived; fail after ``timeout`` seconds."""
    fd = stream.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {marker!r}; got {data[-500:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"stream ended before {marker!r}; got {data[-500:]!r}")
            data += chunk
    return data


def read_all(stream: IO[bytes], timeout: float = STREAM_WAIT_S) -> bytes:
    """Everything a child writes until it closes the pipe (bounded by ``timeout``)."""
    fd = stream.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"stream still open after {timeout}s; got {data[-500:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                return data
            data += chunk
