"""`chanctl ls`, `info`, `close` and `rm`: look at and manage channels."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import ChanctlError
from ._common import make_client, usage
from .options import ChannelArg, JsonOpt, QuietOpt, UrlOpt

if TYPE_CHECKING:
    from .._info import ChannelInfo

_COLUMNS = ("name", "messages", "bytes", "created", "last write", "state", "readers", "producer")


def ls(json_: JsonOpt = False, quiet: QuietOpt = False, url: UrlOpt = None) -> None:
    """List channels: name, messages, bytes, created, last write, open/closed, live readers."""
    infos = make_client(url, quiet).list()
    if json_:
        _dump([i.to_dict() for i in infos])
        return
    rows = [_row(i) for i in infos]
    if sys.stdout.isatty():
        _table(rows)
    else:  # piped: tab-separated, no header, so `cut -f1` gives the names
        sys.stdout.write("".join("\t".join(r) + "\n" for r in rows))


def info(
    name: ChannelArg, json_: JsonOpt = False, quiet: QuietOpt = False, url: UrlOpt = None
) -> None:
    """Show offsets, counts, retention, TTL, fsync policy, content type and producers."""
    doc = make_client(url, quiet).info(name).to_dict()
    if json_:
        _dump(doc)
        return
    shown = {
        k: _when(v) if k in ("created", "last_write") else _text(v)
        for k, v in doc.items()
        if v is not None
    }
    if "producer" in shown:  # its `run`: attached, lost or exited (README "Steering ...")
        from .._info import describe_producer

        shown["producer"] = _text(describe_producer(doc["producer"]))
    width = max(len(k) for k in shown)
    sys.stdout.write("".join(f"{k:<{width}}  {v}\n" for k, v in shown.items()))


def close(name: ChannelArg, quiet: QuietOpt = False, url: UrlOpt = None) -> None:
    """Close a channel for writing; readers following it finish (tail exits 0)."""
    make_client(url, quiet).close(name)


def rm(
    names: Annotated[list[str], typer.Argument(metavar="NAME...", help="Channels to delete.")],
    force: Annotated[bool, typer.Option("-f", "--force", help="Do not ask.")] = False,
    quiet: QuietOpt = False,
    url: UrlOpt = None,
) -> None:
    """Delete channels for good (asks on a terminal; needs -f otherwise)."""
    interactive = sys.stdin.isatty() and sys.stderr.isatty()
    if not force and not interactive:
        usage("refusing to delete without confirmation", hint="add -f to delete without asking")
    client = make_client(url, quiet)
    failures: list[ChanctlError] = []
    for name in names:
        try:
            if force or _confirm(name, client.info(name)):
                client.delete(name)
        except ChanctlError as exc:  # report it and go on with the other names
            failures.append(exc)
            sys.stderr.write(f"error: {exc.message}\n")
    if failures:
        raise typer.Exit(int(failures[0].exit_code))


def _confirm(name: str, ch: ChannelInfo) -> bool:
    count = "?" if ch.messages is None else f"{ch.messages}"
    sys.stderr.write(f"delete channel {name} ({count} msgs)? [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _dump(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def _row(i: ChannelInfo) -> list[str]:
    state = "?" if i.closed is None else "closed" if i.closed else "open"
    return [
        i.name,
        _text(i.messages),
        _size(i.bytes),
        _when(i.created),
        _when(i.last_write),
        state,
        _text(i.readers),
        _producer(i.extra.get("producer")),
    ]


def _producer(doc: Any) -> str:
    from .._info import describe_producer
    from ..render import sanitize

    return sanitize(describe_producer(doc))


def _text(value: Any) -> str:
    from ..render import sanitize

    if value is None:
        return "-"
    return sanitize(value if isinstance(value, str) else json.dumps(value, sort_keys=True))


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _when(ts: float | None) -> str:
    if not isinstance(ts, int | float):
        return "-"
    from datetime import datetime

    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _table(rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*_COLUMNS, box=None, header_style="bold")
    for row in rows:
        table.add_row(*row)
    Console(highlight=False).print(table)
