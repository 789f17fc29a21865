"""Typer option and argument declarations shared by the channel commands."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import complete_channels

ChannelArg = Annotated[
    str, typer.Argument(metavar="NAME", help="Channel name.", autocompletion=complete_channels)
]
UrlOpt = Annotated[
    str | None,
    typer.Option("--url", metavar="URL", help="Daemon: unix:///PATH or http://HOST:PORT "
                 "(env CHANCTL_URL; token in CHANCTL_TOKEN)."),
]
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="Print nothing but the output.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
RawOpt = Annotated[bool, typer.Option("--raw", help="Message data only, byte-exact.")]
TimestampsOpt = Annotated[
    bool, typer.Option("-t", "--timestamps", help="Prefix each message with its RFC 3339 time.")
]
FromOpt = Annotated[
    str | None,
    typer.Option("--from", metavar="OFFSET", help="Start at a message number, an offset, "
                 "'start' or 'now'."),
]
SinceOpt = Annotated[
    str | None,
    typer.Option("--since", metavar="WHEN", help="Start at a time: 5m, 1h30m, RFC 3339, "
                 "2026-01-02, today..."),
]
TypeOpt = Annotated[
    list[str] | None,
    typer.Option("--type", metavar="TYPE", help="Only messages of this type (repeatable)."),
]
