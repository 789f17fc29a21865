"""``Tail``: the iterator behind ``Client.tail`` and ``Client.replay``.

It owns a connection of its own (a long-poll must not block other threads using the client),
resumes from its offset after any reconnect, and keeps an optional durable cursor up to date.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import _core as core
from . import errors as ce
from . import protocol as p
from .errors import TimedOut
from .reading import Batch, Filter, ReadState, bisect_time, first_time, paced
from .transport import Response, Transport

if TYPE_CHECKING:
    from .client import Client

LONG_POLL_SOCKET_TIMEOUT = 120.0  # far above the daemon's long-poll wait: a hung socket
CURSOR_SAVE_INTERVAL = 0.5  # seconds between cursor saves while messages flow


@dataclass(frozen=True)
class TailOptions:
    """Where a read starts and when it stops; see ``Client.tail`` for the meaning of each."""

    channel: str
    last: int | None = 10
    start: str | None = None
    since: float | None = None
    until: float | None = None
    types: frozenset[str] | None = None
    follow: bool = True
    wait: bool = True
    timeout: float | None = None
    cursor: str | None = None
    speed: float | None = None
    lane: str = p.LANE_OUTPUT  # LANE_CONTROL reads the channel's steering messages
    # Start where this cursor of the lane points (``start`` when it is unset) without moving
    # it: ``recv`` reads from the producer position, looked up when the read begins.
    start_at_cursor: str | None = None

    @classmethod
    def build(
        cls,
        channel: str,
        *,
        last: int | None = 10,
        start: str | int | None = None,
        since: float | None = None,
        until: float | None = None,
        types: Iterable[str] | None = None,
        follow: bool = True,
        wait: bool = True,
        timeout: float | None = None,
        cursor: str | None = None,
        speed: float | None = None,
        lane: str = p.LANE_OUTPUT,
        start_at_cursor: str | None = None,
    ) -> TailOptions:
        ce.checked(p.validate_name, channel)
        for name in (cursor, start_at_cursor):
            if name is not None:
                ce.checked(p.validate_cursor_name, name)
        if lane not in (p.LANE_OUTPUT, p.LANE_CONTROL):
            raise ce.InvalidArgument(f"unknown lane {lane!r}: use output or control")
        return cls(
            channel,
            last,
            _offset_of(start),
            since,
            until,
            frozenset(types) if types else None,
            follow,
            wait,
            timeout,
            cursor,
            speed,
            lane,
            start_at_cursor,
        )


def _offset_of(start: str | int | None) -> str | None:
    """Accept a seq number, a wire offset or a keyword; return a wire offset."""
    if start is None or isinstance(start, int):
        return None if start is None else p.format_offset(start)
    if start in (p.OFFSET_START, p.OFFSET_NOW):
        return start
    keyword = {"start": p.OFFSET_START, "beginning": p.OFFSET_START, "end": p.OFFSET_NOW}
    if start in keyword:
        return keyword[start]
    if start.isdigit():
        return p.format_offset(int(start))
    ce.checked(lambda o: p.format_offset(p.parse_offset(o)), start)
    return start


class Tail:
    """Iterate messages (``for m in tail``) or whole answers (``tail.batches()``).

    ``offset`` is where the next read starts; after the iterator ends, ``closed`` tells whether
    the channel was closed and ``exit_status()`` the wrapped job's exit code, if it reported one.
    """

    def __init__(self, client: Client, opts: TailOptions) -> None:
        self.client = client
        self.opts = opts
        self.offset: str | None = None
        self.closed = False
        self._transport = Transport(client.endpoint, client._transport.timeout)
        self._deadline = None if opts.timeout is None else time.monotonic() + opts.timeout
        self._filter = Filter(opts.types, _key(opts.since), _key(opts.until))
        self._saved: str | None = None
        self._last_save = 0.0

    def __iter__(self) -> Iterator[p.Message]:
        for batch in self.batches():
            for msg in batch.messages():
                yield msg
                self.offset = msg.next_offset

    def batches(self) -> Iterator[Batch]:
        """Yield each answer with messages, and each 'up to date' moment (maybe empty)."""
        try:
            opts = self.opts
            state = ReadState(opts.channel, self._start_offset(), opts.follow, opts.lane)
            self.offset = state.offset
            while not state.done and not self._filter.finished:
                batch = self._filter.apply(state.feed(self._fetch(state.request(), state)))
                if len(batch) or batch.up_to_date:
                    yield from self._paced(batch) if self.opts.speed else (batch,)
                self.offset = state.offset
                self.closed = state.closed
                self._maybe_save(force=False)
        finally:
            self._transport.close()
        self.commit()

    def commit(self, through: Batch | None = None) -> None:
        """Save the cursor now; ``through`` is the last batch the caller fully handled (the
        CLI passes the last one it printed when Ctrl-C interrupts it)."""
        if through is not None:
            self.offset = p.format_offset(through.next_seq)
        self._maybe_save(force=True)

    def exit_status(self) -> int | None:
        """The exit code of the job that wrote the channel, from its last ``exit`` message."""
        value = self._filter.last_value
        if value is None and self.closed and self.offset not in (None, p.OFFSET_START):
            value = self._last_value()
        if value is None:
            return None
        return p.Message.from_wire(self.opts.channel, 0, value).exit_status()

    # -- internals --------------------------------------------------------------------------------

    def _fetch(self, req: core.Request, state: ReadState) -> Response:
        """One request, bounded by ``timeout``; a socket that stalls is just reconnected."""
        while True:
            wait: float | None = LONG_POLL_SOCKET_TIMEOUT
            if self._deadline is not None:
                wait = self._deadline - time.monotonic()
                if wait <= 0:
                    raise TimedOut(f"no end of {self.opts.channel!r} within {self.opts.timeout}s")
            try:
                return self.client.send_via(self._transport, req, wait)
            except TimeoutError:
                self._transport.close()
                req = state.request()

    def _head(self) -> Response:
        """HEAD the channel, waiting for it to appear when ``wait`` is set."""
        delay = 0.05
        while True:
            head = core.head_request(self.opts.channel, self.opts.lane)
            resp = self.client.send_via(self._transport, head)
            if resp.status != 404 or not self.opts.wait:
                core.check(resp, self.opts.channel, "read")
                return resp
            if self._deadline is not None and time.monotonic() >= self._deadline:
                raise TimedOut(f"channel {self.opts.channel!r} did not appear in time")
            time.sleep(delay)  # nothing to long-poll on until the channel exists
            delay = min(delay * 2, 0.5)

    def _start_offset(self) -> str:
        opts = self.opts
        if opts.cursor is not None:
            saved = self.client.get_cursor(opts.channel, opts.cursor, lane=opts.lane)
            if saved is not None:
                self._saved = saved
                self._head()
                return saved
        if opts.start_at_cursor is not None:
            at = self.client.get_cursor(opts.channel, opts.start_at_cursor, lane=opts.lane)
            self._head()
            return at or opts.start or p.OFFSET_START
        if opts.start is not None and opts.since is None:
            self._head()
            return opts.start
        head = self._head()
        end = core.next_seq(head)
        first_hdr = head.header(p.H_FIRST_OFFSET)
        first = p.parse_offset(first_hdr) if first_hdr else 0
        if opts.since is not None:
            return p.format_offset(self._bisect(first, end, _key(opts.since)))
        if opts.last is None:
            return p.OFFSET_START
        return p.format_offset(max(first, end - opts.last))

    def _bisect(self, lo: int, hi: int, since_key: str) -> int:
        search = bisect_time(lo, hi, since_key)
        try:
            probe = next(search)
            while True:
                req = core.read_request(
                    self.opts.channel, p.format_offset(probe), lane=self.opts.lane
                )
                resp = self.client.send_via(self._transport, req)
                probe = search.send(first_time(resp))
        except StopIteration as done:
            return int(done.value)

    def _last_value(self) -> object:
        end = p.parse_offset(self.offset or "")
        if end == 0:
            return None
        req = core.read_request(self.opts.channel, p.format_offset(end - 1), lane=self.opts.lane)
        resp = self.client.send_via(self._transport, req)
        batch = ReadState(self.opts.channel, "", False, self.opts.lane).feed(resp)
        return batch.values[0] if batch.values else None

    def _paced(self, batch: Batch) -> Iterator[Batch]:
        """Re-create the original gaps between messages, divided by ``speed``."""
        pieces, self._pace_prev = paced(batch, self.opts.speed or 1.0, self._pace_prev)
        for delay, piece in pieces:
            if delay > 0:
                time.sleep(delay)  # the replay's own timing, not a poll
            yield piece

    _pace_prev: float | None = None

    def _maybe_save(self, force: bool) -> None:
        if self.opts.cursor is None or self.offset in (None, self._saved):
            return
        if self.offset in (p.OFFSET_START, p.OFFSET_NOW):
            return
        now = time.monotonic()
        if force or now - self._last_save >= CURSOR_SAVE_INTERVAL:
            assert self.offset is not None
            self.client.set_cursor(self.opts.channel, self.opts.cursor, self.offset, self.opts.lane)
            self._saved, self._last_save = self.offset, now


def _key(ts: float | None) -> str:
    return p.format_time(ts) if ts is not None else ""
