"""`chanctl fsck`: check every record of some or all channels, on the running daemon or offline.

Without ``--data-dir`` the running daemon checks its own channels (``Client.fsck``; it is never
started for this). With ``--data-dir`` (or ``--repair``) the files of a stopped daemon are
checked here, by the engine's own code (``daemon/store/local/fsck.py`` and ``repair.py``),
imported only when the command runs so the CLI start-up stays light. Both print the same lines.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .. import paths
from ..errors import (
    ChanctlError,
    ConfigError,
    ConnectionLost,
    DaemonAlreadyRunning,
    DaemonNotRunning,
    DaemonUnavailable,
    ExitCode,
    NotFound,
    UnsafePath,
)
from .options import JsonOpt

if TYPE_CHECKING:
    from ..daemon.store.base import ChannelCheck
    from ..daemon.store.local.disk import Disk
    from ..protocol import FsckResult

UNITS = {"local": "segments", "nats": "records"}


def fsck(
    names: Annotated[
        list[str] | None,
        typer.Argument(metavar="[NAME...]", help="Channels to check (default: all of them)."),
    ] = None,
    data_dir: Annotated[
        str | None,
        typer.Option(
            "--data-dir",
            metavar="DIR",
            help="Check a stopped daemon's data directory offline (default with --repair: "
            "env CHANCTL_DATA_DIR, else the user data directory).",
        ),
    ] = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Offline, stopped daemon only: cut each corrupt channel at its first bad "
            "record, saving what is cut off beside the log. Asks first.",
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("-y", "--yes", help="Repair without asking.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Verify every record (checksum, framing, sequence) of some or all channels.

    Without --data-dir the running daemon checks its channels while it serves them (it is not
    started for this); a corrupt channel is quarantined at once, as a read reaching the damage
    would. With --data-dir, a stopped daemon's files are checked offline. Prints "ok" or
    "CORRUPT at offset ..." per channel and exits 1 when a channel is (still) corrupt. Offline,
    a torn tail of a channel's last segment is reported but is not an error (start-up truncates
    it). --repair truncates a corrupt channel at its first bad record, only with consent (a
    prompt on a terminal, or --yes); nothing is deleted.
    """
    if repair and data_dir is None:
        _refuse_if_daemon_runs()
    if repair and not yes and not (sys.stdin.isatty() and sys.stderr.isatty()):
        from ..errors import UsageError

        raise UsageError(
            "refusing to repair without consent: stdin is not a terminal to ask on",
            hint="add --yes to truncate corrupt channels at their first bad record (the cut-off "
            "bytes are saved beside the log)",
        )
    if data_dir is None and not repair:
        failed = _online(names, json_)
    else:
        data = Path(data_dir).expanduser().absolute() if data_dir else paths.data_dir()
        failed = _offline(data, names, json_, repair, yes)
    if failed:
        raise typer.Exit(int(ExitCode.ERROR))


# -- online ---------------------------------------------------------------------------------------


def _online(names: list[str] | None, json_: bool) -> bool:
    from ..client import Client
    from ._common import Globals

    client = Client(Globals.url, autostart=False)
    progress = _Progress()
    failed = False
    try:
        for result in client.fsck(names or None, on_progress=progress.update):
            failed = failed or not result.ok
            progress.before_output()
            _emit(result, json_)
    except DaemonUnavailable as exc:
        if isinstance(exc, ConnectionLost):  # it was there, then went away: say so
            raise
        raise DaemonNotRunning(
            f"no chanctl daemon is running at {client.endpoint.url} to check its channels",
            hint="check a stopped daemon's files offline with `chanctl fsck --data-dir "
            f"{paths.data_dir()}`",
        ) from None
    finally:
        progress.clear()
        client.disconnect()
    return failed


def _refuse_if_daemon_runs() -> None:
    """``--repair`` rewrites files: never while a daemon serves them. The data-directory lock
    covers a daemon on that directory; this also covers one the CLI reaches elsewhere."""
    from ..client import Client
    from ._common import Globals

    client = Client(Globals.url, autostart=False, timeout=2.0, reconnect_timeout=0.0)
    try:
        client.health()
    except ChanctlError:
        return
    finally:
        client.disconnect()
    raise DaemonAlreadyRunning(
        f"a chanctl daemon is running at {client.endpoint.url}; fsck --repair changes a stopped "
        "daemon's files only",
        hint="stop it first with `chanctl daemon stop`, then run `chanctl fsck --repair`",
    )


# -- offline --------------------------------------------------------------------------------------


def _offline(data: Path, names: list[str] | None, json_: bool, repair: bool, yes: bool) -> bool:
    if not data.is_dir():
        raise ConfigError(
            f"no data directory at {data}", hint="pass the daemon's data directory with --data-dir"
        )
    from ..daemon.config import Limits
    from ..daemon.store.local.disk import Disk
    from ..daemon.store.local.fsck import channel_dirs_blocking, check_channel_blocking
    from ..daemon.store.local.records import max_record_bytes

    failed = False
    lock_fd = _lock_data_dir(data, repair)
    try:
        disk = Disk()
        channels = channel_dirs_blocking(disk, str(data / "channels"))
        if names:
            known = dict(channels)
            missing = [n for n in names if n not in known]
            if missing:
                raise NotFound(f"no channel named {missing[0]!r} in {data}")
            channels = [(n, known[n]) for n in dict.fromkeys(names)]
        elif not channels and not json_:
            sys.stdout.write(f"no channels in {data}\n")
        max_record = max_record_bytes(Limits().max_body_bytes)
        progress = _Progress()
        for i, (name, chan_dir) in enumerate(channels):
            progress.update(i, len(channels))
            check = check_channel_blocking(disk, name, chan_dir, max_record)
            if repair and not check.ok:
                progress.clear()  # a prompt may follow
            progress.before_output()
            if not json_:
                _emit(check.to_wire(), False)
            extra = _repair(disk, check, max_record, json_, yes) if repair and not check.ok else {}
            failed = failed or (not check.ok and "repaired" not in extra)
            if json_:
                _emit(check.to_wire(), True, extra)
        progress.clear()
    finally:
        if lock_fd is not None:
            os.close(lock_fd)
    return failed


def _repair(
    disk: Disk, check: ChannelCheck, max_record: int, json_: bool, yes: bool
) -> dict[str, object]:
    """Ask, then cut the channel at its first bad record; what to add to its ``--json`` line."""
    from ..daemon.store.local.repair import NotRepairable, repair_blocking
    from ..protocol import format_offset

    bad = check.corrupt
    assert bad is not None
    if bad.seq is None:
        sys.stderr.write(f"{check.name}: cannot repair: {bad.file}: {bad.reason}\n")
        return {"repair_error": f"{bad.file}: {bad.reason}"}
    offset = format_offset(bad.seq)
    if not yes:
        sys.stderr.write(
            f"truncate channel {check.name} at offset {offset}, keeping every message before "
            "it (the rest is saved beside the log)? [y/N] "
        )
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return {}
    try:
        done = repair_blocking(disk, check, max_record)
    except (NotRepairable, OSError) as exc:
        sys.stderr.write(f"{check.name}: repair failed: {exc}\n")
        return {"repair_error": str(exc)}
    if not json_:
        where = ", ".join(done.saved) if done.saved else "nothing was cut off"
        sys.stdout.write(
            f"{check.name}: repaired: the channel now ends at offset {done.offset}; "
            f"cut-off data saved to {where}\n"
        )
    return {"repaired": {"offset": done.offset, "saved": done.saved}}


def _lock_data_dir(data: Path, repair: bool) -> int | None:
    """Take the daemon's data-directory flock (non-blocking) and hold it for the whole check,
    so no daemon starts meanwhile; refuse when one holds it. None: no lock file (never served),
    and none is created (a check writes nothing)."""
    import fcntl

    lock = paths.data_lock_file(data)
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnsafePath(f"cannot open lock file {lock}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        from ..daemon.instance import read_holder

        pid = read_holder(fd).get("pid")
        os.close(fd)
        who = f"pid {pid}" if isinstance(pid, int) else "another process"
        what = "--repair changes" if repair else "--data-dir checks"
        raise DaemonAlreadyRunning(
            f"a chanctl daemon is using {data} ({who} holds {lock}); fsck {what} a stopped "
            "daemon's files",
            hint="stop it first with `chanctl daemon stop`"
            + ("" if repair else ", or drop --data-dir to have the running daemon check"),
        ) from None
    return fd


# -- output ---------------------------------------------------------------------------------------


class _Progress:
    """``checked N/T channels`` on stderr, on a terminal only, once a check takes a moment;
    redrawn at most ten times a second, and wiped before a result line goes to the same
    terminal."""

    DELAY_S = 0.5
    EVERY_S = 0.1

    def __init__(self) -> None:
        from ._common import Globals

        self.on = sys.stderr.isatty() and not Globals.quiet
        self.shared = self.on and sys.stdout.isatty()
        self.start = time.monotonic()
        self.drawn = 0.0
        self.shown = False

    def update(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.on or not total or now - self.start < self.DELAY_S:
            return
        if self.shown and now - self.drawn < self.EVERY_S and done < total:
            return
        sys.stderr.write(f"\rfsck: checked {done}/{total} channels\x1b[K")
        sys.stderr.flush()
        self.drawn, self.shown = now, True

    def before_output(self) -> None:
        if self.shared:
            self.clear()

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.shown = False


def _emit(r: FsckResult, json_: bool, extra: dict[str, object] | None = None) -> None:
    out = json.dumps({**r.to_json(), **(extra or {})}) if json_ else _render(r)
    sys.stdout.write(out + "\n")
    sys.stdout.flush()


def _render(r: FsckResult) -> str:
    if r.corrupt is not None:
        p = r.corrupt
        if p.offset is None:
            return f"{r.channel}: CORRUPT ({p.segment}): {p.reason}"
        unit = "record" if r.backend == "nats" else "segment"
        where = f"{unit} {p.segment}, byte {p.byte}" if r.backend != "nats" else p.segment
        return f"{r.channel}: CORRUPT at offset {p.offset} ({where}): {p.reason}"
    unit = UNITS.get(r.backend, "parts")
    line = f"{r.channel}: ok: {r.messages} messages in {r.segments} {unit}"
    if r.backend == "nats":
        line += " (each decodes as a chanctl record; JetStream checks its own checksums)"
    elif r.backend == "memory":
        line = f"{r.channel}: ok: {r.messages} messages (in memory: nothing stored to check)"
    if r.torn_tail is not None:
        p = r.torn_tail
        line += (
            f"; torn tail (would be truncated at start-up) in segment {p.segment}, "
            f"byte {p.byte}: {p.reason}"
        )
    return line
