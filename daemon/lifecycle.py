"""Creating and deleting channels, forks included (PROTOCOL.md sections 5.1, 5.3 and forks).

All of it runs under the service's lineage lock, because a fork ties two channels together: the
source's fork reference count, its soft-deleted flag and the decision to delete it for good must
change atomically with the creation or deletion of the fork.
"""

from __future__ import annotations

import time

from chanctl.protocol import DEFAULT_CONTENT_TYPE, format_offset, parse_content_type

from . import retention
from .appends import check_message_sizes
from .core import ServiceCore
from .errors import BadRequest, Conflict, Gone
from .jsonmode import split_messages
from .model import CreateRequest, CreateResult, ForkRequest
from .reads import first_readable, message_range
from .store.base import (
    AppendBatch,
    ChannelConfig,
    ChannelExists,
    ChannelState,
    ForkOrigin,
    Retention,
)


async def create(core: ServiceCore, req: CreateRequest) -> CreateResult:
    """PUT: create the channel, or confirm an identical one (200); anything else is 409."""
    async with core.lineage:
        st = await core.store.get(req.name)
        if st is not None and not st.deleted and core.expired(st):
            await core.remove_expired_locked(st)
            st = await core.store.get(req.name)
        if st is not None:
            return _confirm(core, st, req)
        return await _create_new(core, req)


def _confirm(core: ServiceCore, st: ChannelState, req: CreateRequest) -> CreateResult:
    if st.deleted:
        raise Conflict(
            f"channel {st.name!r} was deleted but forks still read it; its name cannot be "
            "reused until they are gone"
        )
    differs = config_difference(st, req, core.settings.default_retention)
    if differs:
        raise Conflict(f"channel {st.name!r} already exists with a different {differs}")
    return CreateResult(False, st.config.content_type, st.durable_seq, st.durable_closed)


def config_difference(
    st: ChannelState, req: CreateRequest, default_retention: Retention
) -> str | None:
    """What makes an existing channel differ from a create request, or None if it matches.
    Settings a fork request leaves out are inherited, so they match whatever the fork got.
    Retention limits a request leaves out mean the daemon's default, as they would on creation
    (a daemon restarted with other defaults therefore refuses a repeated bare PUT: the channel
    it would create now is not the one that exists)."""
    cfg = st.config
    inherits = req.fork is not None
    if not _same_media(cfg.content_type, req.content_type, inherits):
        return "content type"
    asked = (req.ttl_s, req.expires_at)
    if (asked != (None, None) or not inherits) and asked != (cfg.ttl_s, cfg.expires_at):
        return "TTL or expiry"
    if (req.fork is None) != (cfg.fork is None):
        return "fork origin"
    if req.fork is not None and cfg.fork is not None and not _same_fork(cfg.fork, req.fork):
        return "fork origin"
    if req.closed != st.closed:
        return "closed status"
    if retention.resolve(req.retention, default_retention) != cfg.retention:
        return f"retention (it has {retention.describe(cfg.retention)})"
    return None


def _same_media(have: str, asked: str | None, inherits: bool) -> bool:
    if asked is None:
        asked = None if inherits else DEFAULT_CONTENT_TYPE
    if asked is None:
        return True
    a, b = parse_content_type(have), parse_content_type(asked)
    return a is not None and b is not None and a.same_type(b)


def _same_fork(have: ForkOrigin, asked: ForkRequest) -> bool:
    return (
        have.source == asked.source
        and (asked.offset is None or asked.offset == have.seq)
        and have.sub_offset == asked.sub_offset
    )


async def _create_new(core: ServiceCore, req: CreateRequest) -> CreateResult:
    content_type = req.content_type or DEFAULT_CONTENT_TYPE
    ttl_s, expires_at = req.ttl_s, req.expires_at
    origin: ForkOrigin | None = None
    prefix: list[bytes] = []
    src: ChannelState | None = None
    if req.fork is not None:
        src = await _fork_source(core, req.fork)
        content_type = _fork_content_type(src, req.content_type)
        if ttl_s is None and expires_at is None:
            ttl_s, expires_at = src.config.ttl_s, src.config.expires_at
        origin, prefix = await _fork_point(core, src, req.fork, content_type)
    ct = parse_content_type(content_type)
    if ct is None:
        raise BadRequest(f"invalid Content-Type {content_type!r}")
    messages = prefix + split_messages(req.body, ct.is_json, allow_empty_array=True)
    check_message_sizes(core, messages)
    now = time.time()
    keep = retention.resolve(req.retention, core.settings.default_retention)
    config = ChannelConfig(ct.canonical, now, ttl_s, expires_at, origin, keep)
    try:
        st = await core.store.create(req.name, config, AppendBatch(messages, close=req.closed))
    except ChannelExists:
        raise Conflict(f"channel {req.name!r} was created concurrently") from None
    if src is not None:
        await core.store.set_fork_refs(src.name, src.fork_refs + 1)
    core.touch(req.name, now)
    core.expired(st, now)  # registers a channel with a lifetime for the expiry sweep
    return CreateResult(True, st.config.content_type, st.durable_seq, st.durable_closed)


async def _fork_source(core: ServiceCore, fork: ForkRequest) -> ChannelState:
    try:
        return await core.lookup(fork.source, locked=True)
    except Gone:
        raise Conflict(
            f"cannot fork {fork.source!r}: it was deleted (only existing forks still read it)"
        ) from None


def _fork_content_type(src: ChannelState, asked: str | None) -> str:
    """A fork holds the same kind of data as its source: inherit the type, or insist it matches."""
    if asked is None:
        return src.config.content_type
    if not _same_media(src.config.content_type, asked, False):
        raise Conflict(
            f"a fork must keep its source's content type {src.config.content_type!r}, not {asked!r}"
        )
    return asked


async def _fork_point(
    core: ServiceCore, src: ChannelState, fork: ForkRequest, content_type: str
) -> tuple[ForkOrigin, list[bytes]]:
    """Where the fork diverges, and the messages its own log starts with.

    A sub-offset cuts into the message at the fork offset: for binary channels the fork gets that
    message's first ``sub_offset`` bytes, for JSON channels the ``sub_offset`` messages that
    follow. The copied prefix becomes the fork's own first data, so reads need no special case.
    """
    seq = src.durable_seq if fork.offset is None else fork.offset
    if seq > src.durable_seq:
        raise BadRequest(
            f"Stream-Fork-Offset {format_offset(seq)} is beyond the end of {src.name!r} "
            f"({format_offset(src.durable_seq)})"
        )
    if seq < await first_readable(core, src):
        raise Gone(f"Stream-Fork-Offset {format_offset(seq)} is no longer retained")
    origin = ForkOrigin(src.name, seq, fork.sub_offset)
    if fork.sub_offset == 0:
        return origin, []
    ct = parse_content_type(content_type)
    if ct is not None and ct.is_json:
        return origin, await _json_prefix(core, src, seq, fork.sub_offset)
    return origin, await _binary_prefix(core, src, seq, fork.sub_offset)


async def _json_prefix(core: ServiceCore, src: ChannelState, seq: int, count: int) -> list[bytes]:
    available = src.durable_seq - seq
    if count > available:
        raise BadRequest(
            f"Stream-Fork-Sub-Offset {count} overshoots: only {available} messages follow the "
            "fork offset"
        )
    return await message_range(core, src, seq, count)


async def _binary_prefix(core: ServiceCore, src: ChannelState, seq: int, size: int) -> list[bytes]:
    if seq >= src.durable_seq:
        raise BadRequest("Stream-Fork-Sub-Offset needs a message at the fork offset to cut into")
    (message,) = await message_range(core, src, seq, 1)
    if size > len(message):
        raise BadRequest(
            f"Stream-Fork-Sub-Offset {size} overshoots the {len(message)}-byte message at the "
            "fork offset"
        )
    return [message[:size]]


async def delete(core: ServiceCore, name: str) -> None:
    """DELETE: gone for good, or soft-deleted while forks still read its history."""
    async with core.lineage:
        st = await core.lookup(name, locked=True)
        await core.remove_locked(st)
