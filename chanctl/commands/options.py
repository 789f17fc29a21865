"""Typer option and argument declarations shared by the channel commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from ._common import complete_channels

ChannelArg = Annotated[
    str, typer.Argument(metavar="NAME", help="Channel name.", autocompletion=complete_channels)
]
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        metavar="URL",
        help="Daemon: unix:///PATH or http://HOST:PORT (env CHANCTL_URL; token in CHANCTL_TOKEN).",
    ),
]
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="Print nothing but the output.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
RawOpt = Annotated[bool, typer.Option("--raw", help="Message data only, byte-exact.")]
TimestampsOpt = Annotated[
    bool, typer.Option("-t", "--timestamps", help="Prefix each message with its RFC 3339 time.")
]
FromOpt = Annotated[
    str | None,
    typer.Option(
        "--from", metavar="OFFSET", help="Start at a message number, an offset, 'start' or 'now'."
    ),
]
SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since", metavar="WHEN", help="Start at a time: 5m, 1h30m, RFC 3339, 2026-01-02, today..."
    ),
]
TypeOpt = Annotated[
    list[str] | None,
    typer.Option("--type", metavar="TYPE", help="Only messages of this type (repeatable)."),
]
LinesOpt = Annotated[
    str, typer.Option("-n", "--lines", metavar="N|all", help="Start with the last N.")
]
NoFollowOpt = Annotated[bool, typer.Option("--no-follow", help="Print what is there and exit.")]
CursorOpt = Annotated[
    str | None,
    typer.Option(
        "--cursor",
        metavar="NAME",
        help="Resume after what this cursor last printed, and advance it (kept by the daemon).",
    ),
]
ExitStatusOpt = Annotated[
    bool, typer.Option("--exit-status", help="Exit with the wrapped job's exit code.")
]
TimeoutOpt = Annotated[
    str | None, typer.Option("--timeout", metavar="D", help="Give up after D (exit 124).")
]
UntilOpt = Annotated[
    str | None, typer.Option("--until", metavar="WHEN", help="Stop after this time.")
]
SpeedOpt = Annotated[
    float | None,
    typer.Option("--speed", metavar="X", help="Replay with the original gaps divided by X."),
]
RealtimeOpt = Annotated[
    bool, typer.Option("--realtime", help="Replay with the original timing (--speed 1).")
]


def read_window(
    *,
    lines: str | None = None,
    from_: str | None = None,
    since: str | None = None,
    until: str | None = None,
    timeout: str | None = None,
) -> dict[str, object]:
    """Parse the position/time flags into ``Client.tail``/``replay`` keywords (exit 2 on
    a bad value); flags left out are left out, so the library defaults apply."""
    from .. import timespec
    from ._common import usage

    parsers: dict[str, tuple[str | None, Callable[[str], object]]] = {
        "last": (lines, timespec.parse_lines),
        "start": (from_, timespec.parse_start),
        "since": (since, timespec.parse_when),
        "until": (until, timespec.parse_when),
        "timeout": (timeout, timespec.parse_duration),
    }
    try:
        return {key: parse(text) for key, (text, parse) in parsers.items() if text is not None}
    except ValueError as exc:
        usage(str(exc))
