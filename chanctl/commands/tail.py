"""`chanctl tail NAME`: the last messages, then live ones until the channel is closed."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import protocol as p
from ._common import make_client, usage
from .options import (
    ChannelArg,
    CursorOpt,
    ExitStatusOpt,
    FromOpt,
    JsonOpt,
    LinesOpt,
    NoFollowOpt,
    QuietOpt,
    RawOpt,
    SinceOpt,
    TimeoutOpt,
    TimestampsOpt,
    TypeOpt,
    UrlOpt,
    read_window,
)


def tail(
    name: ChannelArg,
    lines: LinesOpt = "10",
    from_: FromOpt = None,
    since: SinceOpt = None,
    no_follow: NoFollowOpt = False,
    type_: TypeOpt = None,
    json_: JsonOpt = False,
    raw: RawOpt = False,
    timestamps: TimestampsOpt = False,
    cursor: CursorOpt = None,
    exit_status: ExitStatusOpt = False,
    timeout: TimeoutOpt = None,
    control: Annotated[
        bool, typer.Option("--control", help="Its steering messages (the control lane).")
    ] = False,
    quiet: QuietOpt = False,
    url: UrlOpt = None,
) -> None:
    """Follow a channel: the last 10 messages, then live; exits 0 when it is closed.

    Examples: chanctl tail build; chanctl tail build -n all --no-follow --json
    """
    if json_ and raw:
        usage("--json and --raw cannot be combined")
    window = read_window(lines=lines, from_=from_, since=since, timeout=timeout)
    stream = make_client(url, quiet).tail(
        name,
        types=type_,
        follow=not no_follow,
        wait=not no_follow,
        cursor=cursor,
        lane=p.LANE_CONTROL if control else p.LANE_OUTPUT,
        **window,
    )
    from ._stream import pump  # rendering code loads only when a command runs

    pump(stream, json_out=json_, raw=raw, timestamps=timestamps, marker=not (no_follow or quiet))
    if exit_status:
        raise typer.Exit(stream.exit_status() or 0)
