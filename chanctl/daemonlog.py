"""``chanctl daemon logs``: find where the daemon's log is, print its end, optionally follow it.

A daemon started with ``chanctl daemon start`` writes ``daemon.log`` in the state directory (its
lock file records the path); one run by systemd logs to stderr, which is the journal; one run by
launchd writes the agent's StandardErrorPath, the same ``daemon.log``. Following survives what
logrotate does to a file, like ``tail -F``: a truncated file is read again from its start and a
renamed one is left for the new file at the same path, once the old one has been read to its end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from . import daemonctl, paths, units
from .errors import ConfigError

POLL_S = 0.1
BLOCK = 64 * 1024


@dataclass(frozen=True)
class LogSource:
    """Where to read: a file, or the journal of the user's ``chanctl.service``."""

    file: Path | None  # None: the journal
    why: str


def locate(sock: Path) -> LogSource:
    """The log of the daemon on ``sock``, or of the one that would run there next."""
    if daemonctl.is_running(sock):
        holder = daemonctl.read_holder(sock)
        if isinstance(holder.get("log_file"), str):
            return LogSource(Path(holder["log_file"]), "the running daemon's log file")
        manager = holder.get("service_manager")
        if manager == "systemd":
            return LogSource(None, "the daemon runs under systemd, which keeps its log")
        if manager == "launchd":
            return LogSource(paths.log_file(), "the launchd agent's log file")
        raise ConfigError(
            f"the daemon (pid {holder.get('pid')}) runs in the foreground: its log goes to the "
            "stderr of whatever started it",
            hint="look there, or restart it with `chanctl daemon start` to log to a file",
        )
    if sys.platform != "darwin" and (units.systemd_user_dir() / units.SERVICE_UNIT).exists():
        return LogSource(None, "chanctl.service is installed; systemd keeps its log")
    return LogSource(paths.log_file(), "the log file of `chanctl daemon start`")


def journal_argv(lines: int | None, follow: bool) -> list[str]:
    argv = ["journalctl", "--user", "-u", units.SERVICE_UNIT, "--no-pager"]
    argv.append(f"--lines={'all' if lines is None else lines}")  # -n's argument is optional
    return argv + (["-f"] if follow else [])


def show_journal(lines: int | None, follow: bool) -> int:
    """Run journalctl with the same options; its exit status is ours."""
    argv = journal_argv(lines, follow)
    exe = shutil.which(argv[0])
    if exe is None:
        raise ConfigError(
            "the daemon logs to the systemd journal, but journalctl is not installed here",
            hint=f"run `{' '.join(argv)}` where the journal is readable",
        )
    try:
        return subprocess.call([exe, *argv[1:]])
    except KeyboardInterrupt:
        return 0


def last_lines_offset(f: BinaryIO, lines: int | None) -> int:
    """Where the last ``lines`` lines of ``f`` begin (0 for all), reading back from the end."""
    end = f.seek(0, os.SEEK_END)
    if lines is None:
        return 0
    if lines <= 0:
        return end
    pos, seen = end, 0
    tail_newline = True  # a final newline ends the last line; it does not start another
    while pos > 0:
        size = min(BLOCK, pos)
        pos -= size
        f.seek(pos)
        block = f.read(size)
        i = len(block)
        while True:
            i = block.rfind(b"\n", 0, i)
            if i < 0:
                break
            if tail_newline and pos + i == end - 1:
                tail_newline = False
                continue
            seen += 1
            if seen == lines:
                return pos + i + 1
        tail_newline = False
    return 0


def print_file(path: Path, lines: int | None, follow: bool, out: BinaryIO) -> int:
    """``tail -n LINES [-F] PATH``; returns the exit status (Ctrl-C while following is 0)."""
    try:
        return _print_file(path, lines, follow, out)
    except KeyboardInterrupt:
        return 0


def _print_file(path: Path, lines: int | None, follow: bool, out: BinaryIO) -> int:
    f: BinaryIO
    try:
        f = open(path, "rb")  # noqa: SIM115 - replaced on rotation, closed below
    except FileNotFoundError:
        if not follow:
            raise ConfigError(
                f"no daemon log at {path} yet",
                hint="it appears once `chanctl daemon start` (or the first command) starts one",
            ) from None
        sys.stderr.write(f"chanctl: waiting for {path} to appear\n")
        f = _wait_for(path)
        lines = None  # everything written since is new
    try:
        f.seek(last_lines_offset(f, lines))
        _copy(f, out)
        if not follow:
            return 0
        while True:
            f = _follow_once(path, f, out)
            time.sleep(POLL_S)
    finally:
        f.close()


def _copy(f: BinaryIO, out: BinaryIO) -> None:
    while chunk := f.read(BLOCK):
        out.write(chunk)
    out.flush()


def _wait_for(path: Path) -> BinaryIO:
    while True:
        try:
            return open(path, "rb")
        except FileNotFoundError:
            time.sleep(POLL_S)


def _follow_once(path: Path, f: BinaryIO, out: BinaryIO) -> BinaryIO:
    """Print what was appended; on truncation start over, on rotation switch files."""
    _copy(f, out)
    here = os.fstat(f.fileno())
    if here.st_size < f.tell():
        sys.stderr.write(f"chanctl: {path} was truncated; reading it from the start\n")
        f.seek(0)
        _copy(f, out)
        return f
    try:
        there = os.stat(path)
    except FileNotFoundError:
        return f  # moved away, the new one is not there yet: keep reading the old
    if (there.st_dev, there.st_ino) == (here.st_dev, here.st_ino):
        return f
    _copy(f, out)  # the last lines written to the old file before it was moved
    f.close()
    try:
        new = open(path, "rb")  # noqa: SIM115 - returned to the caller, which closes it
    except FileNotFoundError:
        return _wait_for(path)
    _copy(new, out)
    return new
