"""Reading a channel, without I/O: what to request next and what an answer means.

A read is fully described by its next offset, which is why a tail survives reconnects and
daemon restarts: after any failure it simply asks again from ``ReadState.offset``. Catch-up
requests run until the daemon says ``Stream-Up-To-Date``; a following read then switches to
long-poll, which answers at once when data exists and batches naturally under load (one request
returns everything written since the previous one, up to the daemon's chunk size).
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass

from . import errors as ce
from . import protocol as p
from ._core import Request, check, next_seq, read_request
from .transport import Response

_esc_ascii = json.encoder.encode_basestring_ascii
_dump = json.JSONEncoder(separators=(",", ":")).encode


def time_key(text: str) -> str:
    """A string that sorts like the instant ``text`` names (canonical RFC 3339 UTC)."""
    if len(text) == 27 and text[10] == "T" and text[-1] == "Z":
        return text
    try:
        return p.format_time(p.parse_time(text))
    except ValueError:
        return ""


@dataclass(frozen=True, slots=True)
class Batch:
    """One answer's worth of messages and where the channel stands after it.

    ``values`` are the decoded JSON elements, message ``first_seq + i`` at index i; ``keep``
    lists the indices a filter let through (None: all). Renderers that need speed read
    ``values`` through ``raw_lines``; everything else uses ``messages()``.
    """

    channel: str
    first_seq: int
    values: list[object]
    next_seq: int
    up_to_date: bool
    closed: bool
    keep: list[int] | None = None

    def indices(self) -> range | list[int]:
        return range(len(self.values)) if self.keep is None else self.keep

    def messages(self) -> list[p.Message]:
        ch, first, vals = self.channel, self.first_seq, self.values
        return [p.Message.from_wire(ch, first + i, vals[i]) for i in self.indices()]

    def __len__(self) -> int:
        return len(self.values) if self.keep is None else len(self.keep)

    def raw_lines(self) -> bytes:
        """Each message's data bytes followed by a newline (the `--raw` output), except after a
        message marked ``partial`` (a piece of a longer line): `run` output replays exactly."""
        if self.keep is None:
            try:  # fast path: chanctl envelopes with UTF-8 data and no headers, the common case
                text = "\n".join([v["data"] for v in self.values])  # type: ignore[index]
                if not any(["headers" in v for v in self.values]):  # type: ignore[operator]
                    return (text + "\n").encode() if self.values else b""
            except (KeyError, TypeError, UnicodeEncodeError):
                pass
        return b"".join(m.data + _line_end(m) for m in self.messages())

    def texts(self) -> list[str] | None:
        """Every message's data as text when all are chanctl envelopes with UTF-8 data (the
        common case renderers speed up on); None otherwise."""
        if self.keep is not None:
            return None
        try:
            texts = [v["data"] for v in self.values]  # type: ignore[index]
        except (KeyError, TypeError):
            return None
        return texts if all(type(t) is str for t in texts) else None

    def ndjson(self) -> str:
        """The `--json` records of this batch, one per line: the same text as
        ``json.dumps(m.to_record(), separators=(",", ":"))`` per message, assembled by hand
        because `tail --json` must keep up with tens of thousands of messages a second."""
        esc = _esc_ascii
        channel = esc(self.channel)
        lines = []
        for i in self.indices():
            value, seq = self.values[i], self.first_seq + i
            if not (
                isinstance(value, dict)
                and type(value.get("data")) is str
                and type(value.get("type", "")) is str
                and "headers" not in value
            ):
                record = p.Message.from_wire(self.channel, seq, value).to_record()
                lines.append(_dump(record) + "\n")
                continue
            lines.append(
                f'{{"channel":{channel},"offset":"{seq:016d}_0000000000000000","seq":{seq},'
                f'"time":{esc(str(value.get("time", "")))},'
                f'"type":{esc(value.get("type", p.TYPE_MESSAGE))},"data":{esc(value["data"])}}}\n'
            )
        return "".join(lines)


def _line_end(msg: p.Message) -> bytes:
    return b"" if msg.headers and msg.headers.get(p.HEADER_PARTIAL) == "1" else b"\n"


class ReadState:
    """The position of one read and the flags the daemon last reported for it."""

    def __init__(self, channel: str, offset: str, follow: bool, lane: str = p.LANE_OUTPUT):
        self.channel = p.validate_name(channel)
        self.lane = lane
        self.offset = offset
        self.follow = follow
        self.up_to_date = False
        self.closed = False
        self._cursor = ""

    @property
    def done(self) -> bool:
        return self.closed or (self.up_to_date and not self.follow)

    def request(self) -> Request:
        live = self.follow and self.up_to_date and self.offset != p.OFFSET_START
        return read_request(self.channel, self.offset, live, self._cursor, self.lane)

    def feed(self, resp: Response) -> Batch:
        """Digest one answer; raises the typed error for refusals (404 included)."""
        check(resp, self.channel, "read")
        values = _decode_values(resp, self.channel) if resp.status == 200 else []
        end = next_seq(resp)
        self.offset = resp.header(p.H_NEXT_OFFSET) or self.offset
        self._cursor = resp.header(p.H_CURSOR) or self._cursor
        # A long-poll 204 means "nothing new yet"; Up-To-Date on a 200 means "that was all".
        self.up_to_date = resp.status == 204 or _flag(resp, p.H_UP_TO_DATE)
        self.closed = _flag(resp, p.H_CLOSED)
        return Batch(self.channel, end - len(values), values, end, self.up_to_date, self.closed)


def _flag(resp: Response, name: str) -> bool:
    return (resp.header(name) or "").lower() == "true"


def _decode_values(resp: Response, channel: str) -> list[object]:
    if not resp.body:
        return []
    ctype = p.parse_content_type(resp.header("Content-Type"))
    if ctype is None or not ctype.is_json:
        raise ce.NotAChanctlChannel(
            f"channel {channel!r} holds {ctype.raw if ctype else 'untyped'} data, not chanctl "
            "JSON messages",
            hint="read it with a Durable Streams client instead",
        )
    try:
        values = p.loads_json(resp.body, unique_keys=False)
    except ValueError as exc:
        msg = f"reading {channel!r}: the daemon's answer is not JSON: {exc}"
        raise ce.RequestFailed(msg) from None
    if not isinstance(values, list):
        raise ce.RequestFailed(f"reading {channel!r}: the daemon did not answer a JSON array")
    return values


def first_time(resp: Response) -> str | None:
    """The time stamp of the first message in a read answer, decoding only that message."""
    if resp.status != 200 or len(resp.body) < 2:
        return None
    text = resp.body.decode(errors="replace")
    try:
        value, _ = json.JSONDecoder().raw_decode(text, 1)
    except ValueError:
        return None
    return time_key(str(value.get("time", ""))) if isinstance(value, dict) else None


def bisect_time(lo: int, hi: int, since_key: str) -> Generator[int, str | None, int]:
    """Find the first seq in [lo, hi) stamped at or after ``since_key``.

    Producer clocks make time stamps nearly, not strictly, ordered; the bisection lands close
    and the reader then skips the few earlier-stamped messages it still sees. The caller sends
    back the probed message's time key (None when it could not be read).
    """
    while lo < hi:
        mid = (lo + hi) // 2
        key = yield mid
        if key is not None and key < since_key:
            lo = mid + 1
        else:
            hi = mid
    return lo


class Filter:
    """Client-side selection: message types, a time window, and the job's exit status."""

    def __init__(self, types: frozenset[str] | None, since_key: str, until_key: str) -> None:
        self.types = types
        self.since_key = since_key  # skip messages before this until one reaches it
        self.until_key = until_key  # stop at the first message after this
        self.finished = False
        self.last_value: object = None

    def apply(self, batch: Batch) -> Batch:
        """Return ``batch`` narrowed to the selected messages; sets ``finished`` past --until."""
        if batch.values:
            self.last_value = batch.values[-1]
        if self.types is None and not self.since_key and not self.until_key:
            return batch
        keep: list[int] = []
        for i in batch.indices():
            value = batch.values[i]
            stamp = time_key(str(value.get("time", ""))) if isinstance(value, dict) else ""
            if self.since_key and stamp < self.since_key:
                continue
            self.since_key = ""
            if self.until_key and stamp > self.until_key:
                self.finished = True
                break
            if self.types is None or _type_of(value) in self.types:
                keep.append(i)
        return Batch(
            batch.channel,
            batch.first_seq,
            batch.values,
            batch.next_seq,
            batch.up_to_date,
            batch.closed,
            keep,
        )


def _type_of(value: object) -> str:
    if isinstance(value, dict):
        kind = value.get("type", p.TYPE_MESSAGE)
        return kind if isinstance(kind, str) else p.TYPE_FOREIGN
    return p.TYPE_FOREIGN


def paced(
    batch: Batch, speed: float, prev: float | None
) -> tuple[list[tuple[float, Batch]], float | None]:
    """Split ``batch`` into one-message batches, each with the delay that re-creates the
    original gap before it divided by ``speed`` (replay --speed/--realtime). Returns the pieces
    and the time stamp of the last message, to pass as ``prev`` next time."""
    pieces: list[tuple[float, Batch]] = []
    order = list(batch.indices())
    for i in order:
        stamp = p.Message.from_wire(batch.channel, 0, batch.values[i]).timestamp
        delay = 0.0
        if stamp is not None:
            if prev is not None and stamp > prev:
                delay = (stamp - prev) / speed
            prev = stamp
        piece = Batch(
            batch.channel,
            batch.first_seq,
            batch.values,
            batch.first_seq + i + 1,
            batch.up_to_date and i == order[-1],
            batch.closed,
            [i],
        )
        pieces.append((delay, piece))
    return pieces, prev
