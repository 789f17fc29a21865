"""The wire contract shared by the chanctl client and daemon.

Everything both sides must agree on lives here and nowhere else: URL layout, header names,
the offset format, channel-name rules and content-type helpers. The module does no I/O and
imports only the standard library, so the CLI can import it without paying for aiohttp.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

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
# Per-channel retention (PUT, echoed by HEAD): seconds (or <n>s/m/h/d), bytes, messages.
H_MAX_AGE = "Chanctl-Max-Age"
H_MAX_BYTES = "Chanctl-Max-Bytes"
H_MAX_MESSAGES = "Chanctl-Max-Messages"

# Values and SSE control-event fields both sides must spell the same way.
SSE_ENCODING_BASE64 = "base64"
SSE_EVENT_DATA = "data"
SSE_EVENT_CONTROL = "control"
CTRL_NEXT_OFFSET = "streamNextOffset"
CTRL_CURSOR = "streamCursor"
CTRL_UP_TO_DATE = "upToDate"
CTRL_CLOSED = "streamClosed"
LIVE_LONG_POLL = "long-poll"
LIVE_SSE = "sse"

# Producer-Epoch / Producer-Seq stay within what a JavaScript client can represent exactly.
MAX_SAFE_INTEGER = 2**53 - 1

OFFSET_START = "-1"
OFFSET_NOW = "now"

# Offsets are "<messages before this point>_<reserved>", both 16 zero-padded decimal digits.
# Fixed width makes byte-wise order equal log order; the first half is the sequence number a
# person sees (`chanctl tail` shows it), the second half is reserved for positions inside a
# message and is always zero today.
_OFFSET_RE = re.compile(r"([0-9]{16})_([0-9]{16})")  # ASCII digits only; used with fullmatch
MAX_OFFSET_SEQ = 10**16 - 1


class OffsetError(ValueError):
    """An offset string that chanctl never minted."""


_UINT_RE = re.compile(r"0|[1-9][0-9]*")


def parse_uint(text: str, limit: int = MAX_SAFE_INTEGER) -> int | None:
    """Parse a canonical non-negative decimal (no sign, no leading zeros, ASCII digits only).

    Header values such as ``Stream-TTL`` and ``Producer-Seq`` must be unambiguous: ``+1``,
    ``01``, ``1e3`` and ``1.0`` all name the same number in some grammar, so none is accepted.
    Returns None for anything else, including values above ``limit``.
    """
    if not _UINT_RE.fullmatch(text):
        return None
    value = int(text)
    return value if value <= limit else None


def is_true(value: str | None) -> bool:
    """Flag headers (``Stream-Closed``): only a case-insensitive ``true`` counts; other values
    are ignored rather than rejected, as PROTOCOL.md asks."""
    return value is not None and value.strip().lower() == "true"


def format_offset(seq: int) -> str:
    """Render the position before message number ``seq`` (0-based count of earlier messages)."""
    if not 0 <= seq <= MAX_OFFSET_SEQ:
        raise OffsetError(f"offset sequence {seq} out of range")
    return f"{seq:016d}_{0:016d}"


def parse_offset(text: str) -> int:
    """Turn an offset string back into the count of messages before it."""
    m = _OFFSET_RE.fullmatch(text)
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
    # fullmatch: with match, '$' would accept a trailing newline.
    if len(name.encode()) > MAX_NAME_BYTES or not _NAME_RE.fullmatch(name):
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
        return self.media_type == JSON_CONTENT_TYPE

    @property
    def is_text(self) -> bool:
        return self.media_type.startswith("text/") or self.is_json

    def same_type(self, other: ContentType) -> bool:
        return self.media_type == other.media_type

    @property
    def canonical(self) -> str:
        """The media type in lower case, parameters as given: what a channel records."""
        params = self.raw.split(";", 1)[1].strip() if ";" in self.raw else ""
        return f"{self.media_type}; {params}" if params else self.media_type


def parse_content_type(value: str | None) -> ContentType | None:
    if value is None:
        return None
    media = value.split(";", 1)[0].strip().lower()
    if not media or "/" not in media:
        return None
    return ContentType(media_type=media, raw=value.strip())


DEFAULT_CONTENT_TYPE = "application/octet-stream"
JSON_CONTENT_TYPE = "application/json"  # JSON mode: message boundaries kept, reads are arrays


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise ValueError("duplicate key in a JSON object")
    return doc


_STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
_LENIENT_JSON = json.JSONDecoder(parse_constant=_reject_constant)


def loads_json(data: bytes | str, *, unique_keys: bool = True) -> object:
    """Decode JSON that someone else wrote (request bodies, steering, replies) so that only
    ValueError escapes. ``json.loads`` raises RecursionError on deep nesting (a 100,000-deep
    ``[[[...]]]`` is 200 KB), which handlers catching ValueError let through: it killed the
    wrapper's steering thread and turned a bad request into a 500. NaN and Infinity are
    refused (not JSON); duplicate keys too unless ``unique_keys`` is off, so two readers can
    never disagree about what a command or claim said."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    decoder = _STRICT_JSON if unique_keys else _LENIENT_JSON
    try:
        return decoder.decode(text)
    except RecursionError:
        return on_a_fresh_stack(lambda: decoder.decode(text))


_T = TypeVar("_T")


def on_a_fresh_stack(work: Callable[[], _T]) -> _T:
    """Run a JSON decode or encode that ran out of recursion depth again, on a new thread's
    empty stack; ValueError if it fails there too.

    On Python 3.11 the caller's own frames count against the nesting the C decoder and
    encoder allow, so a message the daemon stored (it decodes each append a few dozen frames
    deep, and refuses what it cannot decode) could be unreadable from a deeply nested caller:
    a poison message. A new thread has fewer frames than the daemon's event loop ever does,
    so anything the daemon stored can be handled there; a real bomb fails again.
    """
    out: list[_T] = []

    def run() -> None:
        try:
            out.append(work())
        except (ValueError, RecursionError):
            pass

    worker = threading.Thread(target=run, name="chanctl-json", daemon=True)
    worker.start()
    worker.join()
    if not out:
        raise ValueError("JSON nested too deeply")
    return out[0]


# ===========================================================================================
# chanctl message model (client convention; owner: CLI/client library, issue 3)
#
# A chanctl channel is an ``application/json`` Durable Streams stream whose every message is
# one JSON object: {"type": ..., "time": ..., "data": "<text>"} -- or "data_b64" instead of
# "data" when the bytes are not UTF-8 -- plus "headers": {...} when present. The producer
# stamps "time" (RFC 3339, UTC, microseconds), so history replays with its original timing
# whichever daemon stored it. The daemon treats messages as opaque JSON values; only clients
# read this envelope, and they accept any other JSON value too (as data of type "json").
# ===========================================================================================

MESSAGE_CONTENT_TYPE = "application/json"
TYPE_MESSAGE = "message"
TYPE_STDOUT = "stdout"
TYPE_STDERR = "stderr"
TYPE_START = "start"
TYPE_EXIT = "exit"  # data: the job's exit status as decimal text, 128+N when killed by signal N
TYPE_FOREIGN = "json"  # a JSON value written by a non-chanctl producer, shown as its JSON text

# Durable named read positions (`tail --cursor`), served by daemon/http/cursors.py:
# GET|PUT|DELETE {CURSORS_PREFIX}{channel}?name=CURSOR; GET without name lists the channel's.
CURSORS_PREFIX = "/v1/cursors/"
_CURSOR_NAME_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,100}$")

_enc_str = json.encoder.encode_basestring  # the C escaper json.dumps uses for one str
_dump_foreign = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_time_cache: tuple[int, str] = (-1, "")


def validate_cursor_name(name: str) -> str:
    """Cursor names are one path-free token, so a cursor URL never needs escaping."""
    if not _CURSOR_NAME_RE.match(name):
        raise ChannelNameError(
            f"invalid cursor name {name!r}: use 1 to 100 letters, digits, '.', '_', '-' or ':'"
        )
    return name


def cursor_path(channel: str) -> str:
    """The URL path holding every cursor of ``channel``."""
    return CURSORS_PREFIX + channel


def format_time(ts: float) -> str:
    """Unix seconds as RFC 3339 UTC with microseconds; caches the per-second prefix because
    `pub` stamps every stdin line and strftime would otherwise dominate its cost."""
    global _time_cache
    sec = int(ts)
    usec = int((ts - sec) * 1_000_000)
    if _time_cache[0] != sec:
        _time_cache = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
    return f"{_time_cache[1]}.{usec:06d}Z"


def parse_time(text: str) -> float:
    """RFC 3339 (``Z`` or an offset) to unix seconds; raises ValueError on anything else."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return parsed.timestamp()


def encode_message(
    type_: str, data: str | bytes, ts: float, headers: Mapping[str, str] | None = None
) -> str:
    """One message as compact JSON text (hand-assembled: ~4x faster than json.dumps)."""
    raw = data
    if isinstance(data, str):
        try:
            data.encode()
            raw = b""
        except UnicodeEncodeError:  # lone surrogates, e.g. from surrogateescape'd argv
            raw = data.encode(errors="surrogateescape")
    if raw:
        assert isinstance(raw, bytes)
        try:
            data = raw.decode()
        except UnicodeDecodeError:
            data = ""
    if raw and not data:
        body = '"data_b64":"' + base64.b64encode(raw).decode() + '"'
    else:
        body = '"data":' + _enc_str(data if isinstance(data, str) else "")
    text = '{"type":' + _enc_str(type_) + ',"time":"' + format_time(ts) + '",' + body
    if headers:
        text += ',"headers":' + json.dumps(dict(headers), ensure_ascii=False, separators=(",", ":"))
    return text + "}"


@dataclass(frozen=True, slots=True)
class Message:
    """One message as a reader sees it: its position, its envelope and its bytes."""

    channel: str
    seq: int  # 0-based position; `offset` reads from this message on
    time: str
    type: str
    text: str | None  # the data when it is UTF-8
    data_b64: str | None  # the data, base64, when it is not
    headers: dict[str, str] | None = None

    @classmethod
    def from_wire(cls, channel: str, seq: int, value: object) -> Message:
        """Build from one element of a JSON read; foreign values become type ``json``."""
        if isinstance(value, dict) and isinstance(value.get("type", TYPE_MESSAGE), str):
            text, b64 = value.get("data"), value.get("data_b64")
            if isinstance(text, str) or (text is None and isinstance(b64, str)):
                hdrs = value.get("headers")
                return cls(
                    channel,
                    seq,
                    str(value.get("time", "")),
                    value.get("type", TYPE_MESSAGE),
                    text,
                    b64,
                    hdrs if isinstance(hdrs, dict) and hdrs else None,
                )
        try:
            raw = _dump_foreign(value)
        except RecursionError:  # as deep as the daemon allows, from a deep caller
            raw = on_a_fresh_stack(lambda: _dump_foreign(value))
        return cls(channel, seq, "", TYPE_FOREIGN, raw, None)

    @property
    def data(self) -> bytes:
        if self.text is not None:
            # A foreign producer may send a lone surrogate escape ("\\ud800"); keep it
            # (losslessly) rather than fail on a message chanctl did not write.
            return self.text.encode("utf-8", "surrogatepass")
        return base64.b64decode(self.data_b64 or "")

    @property
    def offset(self) -> str:
        return format_offset(self.seq)

    @property
    def next_offset(self) -> str:
        """Where a reader resumes to get the messages after this one."""
        return format_offset(self.seq + 1)

    @property
    def timestamp(self) -> float | None:
        try:
            return parse_time(self.time)
        except ValueError:
            return None

    def to_record(self) -> dict[str, object]:
        """The NDJSON record `tail --json` prints: one schema for the CLI and the library."""
        rec: dict[str, object] = {
            "channel": self.channel,
            "offset": self.offset,
            "seq": self.seq,
            "time": self.time,
            "type": self.type,
        }
        if self.text is not None:
            rec["data"] = self.text
        else:
            rec["data_b64"] = self.data_b64
        if self.headers:
            rec["headers"] = self.headers
        return rec

    def exit_status(self) -> int | None:
        """The wrapped job's exit code carried by an ``exit`` message, else None."""
        if self.type != TYPE_EXIT or self.text is None:
            return None
        try:
            return int(self.text.strip())
        except ValueError:
            return None


# ===========================================================================================
# Steering (issue 4; README "Steering and wrapping jobs"). Every channel has two lanes, both
# plain Durable Streams streams of chanctl messages: the *output* lane at STREAM_PREFIX + name
# and the *control* lane at CONTROL_PREFIX + name (created by its first append). The daemon
# stores the control lane under name + CONTROL_STORE_SUFFIX, a name no client can use ('#' is
# outside NAME_RULES), hides it from listings and deletes it with the channel.
# ===========================================================================================

CONTROL_PREFIX = "/v1/control/"
CONTROL_STORE_SUFFIX = "#control"
LANE_OUTPUT = "output"
LANE_CONTROL = "control"
LANE_QUERY = "lane"  # /v1/cursors/{channel}?lane=control addresses the control lane's cursors
# The control-lane cursor each new producer continues from (`run` advances it as it handles
# steering), so a message handled once is never handled again and one sent early still arrives.
PRODUCER_CURSOR = "producer"
# Producer liveness: PUT attaches or heartbeats, DELETE detaches, GET describes (daemon/liveness.py)
PRODUCER_PREFIX = "/v1/producer/"
RUN_PRODUCER_ID = "chanctl-run"  # the Producer-Id every `run` appends with; epochs fence runs

TYPE_STEER = "steer"  # control lane: a command for the wrapper ("stop", "signal USR1", ...)
TYPE_ACK = "ack"  # output lane: data is JSON {"steer": OFFSET, "cmd", "ok", "detail"}
# Message header: "1" when the data does not end a line (a split huge line, a flushed partial
# line); `--raw` then prints no newline after it, so output replays byte for byte.
HEADER_PARTIAL = "partial"


def lane_path(lane: str, name: str) -> str:
    """The Durable Streams URL path of one lane of a channel."""
    return (CONTROL_PREFIX if lane == LANE_CONTROL else STREAM_PREFIX) + name


def producer_path(name: str) -> str:
    return PRODUCER_PREFIX + name


# `chanctl fsck` against a running daemon. GET FSCK_PATH: {"backend", "channels": [every name a
# full check covers, control lanes included]}. POST FSCK_PATH {"channels": [NAME...]} (at most
# FSCK_MAX_NAMES): {"results": [FsckResult.to_json(), ...]} in that order; 404 for a missing one.
FSCK_PATH = "/v1/fsck"
FSCK_MAX_NAMES = 256


@dataclass(frozen=True, slots=True)
class FsckProblem:
    """Where a channel's data goes wrong: first unreadable offset (None when the problem is not
    about messages), the segment file (NATS: stored message) and byte, and why."""

    offset: str | None
    segment: str
    byte: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class FsckResult:
    """One channel checked by `chanctl fsck`, online or offline; one JSON line of `--json`."""

    channel: str
    ok: bool
    messages: int
    segments: int
    corrupt: FsckProblem | None
    torn_tail: FsckProblem | None
    path: str
    backend: str

    def to_json(self) -> dict[str, object]:
        def problem(pr: FsckProblem | None) -> dict[str, object] | None:
            if pr is None:
                return None
            return {
                "offset": pr.offset,
                "segment": pr.segment,
                "byte": pr.byte,
                "reason": pr.reason,
            }

        return {
            "channel": self.channel,
            "ok": self.ok,
            "messages": self.messages,
            "segments": self.segments,
            "corrupt": problem(self.corrupt),
            "torn_tail": problem(self.torn_tail),
            "path": self.path,
            "backend": self.backend,
        }

    @staticmethod
    def from_json(doc: Mapping[str, object]) -> FsckResult:
        """Parse one result; ValueError when it is not one."""

        def problem(v: object) -> FsckProblem | None:
            if v is None:
                return None
            if not isinstance(v, Mapping):
                raise ValueError(f"not an fsck problem: {v!r}")
            off, byte = v.get("offset"), v.get("byte")
            return FsckProblem(
                None if off is None else str(off),
                str(v.get("segment", "")),
                byte if isinstance(byte, int) else None,
                str(v.get("reason", "")),
            )

        try:
            return FsckResult(
                channel=str(doc["channel"]),
                ok=bool(doc["ok"]),
                messages=int(str(doc["messages"])),
                segments=int(str(doc["segments"])),
                corrupt=problem(doc.get("corrupt")),
                torn_tail=problem(doc.get("torn_tail")),
                path=str(doc.get("path") or ""),
                backend=str(doc.get("backend") or ""),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an fsck result: {exc!r}") from None
