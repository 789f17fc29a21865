"""`chanctl fsck`: check a stopped daemon's data directory offline, record by record.

The checks themselves live with the engine (``daemon/store/local/fsck.py``, built on recovery's
replay), imported here only when the command runs so the CLI start-up stays light.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .. import paths
from ..errors import ConfigError, DaemonAlreadyRunning, ExitCode, NotFound, UnsafePath
from .options import JsonOpt

if TYPE_CHECKING:
    from ..daemon.store.local.fsck import ChannelCheck, Problem


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
            help="The daemon's data directory (default: the daemon's, env CHANCTL_DATA_DIR).",
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Check a stopped daemon's channel files offline: every record's checksum and framing.

    Prints "ok" or "CORRUPT at offset ..." per channel and exits 1 when any channel is
    corrupt. A torn tail of a channel's last segment is reported but is not an error (start-up
    truncates it). Refuses while a daemon uses the data directory. Read-only: repair is not
    available yet.
    """
    data = Path(data_dir).expanduser().absolute() if data_dir else paths.data_dir()
    if not data.is_dir():
        raise ConfigError(
            f"no data directory at {data}", hint="pass the daemon's data directory with --data-dir"
        )
    from ..daemon.config import Limits
    from ..daemon.store.local.disk import Disk
    from ..daemon.store.local.fsck import channel_dirs_blocking, check_channel_blocking
    from ..daemon.store.local.records import max_record_bytes

    failed = False
    lock_fd = _lock_data_dir(data)
    try:
        disk = Disk()
        root = str(data / "channels")
        channels = channel_dirs_blocking(disk, root)
        if names:
            known = dict(channels)
            missing = [n for n in names if n not in known]
            if missing:
                raise NotFound(f"no channel named {missing[0]!r} in {data}")
            channels = [(n, known[n]) for n in dict.fromkeys(names)]
        elif not channels and not json_:
            sys.stdout.write(f"no channels in {data}\n")
        max_record = max_record_bytes(Limits().max_body_bytes)
        for name, chan_dir in channels:
            result = check_channel_blocking(disk, name, chan_dir, max_record)
            failed = failed or not result.ok
            out = json.dumps(_to_dict(result)) if json_ else _render(result)
            sys.stdout.write(out + "\n")
            sys.stdout.flush()
    finally:
        if lock_fd is not None:
            os.close(lock_fd)
    if failed:
        raise typer.Exit(int(ExitCode.ERROR))


def _lock_data_dir(data: Path) -> int | None:
    """Take the daemon's data-directory flock (non-blocking) and hold it for the whole check,
    so no daemon starts meanwhile; refuse when one holds it. None: no lock file (never served),
    and none is created (fsck writes nothing)."""
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
        raise DaemonAlreadyRunning(
            f"a chanctl daemon is using {data} ({who} holds {lock}); fsck checks a stopped "
            "daemon's files",
            hint="stop it first with `chanctl daemon stop`",
        ) from None
    return fd


def _problem(p: Problem | None) -> dict[str, Any] | None:
    if p is None:
        return None
    from ..protocol import format_offset

    offset = format_offset(p.seq) if p.seq is not None else None
    return {"offset": offset, "segment": p.file, "byte": p.pos, "reason": p.reason}


def _to_dict(r: ChannelCheck) -> dict[str, Any]:
    return {
        "channel": r.name,
        "ok": r.ok,
        "messages": r.messages,
        "segments": r.segments,
        "corrupt": _problem(r.corrupt),
        "torn_tail": _problem(r.torn_tail),
        "path": r.path,
    }


def _render(r: ChannelCheck) -> str:
    from ..protocol import format_offset

    if r.corrupt is not None:
        p = r.corrupt
        if p.seq is None:
            return f"{r.name}: CORRUPT ({p.file}): {p.reason}"
        where = f"segment {p.file}, byte {p.pos}"
        return f"{r.name}: CORRUPT at offset {format_offset(p.seq)} ({where}): {p.reason}"
    line = f"{r.name}: ok: {r.messages} messages in {r.segments} segments"
    if r.torn_tail is not None:
        p = r.torn_tail
        line += (
            f"; torn tail (would be truncated at start-up) in segment {p.file}, "
            f"byte {p.pos}: {p.reason}"
        )
    return line
