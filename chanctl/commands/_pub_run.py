"""`chanctl pub` without typer: the argument model, a fast argv parser, and the run itself.

`pub` runs inside shell loops (`for f in *; do chanctl pub x "$f"; done`), so its start-up time
is its speed. Typer alone takes longer to import than the 8x-`python -c pass` budget, so
``chanctl.entry`` parses the common forms here and only falls back to the full Typer CLI for
anything else (`--help`, unknown flags). Both paths end in the same ``run_pub``.
"""

from __future__ import annotations

import json
import os
import select
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .. import protocol as p
from .._core import FLUSH, Flush
from ..errors import ChanctlError, UsageError
from ._common import Globals, make_client
from ._fastargs import scan


@dataclass
class PubArgs:
    name: str
    messages: list[str] = field(default_factory=list)
    type: str = p.TYPE_MESSAGE
    json: bool = False
    headers: list[str] = field(default_factory=list)
    verbose: bool = False
    quiet: bool = False
    url: str | None = None


def run_pub(args: PubArgs) -> None:
    """Publish the arguments, or every stdin line, as messages; print the last offset with -v."""
    headers = parse_headers(args.headers)
    _check_name(args.name)
    items: Iterable[str | bytes | Flush] = args.messages or stdin_lines()
    if args.json:
        items = (
            list(_check_json(args.messages, "argument"))
            if args.messages
            else _check_json(items, "line")
        )
    client = make_client(args.url, args.quiet)
    result = client.publish_many(args.name, items, type=args.type, headers=headers)
    if (args.verbose or Globals.verbose) and result.last_offset:
        sys.stdout.write(result.last_offset + "\n")


def _check_name(name: str) -> None:
    """Refuse a bad name before reading stdin (exit 2, nothing consumed)."""
    try:
        p.validate_name(name)
    except p.ChannelNameError as exc:
        raise UsageError(str(exc)) from None


def parse_headers(pairs: list[str]) -> dict[str, str] | None:
    headers: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"invalid header {pair!r}", hint="use -H KEY=VALUE")
        headers[key.strip()] = value
    return headers or None


QUIET_S = 0.05  # input silent this long: send what was read so far


def stdin_lines() -> Iterator[bytes | Flush]:
    """Every line of stdin without its newline; bytes, so invalid UTF-8 survives (base64).

    Reads whatever is available in big chunks (fast for `seq 1000000 | chanctl pub`) and yields
    FLUSH whenever the input stays quiet for QUIET_S, so lines of a burst are published even
    while the producer then pauses for minutes.
    """
    fd = sys.stdin.fileno()
    rest = b""
    while True:
        if not select.select([fd], [], [], QUIET_S)[0]:
            yield FLUSH
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def _check_json(items: Iterable[str | bytes | Flush], what: str) -> Iterator[str | bytes | Flush]:
    """--json: every message must be one JSON value; the first bad one stops the publish."""
    number = 0
    for item in items:
        if isinstance(item, Flush):
            yield item
            continue
        number += 1
        try:
            json.loads(item)
        except ValueError as exc:
            cls = UsageError if what == "argument" else ChanctlError
            raise cls(
                f"{what} {number} is not valid JSON: {exc}",
                hint="drop --json to publish it as text",
            ) from None
        yield item


_FLAGS_WITH_VALUE = {"--type": "type", "-H": "headers", "--header": "headers", "--url": "url"}
_SWITCHES = {
    "--json": "json",
    "-v": "verbose",
    "--verbose": "verbose",
    "-q": "quiet",
    "--quiet": "quiet",
}


def parse_fast(argv: list[str]) -> PubArgs | None:
    """``pub`` arguments in the forms people type, or None to let Typer handle the rest."""
    scanned = scan(argv, _FLAGS_WITH_VALUE, _SWITCHES, frozenset({"headers"}))
    if scanned is None:
        return None
    values, positional = scanned
    return PubArgs(name=positional[0], messages=positional[1:], **values)  # type: ignore[arg-type]
