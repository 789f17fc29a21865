"""The time and offset grammar of `--since`, `--until`, `--from` and `--timeout` (cli.md 1.4).

Hand-written on purpose: dateparser-style libraries cost hundreds of milliseconds to import,
and the accepted forms are exactly the ones docker, kubectl, nats and journalctl users type.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta

from . import protocol as p

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_FULL_RE = re.compile(r"-?(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")
_OFFSETS = {
    "start": p.OFFSET_START,
    "-1": p.OFFSET_START,
    "beginning": p.OFFSET_START,
    "now": p.OFFSET_NOW,
    "end": p.OFFSET_NOW,
}


def parse_duration(text: str) -> float:
    """``30s``, ``1h30m``, ``1d3h5m2s``, ``250ms`` or plain seconds (``2.5``) -> seconds."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        if not _DURATION_FULL_RE.fullmatch(text):
            raise ValueError(
                f"invalid duration {text!r}: use e.g. 30s, 5m, 1h30m, 2d or seconds"
            ) from None
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_RE.findall(text))
    if seconds < 0:
        raise ValueError(f"invalid duration {text!r}: must not be negative")
    return seconds


def parse_when(text: str, now: float | None = None) -> float:
    """A point in time as unix seconds, from any §1.4 form.

    Durations count back from now (``5m`` and ``-5m`` alike); RFC 3339 is absolute; a date or
    date-time without a zone is local time (as journalctl and docker read it); ten digits are
    unix seconds; ``now``, ``today`` and ``yesterday`` are keywords.
    """
    now = time.time() if now is None else now
    text = text.strip()
    if _DURATION_FULL_RE.fullmatch(text):
        return now - parse_duration(text.removeprefix("-"))
    if text.isdigit() and len(text) == 10:
        return float(text)
    keyword = {"now": 0, "today": 0, "yesterday": 1}
    if text in keyword:
        if text == "now":
            return now
        midnight = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
        return (midnight - timedelta(days=keyword[text])).timestamp()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}: use a duration (5m, 1h30m), RFC 3339 "
            "(2026-01-02T13:23:37Z), a local date (2026-01-02 13:23), unix seconds, "
            "today, yesterday or now"
        ) from None
    return parsed.timestamp()  # naive values are local time, as documented


def parse_start(text: str) -> str:
    """``--from``: a seq number, a wire offset, ``start``/``-1`` or ``now``/``end``."""
    text = text.strip()
    if text in _OFFSETS:
        return _OFFSETS[text]
    if text.isdigit():
        seq = int(text)
        if seq > p.MAX_OFFSET_SEQ:
            raise ValueError(f"offset {text} is out of range")
        return p.format_offset(seq)
    try:
        p.parse_offset(text)
    except p.OffsetError:
        raise ValueError(
            f"invalid offset {text!r}: use a message number (1234), start, now, or an offset "
            f"as printed by --json (like {p.format_offset(1234)})"
        ) from None
    return text


def parse_lines(text: str) -> int | None:
    """``-n``: a count, or ``all`` (None: everything)."""
    text = text.strip().lower()
    if text == "all":
        return None
    if text.startswith("+") or not text.isdigit():
        raise ValueError(f"invalid line count {text!r}: use a number or 'all'")
    return int(text)
