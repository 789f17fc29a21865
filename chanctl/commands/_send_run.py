"""`chanctl send` without typer: the argument model, a fast argv parser, and the send itself.

Agents and scripts steer in loops (`chanctl send "$CHANCTL_CHANNEL" ...`), so like `pub`, the
common forms are parsed here by ``chanctl.entry`` and run without importing typer; anything
else (`--help`, unknown flags) goes through the Typer command, which ends in the same
``run_send``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from .. import protocol as p
from .._core import Flush
from ..errors import UsageError
from ._common import Globals, make_client
from ._fastargs import scan
from ._pub_run import stdin_lines


@dataclass
class SendArgs:
    name: str
    words: list[str] = field(default_factory=list)
    type: str = p.TYPE_STEER
    json: bool = False
    wait: bool = False
    timeout: str | None = None
    verbose: bool = False
    quiet: bool = False
    url: str | None = None


def run_send(args: SendArgs) -> None:
    """Send the words as one message (or each stdin line as one); print each offset."""
    from ..timespec import parse_duration

    try:
        p.validate_name(args.name)
        seconds = None if args.timeout is None else parse_duration(args.timeout)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    texts: list[str] | None = [" ".join(args.words)] if args.words else None
    if args.json and texts is not None:
        _check_json(texts[0])
    client = make_client(args.url, args.quiet)
    items: Iterable[str | bytes | Flush] = texts if texts is not None else stdin_lines()
    for text in items:
        if isinstance(text, Flush):  # stdin went quiet: nothing to do, each line is sent alone
            continue
        sent = client.send(args.name, text, type=args.type, wait=args.wait, timeout=seconds)
        sys.stdout.write(sent.offset + "\n")
        sys.stdout.flush()
        if sent.ack is not None and (args.verbose or Globals.verbose):
            sys.stderr.write(f"{sent.ack.cmd}: {sent.ack.detail or 'ok'}\n")


def _check_json(text: str) -> None:
    try:
        json.loads(text)
    except ValueError as exc:
        raise UsageError(
            f"the message is not valid JSON: {exc}", hint="drop --json to send text"
        ) from None


_VALUED = {"--type": "type", "--timeout": "timeout", "--url": "url"}
_SWITCHES = {
    "--json": "json",
    "--wait": "wait",
    "-v": "verbose",
    "--verbose": "verbose",
    "-q": "quiet",
    "--quiet": "quiet",
}


def parse_fast(argv: list[str]) -> SendArgs | None:
    """``send`` arguments in the forms people type, or None to let Typer handle the rest."""
    scanned = scan(argv, _VALUED, _SWITCHES)
    if scanned is None:
        return None
    values, positional = scanned
    return SendArgs(positional[0], positional[1:], **values)  # type: ignore[arg-type]
