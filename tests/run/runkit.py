"""Helpers for the `chanctl run` tests: wrappers as background processes, the helper jobs in
``helpers/``, and reading a channel with the library (fast; the CLI is what is under test)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clikit import Chanctl
from daemonkit import wait_for

import chanctl

HELPERS = Path(__file__).parent / "helpers"
PY = sys.executable


def helper(name: str, *args: object) -> list[str]:
    """The argv of a helper job."""
    return [PY, str(HELPERS / name), *map(str, args)]


@dataclass
class Wrapper:
    """`chanctl run` running in the background; its stdout and stderr go to files."""

    proc: subprocess.Popen[bytes]
    name: str
    out: Path
    err: Path

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    @property
    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    @property
    def stdout(self) -> bytes:
        return self.out.read_bytes()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def start_run(ch: Chanctl, name: str, *cmd: str, opts: tuple[str, ...] = ()) -> Wrapper:
    out = ch.tenv.root / f"run-{name.replace('/', '_')}-{time.monotonic_ns()}"
    with open(f"{out}.out", "wb") as so, open(f"{out}.err", "wb") as se:
        proc = ch.popen("run", name, *opts, "--", *cmd, stdout=so, stderr=se)
    return Wrapper(proc, name, Path(f"{out}.out"), Path(f"{out}.err"))


def client() -> chanctl.Client:
    """A library client of the test's daemon (the tenv fixture points this process at it)."""
    return chanctl.Client(autostart=False, reconnect_timeout=5.0)


def records(name: str) -> list[dict[str, Any]]:
    """Every message of the channel's output lane, as `tail --json` records."""
    with client() as c:
        return [m.to_record() for m in c.replay(name)]


def wait_record(
    name: str, match: Callable[[dict[str, Any]], bool], timeout: float = 20.0
) -> dict[str, Any]:
    """Poll the channel until a record matches (a deadline, never a bare sleep)."""
    found: list[dict[str, Any]] = []

    def present() -> bool:
        try:
            found[:] = [r for r in records(name) if match(r)]
        except chanctl.errors.ChannelNotFound:
            return False
        return bool(found)

    wait_for(present, timeout, f"a matching record in {name!r}")
    return found[0]


def acks(name: str) -> list[dict[str, Any]]:
    return [json.loads(r["data"]) for r in records(name) if r["type"] == "ack"]


def of_type(name: str, type_: str) -> list[dict[str, Any]]:
    return [r for r in records(name) if r["type"] == type_]


def line_count(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0
