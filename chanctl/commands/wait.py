"""`chanctl wait NAME`: block until something happens on a channel."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from ._common import make_client, streaming_output
from .options import ChannelArg, ExitStatusOpt, QuietOpt, TimeoutOpt, UrlOpt, read_window


def wait(
    name: ChannelArg,
    for_: Annotated[
        str,
        typer.Option(
            "--for",
            metavar="COND",
            help="closed, exit (of the latest run), match=REGEX or type=T.",
        ),
    ] = "exit",
    timeout: TimeoutOpt = None,
    exit_status: ExitStatusOpt = False,
    json_: Annotated[
        bool, typer.Option("--json", help="Print the message that met the condition.")
    ] = False,
    quiet: QuietOpt = False,
    url: UrlOpt = None,
) -> None:
    """Wait until a condition holds (history counts); exit 0, or 124 after --timeout.

    Examples: chanctl wait build --for exit --exit-status; chanctl wait build --for 'match=ready'
    """
    window = read_window(timeout=timeout)
    seconds = window.get("timeout")
    with streaming_output():
        waited = make_client(url, quiet).wait(
            name, for_=for_, timeout=seconds if isinstance(seconds, float) else None
        )
    if json_ and waited.message is not None:
        sys.stdout.write(json.dumps(waited.message.to_record(), separators=(",", ":")) + "\n")
    if exit_status:
        raise typer.Exit(waited.exit_status or 0)
