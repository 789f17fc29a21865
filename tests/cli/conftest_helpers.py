"""Small helpers for the CLI tests (importable: tests/cli is on sys.path under pytest)."""

from __future__ import annotations

import os
import select
import time
from typing import IO

STREAM_WAIT_S = 30.0


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
