"""``AsyncTail``: ``async for`` over a channel; the asyncio twin of ``chanctl._sync_read.Tail``.

The read logic itself (what to request, what an answer means, filters, the time bisection)
lives in ``chanctl.reading`` and is shared; this module only awaits where ``Tail`` blocks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from . import _core as core
from . import protocol as p
from ._sync_read import CURSOR_SAVE_INTERVAL, LONG_POLL_SOCKET_TIMEOUT, TailOptions, _key
from .errors import TimedOut
from .reading import Batch, Filter, ReadState, bisect_time, first_time, paced
from .transport import Response

if TYPE_CHECKING:
    from .aclient import AsyncClient


class AsyncTail:
    """Iterate messages (``async for m in tail``) or answers (``tail.batches()``)."""

    def __init__(self, client: AsyncClient, opts: TailOptions) -> None:
        self.client = client
        self.opts = opts
        self.offset: str | None = None
        self.closed = False
        self._deadline = None if opts.timeout is None else time.monotonic() + opts.timeout
        self._filter = Filter(opts.types, _key(opts.since), _key(opts.until))
        self._saved: str | None = None
        self._last_save = 0.0
        self._pace_prev: float | None = None

    async def __aiter__(self) -> AsyncIterator[p.Message]:
        async for batch in self.batches():
            for msg in batch.messages():
                yield msg
                self.offset = msg.next_offset

    async def batches(self) -> AsyncIterator[Batch]:
        opts = self.opts
        state = ReadState(opts.channel, await self._start_offset(), opts.follow, opts.lane)
        self.offset = state.offset
        while not state.done and not self._filter.finished:
            batch = self._filter.apply(state.feed(await self._fetch(state)))
            if self.opts.speed and len(batch):
                pieces, self._pace_prev = paced(batch, self.opts.speed, self._pace_prev)
                for delay, piece in pieces:
                    await asyncio.sleep(delay)  # the replay's own timing, not a poll
                    yield piece
            elif len(batch) or batch.up_to_date:
                yield batch
            self.offset, self.closed = state.offset, state.closed
            await self._maybe_save(force=False)
        await self.commit()

    async def commit(self, through: Batch | None = None) -> None:
        """Save the cursor now; ``through`` is the last batch the caller fully handled."""
        if through is not None:
            self.offset = p.format_offset(through.next_seq)
        await self._maybe_save(force=True)

    def exit_status(self) -> int | None:
        """The exit code the wrapped job reported in its last ``exit`` message, if seen."""
        value = self._filter.last_value
        if value is None:
            return None
        return p.Message.from_wire(self.opts.channel, 0, value).exit_status()

    async def _fetch(self, state: ReadState) -> Response:
        while True:
            wait: float | None = LONG_POLL_SOCKET_TIMEOUT
            if self._deadline is not None:
                wait = self._deadline - time.monotonic()
                if wait <= 0:
                    raise TimedOut(f"no end of {self.opts.channel!r} within {self.opts.timeout}s")
            try:
                return await self.client.send_request(state.request(), wait)
            except TimeoutError:
                continue

    async def _head(self) -> Response:
        delay = 0.05
        while True:
            head = core.head_request(self.opts.channel, self.opts.lane)
            resp = await self.client.send_request(head)
            if resp.status != 404 or not self.opts.wait:
                core.check(resp, self.opts.channel, "read")
                return resp
            if self._deadline is not None and time.monotonic() >= self._deadline:
                raise TimedOut(f"channel {self.opts.channel!r} did not appear in time")
            await asyncio.sleep(delay)  # nothing to long-poll on until the channel exists
            delay = min(delay * 2, 0.5)

    async def _start_offset(self) -> str:
        opts = self.opts
        if opts.cursor is not None:
            saved = await self.client.get_cursor(opts.channel, opts.cursor, lane=opts.lane)
            if saved is not None:
                self._saved = saved
                await self._head()
                return saved
        if opts.start_at_cursor is not None:  # see Tail._start_offset
            at = await self.client.get_cursor(opts.channel, opts.start_at_cursor, lane=opts.lane)
            await self._head()
            return at or opts.start or p.OFFSET_START
        head = await self._head()
        if opts.start is not None and opts.since is None:
            return opts.start
        end = core.next_seq(head)
        first_hdr = head.header(p.H_FIRST_OFFSET)
        first = p.parse_offset(first_hdr) if first_hdr else 0
        if opts.since is not None:
            return p.format_offset(await self._bisect(first, end, _key(opts.since)))
        if opts.last is None:
            return p.OFFSET_START
        return p.format_offset(max(first, end - opts.last))

    async def _bisect(self, lo: int, hi: int, since_key: str) -> int:
        search = bisect_time(lo, hi, since_key)
        try:
            probe = next(search)
            while True:
                offset = p.format_offset(probe)
                req = core.read_request(self.opts.channel, offset, lane=self.opts.lane)
                probe = search.send(first_time(await self.client.send_request(req)))
        except StopIteration as done:
            return int(done.value)

    async def _maybe_save(self, force: bool) -> None:
        opts = self.opts
        if opts.cursor is None or self.offset in (None, self._saved):
            return
        if self.offset in (p.OFFSET_START, p.OFFSET_NOW):
            return
        now = time.monotonic()
        if force or now - self._last_save >= CURSOR_SAVE_INTERVAL:
            assert self.offset is not None
            await self.client.set_cursor(opts.channel, opts.cursor, self.offset, opts.lane)
            self._saved, self._last_save = self.offset, now
