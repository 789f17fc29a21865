"""`chanctl run NAME -- COMMAND [ARGS...]`: run a job with the channel as its address."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from .. import errors as ce
from ._common import Globals, make_client, usage
from .options import ChannelArg, UrlOpt

if TYPE_CHECKING:
    from ..client import Client

CommandArg = Annotated[
    list[str], typer.Argument(metavar="-- COMMAND [ARGS]...", help="The job to run.")
]
TakeoverOpt = Annotated[
    bool, typer.Option("--takeover", help="Replace (fence) a live producer of the channel.")
]
NoCloseOpt = Annotated[
    bool, typer.Option("--no-close", help="Leave the channel open when the job ends.")
]
StopSignalOpt = Annotated[
    str, typer.Option("--stop-signal", metavar="SIG", help="What `stop` sends first.")
]
StopTimeoutOpt = Annotated[
    str, typer.Option("--stop-timeout", metavar="D", help="SIGKILL this long after a stop.")
]
HeartbeatOpt = Annotated[
    str, typer.Option("--heartbeat", metavar="D", hidden=True, help="Liveness interval.")
]
NoEchoOpt = Annotated[
    bool, typer.Option("-q", "--quiet", help="Do not show the job's output here.")
]


def run(
    name: ChannelArg,
    command: CommandArg,
    takeover: TakeoverOpt = False,
    no_close: NoCloseOpt = False,
    stop_signal: StopSignalOpt = "TERM",
    stop_timeout: StopTimeoutOpt = "10s",
    heartbeat: HeartbeatOpt = "4s",
    quiet: NoEchoOpt = False,
    url: UrlOpt = None,
) -> None:
    """Run a command; its output goes to the channel, steering from the channel reaches it.

    Exits with the command's status (128+N if signal N killed it; 125 if chanctl failed,
    126/127 if the command cannot run / is not found). In CI (CI=true) the echoed output is
    folded into a GitHub Actions / GitLab CI log group. Examples:
    chanctl run build-42 -- make test; chanctl send build-42 stop --wait
    """
    from .. import timespec
    from ..wrapper.runner import RunOptions, run_job

    try:
        opts = RunOptions(
            channel=name,
            argv=command,
            takeover=takeover,
            close=not no_close,
            quiet=quiet or Globals.quiet,
            stop_signal=_signal(stop_signal),
            stop_timeout=timespec.parse_duration(stop_timeout),
            heartbeat=max(0.2, timespec.parse_duration(heartbeat)),
        )
    except ValueError as exc:
        usage(str(exc))
    try:
        code = run_job(opts, _client_factory(url, quiet))
    except ce.RunFailed:
        raise
    except ce.ChanctlError as exc:  # `run` has one code for "chanctl failed": 125
        raise ce.RunFailed(exc.message, hint=exc.hint) from exc
    raise typer.Exit(code)


def _signal(text: str) -> int:
    name = text.strip().upper()
    try:
        if name.isdigit():
            return int(signal.Signals(int(name)))
        return int(signal.Signals["SIG" + name.removeprefix("SIG")])
    except (KeyError, ValueError):
        raise ValueError(f"unknown signal {text!r}: use e.g. TERM, INT, HUP or 15") from None


def _client_factory(url: str | None, quiet: bool) -> Callable[[float], Client]:
    """Clients that start the daemon if needed (and say so) and wait out restarts as told."""

    def factory(reconnect_timeout: float) -> Client:
        client = make_client(url, quiet)
        client.reconnect_timeout = reconnect_timeout
        return client

    return factory
