"""`chanctl tail NAME`: the last messages, then live ones until the channel is closed."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import timespec
from ._common import make_client, usage
from .options import (
    ChannelArg,
    FromOpt,
    JsonOpt,
    QuietOpt,
    RawOpt,
    SinceOpt,
    TimestampsOpt,
    TypeOpt,
    UrlOpt,
)


def tail(
    name: ChannelArg,
    lines: Annotated[
        str, typer.Option("-n", "--lines", metavar="N|all", help="Start with the last N.")
    ] = "10",
    from_: FromOpt = None,
    since: SinceOpt = None,
    no_follow: Annotated[
        bool, typer.Option("--no-follow", help="Print what is there and exit.")
    ] = False,
    type_: TypeOpt = None,
    json_: JsonOpt = False,
    raw: RawOpt = False,
    timestamps: TimestampsOpt = False,
    cursor: Annotated[
        str | None,
        typer.Option("--cursor", metavar="NAME", help="Resume after what this cursor last "
                     "printed, and advance it (kept by the daemon)."),
    ] = None,
    exit_status: Annotated[
        bool, typer.Option("--exit-status", help="Exit with the wrapped job's exit code.")
    ] = False,
    timeout: Annotated[
        str | None, typer.Option("--timeout", metavar="D", help="Give up after D (exit 124).")
    ] = None,
    quiet: QuietOpt = False,
    url: UrlOpt = None,
) -> None:
    """Follow a channel: the last 10 messages, then live; exits 0 when it is closed.

    Examples: chanctl tail build; chanctl tail build -n all --no-follow --json
    """
    if json_ and raw:
        usage("--json and --raw cannot be combined")
    try:
        options = {
            "last": timespec.parse_lines(lines),
            "start": timespec.parse_start(from_) if from_ else None,
            "since": timespec.parse_when(since) if since else None,
            "timeout": timespec.parse_duration(timeout) if timeout else None,
        }
    except ValueError as exc:
        usage(str(exc))
    stream = make_client(url, quiet).tail(
        name, types=type_, follow=not no_follow, wait=not no_follow, cursor=cursor, **options
    )
    from ._stream import pump  # rendering code loads only when a command runs

    pump(stream, json_out=json_, raw=raw, timestamps=timestamps, marker=not (no_follow or quiet))
    if exit_status:
        raise typer.Exit(stream.exit_status() or 0)
