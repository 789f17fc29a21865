"""Reading channels: offsets, stitched fork history, and waiting for new data.

A fork's messages below its fork point live in its source (which may itself be a fork); the
fork's own log starts at the fork point. Reads stitch the two in one offset space, so a client
cannot tell a fork from a copy. Only durable messages are ever returned, and they travel as the
store's raw buffers: nothing on this path allocates an object per message.
"""

from __future__ import annotations

from chanctl.protocol import OFFSET_NOW, OFFSET_START, OffsetError, parse_offset

from .core import ServiceCore
from .errors import BadRequest, Gone
from .model import Chunk, split
from .store.base import ChannelState

_UNBOUNDED = 1 << 62
_MAX_MESSAGES = 1 << 30


class _Parts:
    """Raw read results collected across a fork chain, in offset order."""

    def __init__(self) -> None:
        self.buffers: list[bytes] = []
        self.lengths: list[int] = []
        self.size = 0

    def data(self) -> bytes:
        return self.buffers[0] if len(self.buffers) == 1 else b"".join(self.buffers)


async def first_readable(core: ServiceCore, st: ChannelState) -> int:
    """The lowest offset a read can start at: where retention left the log, following forks
    into their sources for the inherited part."""
    fork = st.config.fork
    if fork is None or st.first_seq > fork.seq:
        return st.first_seq
    src = await core.store.get(fork.source)
    if src is None:
        return fork.seq
    return min(fork.seq, await first_readable(core, src))


async def resolve_offset(core: ServiceCore, st: ChannelState, text: str) -> int:
    """Turn a request's offset (``-1``, ``now`` or a minted offset) into a sequence number."""
    if text == OFFSET_START:
        return await first_readable(core, st)
    if text == OFFSET_NOW:
        return st.durable_seq
    try:
        seq = parse_offset(text)
    except OffsetError as exc:
        raise BadRequest(str(exc)) from None
    if seq > st.durable_seq:
        raise BadRequest(
            f"offset {text!r} is beyond the end of channel {st.name!r}; "
            "use an offset from Stream-Next-Offset"
        )
    return seq


async def read_chunk(core: ServiceCore, st: ChannelState, seq: int, max_bytes: int) -> Chunk:
    """Up to ``max_bytes`` of durable messages from ``seq`` (at least one when any exist)."""
    parts = _Parts()
    nxt = await _gather(core, st, seq, _UNBOUNDED, max_bytes, parts)
    # Tail and closure are checked together, after the read: the store updates them atomically,
    # so "closed" is only reported when this chunk really reaches the final offset.
    at_tail = nxt >= st.durable_seq
    return Chunk(
        state=st,
        start_seq=seq,
        next_seq=nxt,
        data=parts.data(),
        lengths=parts.lengths,
        up_to_date=at_tail,
        closed=at_tail and st.durable_closed,
    )


def tail_chunk(st: ChannelState) -> Chunk:
    """An empty read at the durable tail (``offset=now``), reporting closure as a read would."""
    tail = st.durable_seq
    return Chunk(st, tail, tail, b"", [], up_to_date=True, closed=st.durable_closed)


async def _gather(
    core: ServiceCore, st: ChannelState, seq: int, limit: int, budget: int, parts: _Parts
) -> int:
    """Collect messages [seq, limit) of ``st`` into ``parts`` until ``budget`` bytes are used,
    reading a fork's inherited part from its source. Returns the next sequence number."""
    fork = st.config.fork
    # Once the fork's own retention dropped the segment at its fork point, its inherited history
    # is gone too (first_readable says so): the store answers ChannelGone below first_seq.
    if fork is not None and seq < fork.seq and st.first_seq <= fork.seq:
        src = await core.store.get(fork.source)
        if src is None:
            raise Gone(f"the history of fork {st.name!r} is no longer available")
        upto = min(limit, fork.seq)
        seq = await _gather(core, src, seq, upto, budget, parts)
        if seq < upto or parts.size >= budget:
            return seq
    if seq >= limit:
        return seq
    left = budget - parts.size
    res = await core.store.read_raw(st.name, seq, left, min(limit - seq, _MAX_MESSAGES))
    if res.next_seq > seq:
        parts.buffers.append(res.data)
        parts.lengths += res.lengths
        parts.size += len(res.data)
    return res.next_seq


async def message_range(core: ServiceCore, st: ChannelState, seq: int, count: int) -> list[bytes]:
    """Exactly ``count`` messages from ``seq`` (the caller checked they exist)."""
    parts = _Parts()
    nxt = seq
    while nxt < seq + count:
        before = nxt
        nxt = await _gather(core, st, nxt, seq + count, _UNBOUNDED, parts)
        if nxt == before:
            raise Gone(f"messages {seq}..{seq + count} of {st.name!r} are not available")
    return split(parts.data(), parts.lengths)


async def wait_for_data(core: ServiceCore, st: ChannelState, seq: int, timeout: float) -> bool:
    """Wait until the channel's own log has a durable message at ``seq`` or is closed or deleted.

    A fork waits on its own log only: the source's later appends are not part of the fork.
    """
    if seq < st.durable_seq or st.durable_closed:
        return True
    return await core.store.wait(st.name, seq, timeout)
