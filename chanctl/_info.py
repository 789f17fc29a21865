"""Result types of the client library and how they are read off the daemon's answers."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from . import _core as core
from . import protocol as p
from .errors import CursorNotFound, RequestFailed
from .transport import Response


@dataclass(frozen=True)
class Published:
    """What a publish call appended: ``count`` messages ending just before ``next_offset``."""

    channel: str
    count: int
    next_offset: str

    @property
    def last_seq(self) -> int | None:
        """Seq of the last message appended (None when nothing was)."""
        if not self.count or not self.next_offset:
            return None
        return p.parse_offset(self.next_offset) - 1

    @property
    def last_offset(self) -> str | None:
        """Offset of the last message appended: ``tail --from`` it to read it again."""
        seq = self.last_seq
        return None if seq is None else p.format_offset(seq)


@dataclass(frozen=True)
class ChannelInfo:
    """One channel as ``chanctl ls`` / ``chanctl info`` show it; None means "not reported"."""

    name: str
    messages: int | None = None  # ever appended (= the seq the next message gets)
    first_seq: int | None = None  # earliest retained (retention raises it)
    bytes: int | None = None
    created: float | None = None  # unix seconds
    last_write: float | None = None
    closed: bool | None = None
    readers: int | None = None  # live readers (long-poll / SSE) right now
    content_type: str | None = None
    ttl: int | None = None
    expires_at: str | None = None
    fsync: str | None = None
    retention: dict[str, Any] | None = None
    producers: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # anything else the daemon reports

    @property
    def next_offset(self) -> str | None:
        return None if self.messages is None else p.format_offset(self.messages)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        extra = doc.pop("extra")
        doc["next_offset"] = self.next_offset
        return {**extra, **doc}


_ALIASES = {
    "messages": ("messages", "message_count", "next_seq", "count"),
    "first_seq": ("first_seq",),
    "bytes": ("bytes", "size_bytes", "size"),
    "created": ("created", "created_at"),
    "last_write": ("last_write", "last_write_at", "modified"),
    "closed": ("closed",),
    "readers": ("readers", "live_readers"),
    "content_type": ("content_type",),
    "ttl": ("ttl", "ttl_s"),
    "expires_at": ("expires_at",),
    "fsync": ("fsync", "fsync_policy"),
    "retention": ("retention",),
    "producers": ("producers",),
}


def info_from_entry(entry: dict[str, Any]) -> ChannelInfo:
    """Map one listing entry onto ChannelInfo, keeping unknown keys in ``extra``."""
    values: dict[str, Any] = {}
    used = {"name"}
    for attr, keys in _ALIASES.items():
        for key in keys:
            if key in entry:
                values[attr] = entry[key]
                used.add(key)
                break
    for key in ("first_offset", "next_offset"):
        if isinstance(entry.get(key), str):
            used.add(key)
            attr = "first_seq" if key == "first_offset" else "messages"
            values.setdefault(attr, p.parse_offset(entry[key]))
    extra = {k: v for k, v in entry.items() if k not in used}
    return ChannelInfo(name=str(entry.get("name", "")), extra=extra, **values)


def _entries(resp: Response) -> list[dict[str, Any]]:
    doc = json.loads(resp.body or b"[]")
    items = doc.get("channels", []) if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise RequestFailed("the daemon's channel list is not a JSON list", status=resp.status)
    return [item for item in items if isinstance(item, dict)]


def parse_list(resp: Response) -> list[ChannelInfo]:
    infos = [info_from_entry(e) for e in _entries(resp)]
    return sorted(infos, key=lambda i: i.name)


def parse_info(channel: str, head: Response, listing: Response) -> ChannelInfo:
    """HEAD is authoritative for offsets and flags; the listing adds counts and limits."""
    entry: dict[str, Any] = {"name": channel}
    if 200 <= listing.status < 300:
        entry.update(next((e for e in _entries(listing) if e.get("name") == channel), {}))
    entry["messages"] = core.next_seq(head)
    if head.header(p.H_FIRST_OFFSET):
        entry["first_seq"] = p.parse_offset(head.header(p.H_FIRST_OFFSET) or "")
    entry["closed"] = p.is_true(head.header(p.H_CLOSED))
    entry["content_type"] = head.header("Content-Type")
    for key, header in (
        ("ttl", p.H_TTL),
        ("expires_at", p.H_EXPIRES_AT),
        ("fsync", p.H_FSYNC_POLICY),
    ):
        value = head.header(header)
        if value is not None:
            entry[key] = int(value) if key == "ttl" and value.isdigit() else value
    for key in ("next_offset", "first_offset"):
        entry.pop(key, None)
    return info_from_entry(entry)


def cursor_offset(resp: Response, channel: str, name: str) -> str | None:
    """The offset in a cursor GET answer (``"offset": null`` when the cursor is not set yet)."""
    if resp.status == 404:  # the route itself is missing: an older or foreign daemon
        raise CursorNotFound(
            f"cannot read cursor {name!r}: the daemon at this address does not keep cursors",
            hint="upgrade the daemon, or track offsets yourself with --from",
        )
    core.check(resp, channel, f"read cursor {name!r} of")
    doc = json.loads(resp.body or b"{}")
    offset = doc.get("offset") if isinstance(doc, dict) else None
    if offset is None:
        return None
    if not isinstance(offset, str):
        raise RequestFailed(f"cursor {name!r} of {channel!r}: malformed answer")
    p.parse_offset(offset)
    return offset


def parse_cursors(resp: Response) -> dict[str, str]:
    doc = json.loads(resp.body or b"{}")
    items = doc.get("cursors", []) if isinstance(doc, dict) else []
    return {str(c["name"]): str(c["offset"]) for c in items if isinstance(c, dict)}


def describe_producer(doc: object) -> str:
    """One line for a channel's ``run`` producer (``ls``, ``info``): attached, lost or exited."""
    if not isinstance(doc, dict) or doc.get("state") in (None, "none"):
        return "-"
    import time

    def clock(key: str) -> str:
        value = doc.get(key)
        return time.strftime("%H:%M:%S", time.localtime(value)) if isinstance(value, float) else "?"

    who = f"pid {doc.get('pid')} on {doc.get('host')}"
    state = doc.get("state")
    if state == "attached":
        return f"attached ({who}, since {clock('since')})"
    if state == "lost":
        return f"lost ({who}, last seen {clock('last_seen')})"
    return f"{state} ({who}, exit {doc.get('exit_status')})"
