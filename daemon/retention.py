"""Per-channel retention: its grammar on the wire and on the command line, daemon defaults, and
the history that forks pin.

A channel's retention (``store.base.Retention``) is fixed at creation like its content type: a
PUT may give ``Chanctl-Max-Age`` (seconds, or ``<n>s|m|h|d``), ``Chanctl-Max-Bytes`` and
``Chanctl-Max-Messages`` (positive integers); each limit it leaves out takes the daemon's default
(``--max-age`` / ``--max-bytes`` / ``--max-messages``, unlimited unless set). The resolved values
are what a repeated PUT is compared against, what HEAD echoes and what ``/v1/channels`` lists.
There is no spelling for "unlimited": a channel that must outlive a daemon default asks for a
large limit instead.

Forks: a fork reads its source's history below its fork point, so retention must not drop it
while the fork can still serve it (see ``fork_pins``).
"""

from __future__ import annotations

from collections.abc import Iterable

from chanctl.protocol import H_MAX_AGE, H_MAX_BYTES, H_MAX_MESSAGES, MAX_SAFE_INTEGER, parse_uint

from .store.base import ChannelSummary, Retention

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
UNLIMITED = Retention()


def parse_max_age(text: str, what: str) -> int:
    """Seconds from ``<n>`` or ``<n><unit>`` (unit s, m, h or d); ValueError naming ``what``."""
    body = text.strip().lower()
    unit = _UNITS.get(body[-1:], 1)
    if body[-1:] in _UNITS:
        body = body[:-1]
    value = parse_uint(body, MAX_SAFE_INTEGER // unit)
    if not value:
        raise ValueError(
            f"invalid {what} {text!r}: use a positive whole number of seconds, optionally with "
            "a unit s, m, h or d (e.g. 3600 or 7d)"
        )
    return value * unit


def parse_limit(text: str, what: str) -> int:
    """A positive canonical integer (no sign, unit, leading zeros or exponent)."""
    value = parse_uint(text.strip())
    if not value:
        raise ValueError(
            f"invalid {what} {text!r}: use a positive whole number without sign, unit or "
            "leading zeros (e.g. 1000000)"
        )
    return value


def resolve(asked: Retention, default: Retention) -> Retention:
    """The retention a new channel gets: each limit as asked, else the daemon default."""
    return Retention(
        max_age_s=default.max_age_s if asked.max_age_s is None else asked.max_age_s,
        max_bytes=default.max_bytes if asked.max_bytes is None else asked.max_bytes,
        max_messages=default.max_messages if asked.max_messages is None else asked.max_messages,
    )


def seconds_text(value: float) -> str:
    """A max age as the wire shows it: whole seconds when it is whole (always, via PUT)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def describe(ret: Retention) -> str:
    """For error messages: the limits in force, as the headers spell them."""
    if ret == UNLIMITED:
        return "no retention limits"
    return ", ".join(f"{k}: {v}" for k, v in headers_of(ret).items())


def headers_of(ret: Retention) -> dict[str, str]:
    """The Chanctl-Max-* headers HEAD answers with (only the limits that are set)."""
    out: dict[str, str] = {}
    if ret.max_age_s is not None:
        out[H_MAX_AGE] = seconds_text(ret.max_age_s)
    if ret.max_bytes is not None:
        out[H_MAX_BYTES] = str(ret.max_bytes)
    if ret.max_messages is not None:
        out[H_MAX_MESSAGES] = str(ret.max_messages)
    return out


def as_json(ret: Retention) -> dict[str, float | int | None]:
    """The ``retention`` object of a listing entry (null: unlimited)."""
    return {
        "max_age_s": ret.max_age_s,
        "max_bytes": ret.max_bytes,
        "max_messages": ret.max_messages,
    }


def fork_pins(channels: Iterable[ChannelSummary]) -> dict[str, int]:
    """For each channel whose history live forks read, the seq below which retention must keep
    its messages (``ChannelStore.enforce_retention``'s ``keep_below``).

    A fork at point P serves its source's messages below P, from wherever the source's
    retention left them, for as long as the fork exists (soft-deleted forks too: they are only
    kept because their own forks read through them) and its own log still starts at P. So the
    fork pins its source below P; several forks pin up to the highest fork point. A source
    that is itself a fork must also keep its own first segment, or dropping it would hide the
    history it inherited (``reads.first_readable``): it is pinned past its first message.

    Retention drops oldest first, so in practice a channel read by a live fork is not trimmed
    at all until its forks are deleted, expire, or trim their own logs past their fork point:
    it may exceed its limits meanwhile. That is the price of forks that never break.
    """
    listed = list(channels)
    by_name = {ch.name: ch for ch in listed}
    pins: dict[str, int] = {}
    for ch in listed:
        fork = ch.config.fork
        if fork is not None and _shows_inherited(ch):
            pins[fork.source] = max(pins.get(fork.source, 0), fork.seq)
    for name, below in pins.items():
        src = by_name.get(name)
        if src is not None and src.config.fork is not None and _shows_inherited(src):
            first = src.first_seq if src.first_seq is not None else src.config.fork.seq
            pins[name] = max(below, first + 1)
    return pins


def _shows_inherited(ch: ChannelSummary) -> bool:
    """Does this fork still serve history below its fork point? Not once its own retention
    has dropped the segment its log started with."""
    fork = ch.config.fork
    return fork is not None and (ch.first_seq is None or ch.first_seq <= fork.seq)
