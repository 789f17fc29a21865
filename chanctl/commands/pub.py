"""`chanctl pub NAME [MESSAGE...]`: append messages, from arguments or stdin lines."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import protocol as p
from ._common import streaming_output
from ._pub_run import PubArgs, run_pub
from .options import ChannelArg, QuietOpt, UrlOpt


def pub(
    name: ChannelArg,
    messages: Annotated[
        list[str] | None,
        typer.Argument(metavar="[MESSAGE]...", help="One message each; none: every stdin line."),
    ] = None,
    type_: Annotated[
        str, typer.Option("--type", metavar="TYPE", help="Message type.")
    ] = p.TYPE_MESSAGE,
    json_: Annotated[
        bool, typer.Option("--json", help="Messages are JSON values (validated).")
    ] = False,
    header: Annotated[
        list[str] | None,
        typer.Option("-H", "--header", metavar="K=V", help="Header on every message."),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Print the last message's offset.")
    ] = False,
    quiet: QuietOpt = False,
    url: UrlOpt = None,
) -> None:
    """Publish messages to a channel (created if needed), exactly once.

    Examples: chanctl pub demo hello; make 2>&1 | chanctl pub build --type stdout
    """
    with streaming_output():
        run_pub(
            PubArgs(
                name, list(messages or []), type_, json_, list(header or []), verbose, quiet, url
            )
        )
