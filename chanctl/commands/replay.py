"""`chanctl replay NAME`: history from the start (or a time), optionally at its original pace."""

from __future__ import annotations

from ._common import make_client, usage
from .options import (
    ChannelArg,
    FromOpt,
    JsonOpt,
    QuietOpt,
    RawOpt,
    RealtimeOpt,
    SinceOpt,
    SpeedOpt,
    TimestampsOpt,
    TypeOpt,
    UntilOpt,
    UrlOpt,
    read_window,
)


def replay(
    name: ChannelArg,
    from_: FromOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    type_: TypeOpt = None,
    json_: JsonOpt = False,
    raw: RawOpt = False,
    timestamps: TimestampsOpt = False,
    speed: SpeedOpt = None,
    realtime: RealtimeOpt = False,
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
    window = read_window(from_=from_, since=since, until=until)
    stream = make_client(url, quiet).replay(
        name, types=type_, speed=speed or (1.0 if realtime else None), **window
    )
    from ._stream import pump  # rendering code loads only when a command runs

    pump(stream, json_out=json_, raw=raw, timestamps=timestamps, marker=False)
