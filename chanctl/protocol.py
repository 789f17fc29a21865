"""The wire contract shared by the chanctl client and daemon.

Everything both sides must agree on lives here and nowhere else: URL layout, header names,
the offset format, channel-name rules and content-type helpers. The module does no I/O and
imports only the standard library, so the CLI can import it without paying for aiohttp.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

API_VERSION = "1"
STREAM_PREFIX = "/v1/stream/"

# Durable Streams headers (PROTOCOL.md, header registry).
H_NEXT_OFFSET = "Stream-Next-Offset"
H_UP_TO_DATE = "Stream-Up-To-Date"
H_CLOSED = "Stream-Closed"
H_CURSOR = "Stream-Cursor"
H_SEQ = "Stream-Seq"
H_TTL = "Stream-TTL"
H_EXPIRES_AT = "Stream-Expires-At"
H_FORKED_FROM = "Stream-Forked-From"
H_FORK_OFFSET = "Stream-Fork-Offset"
H_FORK_SUB_OFFSET = "Stream-Fork-Sub-Offset"
H_PRODUCER_ID = "Producer-Id"
H_PRODUCER_EPOCH = "Producer-Epoch"
H_PRODUCER_SEQ = "Producer-Seq"
H_PRODUCER_EXPECTED_SEQ = "Producer-Expected-Seq"
H_PRODUCER_RECEIVED_SEQ = "Producer-Received-Seq"
H_SSE_ENCODING = "stream-sse-data-encoding"
# chanctl extensions: visible to any client, ignored by those that do not know them.
H_FSYNC_POLICY = "Chanctl-Fsync-Policy"
H_CORRUPT_OFFSET = "Chanctl-Corrupt-Offset"
H_FIRST_OFFSET = "Chanctl-First-Offset"

OFFSET_START = "-1"
OFFSET_NOW = "now"

# Offsets are "<messages before this point>_<reserved>", both 16 zero-padded decimal digits.
# Fixed width makes byte-wise order equal log order; the first half is the sequence number a
# person sees (`chanctl tail` shows it), the second half is reserved for positions inside a
# message and is always zero today.
_OFFSET_RE = re.compile(r"^(\d{16})_(\d{16})$")
MAX_OFFSET_SEQ = 10**16 - 1


class OffsetError(ValueError):
    """An offset string that chanctl never minted."""


def format_offset(seq: int) -> str:
    """Render the position before message number ``seq`` (0-based count of earlier messages)."""
    if not 0 <= seq <= MAX_OFFSET_SEQ:
        raise OffsetError(f"offset sequence {seq} out of range")
    return f"{seq:016d}_{0:016d}"


def parse_offset(text: str) -> int:
    """Turn an offset string back into the count of messages before it."""
    m = _OFFSET_RE.match(text)
    if m is None:
        raise OffsetError(
            f"malformed offset {text!r}: expected '-1', 'now' or a value like "
            f"{format_offset(0)!r} taken from Stream-Next-Offset"
        )
    if int(m.group(2)) != 0:
        raise OffsetError(f"offset {text!r} does not point at a message boundary")
    return int(m.group(1))


# Channel names: the allowlist documented in the README.
MAX_NAME_BYTES = 200
_NAME_RE = re.compile(r"^[A-Za-z0-9._:\-]+(?:/[A-Za-z0-9._:\-]+)*$")
NAME_RULES = (
    "channel names use letters, digits and . _ - : with / between parts, "
    f"at most {MAX_NAME_BYTES} bytes, and no part may be '.' or '..'"
)


class ChannelNameError(ValueError):
    """A channel name outside the documented allowlist."""


def validate_name(name: str) -> str:
    """Return ``name`` if it is an allowed channel name, else raise ChannelNameError."""
    if unicodedata.normalize("NFC", name) != name or not name.isascii():
        raise ChannelNameError(f"invalid channel name {name!r}: {NAME_RULES}")
    if len(name.encode()) > MAX_NAME_BYTES or not _NAME_RE.match(name):
        raise ChannelNameError(f"invalid channel name {name!r}: {NAME_RULES}")
    if any(part in (".", "..") for part in name.split("/")):
        raise ChannelNameError(f"invalid channel name {name!r}: {NAME_RULES}")
    return name


def stream_path(name: str) -> str:
    """The Durable Streams URL path of a channel."""
    return STREAM_PREFIX + name


@dataclass(frozen=True)
class ContentType:
    """A parsed Content-Type; chanctl compares media types case-insensitively."""

    media_type: str
    raw: str

    @property
    def is_json(self) -> bool:
        return self.media_type == "application/json"

    @property
    def is_text(self) -> bool:
        return self.media_type.startswith("text/") or self.is_json

    def same_type(self, other: ContentType) -> bool:
        return self.media_type == other.media_type


def parse_content_type(value: str | None) -> ContentType | None:
    if value is None:
        return None
    media = value.split(";", 1)[0].strip().lower()
    if not media or "/" not in media:
        return None
    return ContentType(media_type=media, raw=value.strip())


DEFAULT_CONTENT_TYPE = "application/octet-stream"
