"""`chanctl send` and `chanctl recv`: the two ends of a channel's control lane."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from .. import errors as ce
from .. import protocol as p
from ._common import make_client, streaming_output, usage
from ._send_run import SendArgs, run_send
from .options import (
    ChannelArg,
    CursorOpt,
    FromOpt,
    JsonOpt,
    QuietOpt,
    RawOpt,
    TimeoutOpt,
    TypeOpt,
    UrlOpt,
    read_window,
)

WaitOpt = Annotated[
    bool,
    typer.Option("--wait", help="Block until the producer answers; exit 1 if it refused."),
]


def send(
    name: ChannelArg,
    message: Annotated[
        list[str] | None,
        typer.Argument(metavar="[MESSAGE]...", help="Words of one message; none: stdin lines."),
    ] = None,
    type_: Annotated[
        str, typer.Option("--type", metavar="TYPE", help="Message type; steer is for `run`.")
    ] = p.TYPE_STEER,
    json_: Annotated[bool, typer.Option("--json", help="The message is a JSON value.")] = False,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Print the answer.")] = False,
    quiet: QuietOpt = False,
    url: UrlOpt = None,
) -> None:
    """Send a steering message to a channel's producer; prints its offset.

    Examples: chanctl send build stop --wait; chanctl send build signal USR1;
    chanctl send build stdin "yes"; chanctl send build --type note "50% done"
    """
    args = SendArgs(name, list(message or []), type_, json_, wait, timeout, verbose, quiet, url)
    with streaming_output():
        run_send(args)


FollowOpt = Annotated[bool, typer.Option("-f", "--follow", help="Keep waiting for more.")]


def recv(
    name: ChannelArg,
    follow: FollowOpt = False,
    cursor: CursorOpt = None,
    from_: FromOpt = None,
    type_: TypeOpt = None,
    json_: JsonOpt = False,
    raw: RawOpt = False,
    timeout: TimeoutOpt = None,
    quiet: QuietOpt = False,
    url: UrlOpt = None,
) -> None:
    """Print a channel's steering messages, as its producer reads them.

    Starts where the producer stands (inside `chanctl run`: where the run started), unless
    --from or --cursor say otherwise. Example, in a job under `chanctl run`:
    chanctl recv "$CHANCTL_CHANNEL" --follow | while read -r cmd; do ...; done
    """
    if json_ and raw:
        usage("--json and --raw cannot be combined")
    window = read_window(from_=from_, timeout=timeout)
    start = window.get("start")
    if start is None and cursor is None and os.environ.get("CHANCTL_CHANNEL") == name:
        start = os.environ.get("CHANCTL_CONTROL_FROM") or None
    stream = make_client(url, quiet).recv(
        name,
        follow=follow,
        cursor=cursor,
        start=start if isinstance(start, str) else None,
        types=type_,
        timeout=_seconds(window.get("timeout")),
    )
    from ._stream import pump  # rendering code loads only when a command runs

    try:
        pump(stream, json_out=json_, raw=raw, timestamps=False, marker=False)
    except ce.ChannelNotFound:
        if follow:
            raise
        # Nothing was ever sent: no control lane yet, which for `recv` just means no messages.


def _seconds(value: object) -> float | None:
    return value if isinstance(value, float) else None
