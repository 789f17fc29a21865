"""`chanctl replay NAME`: history from the start (or a time), optionally at its original pace."""

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


def replay(
    name: ChannelArg,
    from_: FromOpt = None,
    since: SinceOpt = None,
    until: Annotated[
        str | None, typer.Option("--until", metavar="WHEN", help="Stop after this time.")
    ] = None,
    type_: TypeOpt = None,
    json_: JsonOpt = False,
    raw: RawOpt = False,
    timestamps: TimestampsOpt = False,
    speed: Annotated[
        float | None,
        typer.Option("--speed", metavar="X", help="Replay with the original gaps divided by X."),
    ] = None,
    realtime: Annotated[
        bool, typer.Option("--realtime", help="Replay with the original timing (--speed 1).")
    ] = False,
    quiet: QuietOpt = False,
    url: UrlOpt = None,
) -> None:
    """Print a channel's history and exit.

    Examples: chanctl replay build --raw > build.log; chanctl replay run-7 --since 1h --realtime
    """
    if json_ and raw:
        usage("--json and --raw cannot be combined")
    if speed is not None and speed <= 0:
        usage("--speed must be greater than 0")
    try:
        options = {
            "start": timespec.parse_start(from_) if from_ else None,
            "since": timespec.parse_when(since) if since else None,
            "until": timespec.parse_when(until) if until else None,
        }
    except ValueError as exc:
        usage(str(exc))
    if options["start"] is None and options["since"] is None:
        del options["start"]  # replay's default: from the start
    stream = make_client(url, quiet).replay(
        name, types=type_, speed=speed or (1.0 if realtime else None), **options
    )
    from ._stream import pump  # rendering code loads only when a command runs

    pump(stream, json_out=json_, raw=raw, timestamps=timestamps, marker=False)
