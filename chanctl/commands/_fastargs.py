"""The tiny argv scanner behind the typer-free fast paths of `pub` and `send`.

Both verbs run inside shell loops, so they skip importing Typer for the forms people actually
type. Anything unusual (`--help`, an unknown flag, a missing value) makes ``scan`` return None
and the caller falls back to the full Typer CLI, which then reports it properly.
"""

from __future__ import annotations

from collections.abc import Mapping

Scanned = tuple[dict[str, object], list[str]]


def scan(
    argv: list[str],
    valued: Mapping[str, str],
    switches: Mapping[str, str],
    repeatable: frozenset[str] = frozenset(),
) -> Scanned | None:
    """(option values by field name, positional arguments), or None for anything unusual.

    ``valued`` maps flags taking a value (``--type T`` or ``--type=T``) to field names; fields in
    ``repeatable`` collect a list. ``switches`` maps boolean flags to field names.
    """
    values: dict[str, object] = {key: [] for key in repeatable}
    positional: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "--":
            positional += list(it)
            break
        flag, eq, inline = arg.partition("=")
        if flag in valued and (eq or arg == flag):
            value = inline if eq else next(it, None)
            if value is None:
                return None
            key = valued[flag]
            values[key] = [*values[key], value] if key in repeatable else value  # type: ignore[misc]
        elif arg in switches:
            values[switches[arg]] = True
        elif arg.startswith("-") and arg != "-":
            return None
        else:
            positional.append(arg)
    return (values, positional) if positional else None
