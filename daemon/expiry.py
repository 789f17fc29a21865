"""Stream lifetimes: parsing ``Stream-TTL`` / ``Stream-Expires-At`` and deciding expiry.

A TTL is sliding (reads and writes renew it, HEAD does not); Expires-At is absolute. Renewals
live in the service's memory, so after a restart a TTL counts from the later of the last write
and the daemon's start (``ServiceCore.last_access``): a restart never expires a channel early.

The values are validated strictly because the same header must always mean the same lifetime:
``03600`` or ``3.6e3`` are rejected rather than guessed at.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache

from chanctl.protocol import parse_uint

from .errors import BadRequest
from .store.base import ChannelConfig

# The longest TTL accepted: about 285 million years, comfortably inside float and msgpack range.
MAX_TTL_S = 2**53 - 1

_RFC3339_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)


def parse_ttl(text: str) -> int:
    """``Stream-TTL``: seconds as a canonical non-negative decimal."""
    ttl = parse_uint(text.strip(), MAX_TTL_S)
    if ttl is None:
        raise BadRequest(
            f"invalid Stream-TTL {text!r}: use whole seconds without sign, leading zeros, "
            "decimal point or exponent (e.g. 3600)"
        )
    return ttl


def parse_expires_at(text: str) -> str:
    """``Stream-Expires-At``: an RFC 3339 timestamp, returned in one canonical UTC spelling so
    that equal instants compare equal when a PUT is repeated."""
    m = _RFC3339_RE.fullmatch(text.strip())
    if m is None:
        raise BadRequest(
            f"invalid Stream-Expires-At {text!r}: use an RFC 3339 timestamp with a time zone, "
            "e.g. 2030-01-01T00:00:00Z"
        )
    try:
        when = _to_datetime(m)
    except (ValueError, OverflowError) as exc:
        raise BadRequest(f"invalid Stream-Expires-At {text!r}: {exc}") from None
    return format_instant(when)


def _to_datetime(m: re.Match[str]) -> datetime:
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    micros = int((m.group(7) or "0")[:6].ljust(6, "0"))
    tz = UTC
    if m.group(9):
        offset = timedelta(hours=int(m.group(10)), minutes=int(m.group(11)))
        tz = timezone(-offset if m.group(9) == "-" else offset)
    local = datetime(year, month, day, hour, minute, second, micros, tzinfo=tz)
    return local.astimezone(UTC)


def format_instant(when: datetime) -> str:
    """Canonical RFC 3339 in UTC, with the fraction only when there is one."""
    text = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if when.microsecond:
        text += f".{when.microsecond:06d}".rstrip("0")
    return text + "Z"


@lru_cache(maxsize=4096)
def instant_ts(canonical: str) -> float:
    """Unix time of a canonical Expires-At value (cached: it is checked on every access)."""
    return datetime.strptime(canonical.rstrip("Z").split(".")[0], "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=UTC
    ).timestamp() + _fraction(canonical)


def _fraction(canonical: str) -> float:
    body = canonical.rstrip("Z")
    return float("0." + body.split(".")[1]) if "." in body else 0.0


def has_lifetime(config: ChannelConfig) -> bool:
    return config.ttl_s is not None or config.expires_at is not None


def is_expired(config: ChannelConfig, last_access: float, now: float) -> bool:
    """True once the absolute expiry has passed or the sliding TTL ran out since last access."""
    if config.expires_at is not None and now >= instant_ts(config.expires_at):
        return True
    return config.ttl_s is not None and now >= last_access + config.ttl_s
