"""Channel directory names and the per-channel ``meta.json``.

A channel's directory name is an *encoding* of its name, never the name itself, so no channel
name can reach outside the data directory, collide with another on a case-insensitive file
system, or exceed NAME_MAX: lowercase hex of the UTF-8 name, or for long names a hex prefix plus
a SHA-256 digest (the real name is then read back from ``meta.json``).

``meta.json`` holds what is fixed at creation (the ChannelConfig) plus the two mutable flags the
service sets (soft-deleted, fork reference count). It is small and rewritten atomically (temp
file, fsync, rename, directory fsync) so a crash leaves the old or the new version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..base import ChannelConfig, ForkOrigin, Retention

META_FILE = "meta.json"
META_FORMAT = 1
_FULL_HEX_MAX_BYTES = 100  # 200 hex chars; longer names get prefix + digest
_HASHED_PREFIX_BYTES = 48
_HASH_MARK = "-h"


def encode_dir_name(name: str) -> str:
    """The directory name for ``name``: ``[0-9a-f]`` and ``-`` only, at most 163 chars."""
    raw = name.encode("utf-8", "surrogatepass")
    if len(raw) <= _FULL_HEX_MAX_BYTES:
        return raw.hex()
    digest = hashlib.sha256(raw).hexdigest()[:64]
    return raw[:_HASHED_PREFIX_BYTES].hex() + _HASH_MARK + digest


def decode_dir_name(dirname: str) -> str | None:
    """The channel name a fully-encoded directory stands for; None when it is hashed (read
    ``meta.json``) or not a channel directory at all."""
    if _HASH_MARK in dirname:
        return None
    try:
        return bytes.fromhex(dirname).decode("utf-8", "surrogatepass")
    except ValueError:
        return None


def is_channel_dir_name(dirname: str) -> bool:
    head, _, digest = dirname.partition(_HASH_MARK)
    hexchars = set("0123456789abcdef")
    return bool(head) and set(head) <= hexchars and set(digest) <= hexchars


@dataclass(slots=True)
class ChannelMeta:
    name: str
    config: ChannelConfig
    deleted: bool = False
    fork_refs: int = 0


def meta_to_json(meta: ChannelMeta) -> bytes:
    cfg = meta.config
    fork = cfg.fork
    doc: dict[str, Any] = {
        "format": META_FORMAT,
        "name": meta.name,
        "content_type": cfg.content_type,
        "created_at": cfg.created_at,
        "ttl_s": cfg.ttl_s,
        "expires_at": cfg.expires_at,
        "fork": None
        if fork is None
        else {"source": fork.source, "seq": fork.seq, "sub_offset": fork.sub_offset},
        "retention": {
            "max_age_s": cfg.retention.max_age_s,
            "max_bytes": cfg.retention.max_bytes,
            "max_messages": cfg.retention.max_messages,
        },
        "deleted": meta.deleted,
        "fork_refs": meta.fork_refs,
    }
    return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"


def meta_from_json(data: bytes) -> ChannelMeta:
    """Parse ``meta.json``; ValueError (with the reason) when it is not one we wrote."""
    try:
        doc = json.loads(data)
        if doc.get("format") != META_FORMAT:
            raise ValueError(f"unsupported meta format {doc.get('format')!r}")
        fork = doc["fork"]
        ret = doc["retention"]
        config = ChannelConfig(
            content_type=str(doc["content_type"]),
            created_at=float(doc["created_at"]),
            ttl_s=doc["ttl_s"],
            expires_at=doc["expires_at"],
            fork=None
            if fork is None
            else ForkOrigin(str(fork["source"]), int(fork["seq"]), int(fork["sub_offset"])),
            retention=Retention(ret["max_age_s"], ret["max_bytes"], ret["max_messages"]),
        )
        return ChannelMeta(str(doc["name"]), config, bool(doc["deleted"]), int(doc["fork_refs"]))
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"malformed {META_FILE}: {exc!r}") from None
