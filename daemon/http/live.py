"""Live reads: long-poll (PROTOCOL.md section 5.6) and SSE (section 5.7).

Both hold a request open, so both count against ``Limits.max_live_readers`` and, over TCP,
``Limits.max_live_readers_per_peer`` (503 + Retry-After beyond either: one local web page or
script cannot take every slot), and both are ended when the application shuts down. A waiting
reader costs no polling: it sleeps in ``store.wait``, which wakes it as soon as an append is
durable; what it then sends is read from the store, so a reader never sees data that could still
be lost. A reader whose client disconnects ends at once (``connections.on_disconnect``), without
writing: otherwise it would hold its slot until new data or its timeout, and a client that
reconnects in a loop would fill the caps with dead connections.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from chanctl.protocol import (
    H_CLOSED,
    H_CURSOR,
    H_NEXT_OFFSET,
    H_SSE_ENCODING,
    H_UP_TO_DATE,
    SSE_ENCODING_BASE64,
    format_offset,
    parse_content_type,
)

from ..config import Settings
from ..connections import on_disconnect
from ..errors import Overloaded, StreamError
from ..model import Chunk
from ..service import StreamService
from ..store.base import ChannelState, StoreError
from . import caching, sse
from .render import TRUE, chunk_body, read_headers

log = logging.getLogger("chanctl.daemon.http")

KEEPALIVE_S = 15.0  # idle SSE connections get a comment line so proxies keep them open


class LiveReads:
    def __init__(self, service: StreamService, settings: Settings) -> None:
        self.service = service
        self.limits = settings.limits
        self.active: set[asyncio.Task[object]] = set()
        self.readers: collections.Counter[str] = collections.Counter()  # per channel, for ls
        self.peers: collections.Counter[str] = collections.Counter()  # per TCP peer address
        self.stopping = asyncio.Event()
        self._parked: set[asyncio.Task[Any]] = set()  # readers inside wait()
        self._interrupted: set[asyncio.Task[Any]] = set()  # ... that shutdown() cancelled
        self._gone: set[asyncio.Task[Any]] = set()  # readers whose client disconnected

    @contextlib.contextmanager
    def _slot(self, request: web.Request, name: str) -> Iterator[None]:
        """Admit one more live reader, or refuse with 503 when a cap is reached."""
        limits = self.limits
        if len(self.active) >= limits.max_live_readers:
            raise Overloaded(
                f"too many live readers ({limits.max_live_readers}); retry shortly",
                {"Retry-After": "1"},
            )
        peer = _tcp_peer(request)
        if peer is not None and self.peers[peer] >= limits.max_live_readers_per_peer:
            raise Overloaded(
                f"too many live readers from {peer} ({limits.max_live_readers_per_peer}); "
                "retry shortly",
                {"Retry-After": "1"},
            )
        task = asyncio.current_task()
        assert task is not None
        self.active.add(task)
        self.readers[name] += 1
        if peer is not None:
            self.peers[peer] += 1
        try:
            with on_disconnect(request, lambda: self._client_gone(task)) as connected:
                if not connected:
                    self._gone.add(task)
                yield
        finally:
            self._gone.discard(task)
            self.active.discard(task)
            _decrement(self.readers, name)
            if peer is not None:
                _decrement(self.peers, peer)

    def _client_gone(self, task: asyncio.Task[Any]) -> None:
        """The reader's connection is lost: a parked reader is cancelled now (``wait`` lets the
        cancellation end its handler, which frees the slot), a busy one at its next ``wait``;
        one that is writing gets a ConnectionError from the write itself."""
        self._gone.add(task)
        if task in self._parked:
            task.cancel()

    async def shutdown(self) -> None:
        """End every live read with a proper response (long-poll 204, SSE stream ended after
        its last complete event) so clients resume from their offset; cancel only stragglers."""
        self.stopping.set()
        for task in self._parked:
            self._interrupted.add(task)
            task.cancel()  # wait() turns this into "stopping" (False) for the reader
        tasks = list(self.active)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2.0)
            for task in pending:
                task.cancel()

    async def wait(self, st: ChannelState, seq: int, timeout: float) -> bool:
        """``service.wait`` that also returns (False) as soon as the daemon starts stopping.

        It waits in the reader's own task, which ``shutdown`` cancels to end the wait: every
        live message passes through here, and racing the wait against a stop event costs two
        more tasks and loop iterations per message. A cancellation from anywhere else (or on
        top of ours) still propagates, and so does ours when the client has disconnected: the
        handler ends without writing anything, and its slot is free at once."""
        if self.stopping.is_set():
            return False
        task = asyncio.current_task()
        assert task is not None
        if task in self._gone:
            raise asyncio.CancelledError("the client disconnected")
        self._parked.add(task)
        try:
            return await self.service.wait(st, seq, timeout)
        except asyncio.CancelledError:
            if task in self._gone or task not in self._interrupted or task.uncancel() > 0:
                raise
            return False
        finally:
            self._parked.discard(task)
            self._interrupted.discard(task)

    # -- long-poll -----------------------------------------------------------------------------

    async def long_poll(self, request: web.Request, name: str, offset: str) -> web.Response:
        with self._slot(request, name):
            st, seq = await self.service.open_read(name, offset)
            chunk = await self.service.read(st, seq)
            if chunk.empty and not chunk.closed:
                await self.wait(st, seq, self.limits.long_poll_timeout_s)
                st = await self.service.reopen(st)
                chunk = await self.service.read(st, seq)
        cursor = str(caching.next_cursor(time.time(), request.query.get("cursor")))
        if not chunk.empty:
            headers = read_headers(chunk)
            headers[H_CURSOR] = cursor
            headers["ETag"] = caching.etag(chunk)
            headers["Cache-Control"] = caching.CACHE_DATA
            return web.Response(body=chunk_body(chunk), headers=headers)
        return _no_news(chunk, cursor)

    # -- SSE -----------------------------------------------------------------------------------

    async def sse(self, request: web.Request, name: str, offset: str) -> web.StreamResponse:
        with self._slot(request, name):
            st, seq = await self.service.open_read(name, offset)
            # Read before the headers go out: a stream that cannot start (a quarantined record
            # at this offset, data dropped by retention) gets its error status and envelope.
            first = await self.service.read(st, seq)
            resp = web.StreamResponse(status=200)
            stream = _SseStream(self, st, resp, request.query.get("cursor"))
            resp.headers.update(_sse_headers(stream.encoding))
            await resp.prepare(request)
            try:
                await stream.run(first, self.limits.sse_max_age_s)
            except (ConnectionError, TimeoutError, StreamError, StoreError) as exc:
                # Headers are sent: end the stream after its last complete event. The client
                # resumes from that event's offset and then gets the error as a response
                # (a corrupt record: 500 + Chanctl-Corrupt-Offset, never its bytes).
                log.debug("SSE stream for %r ended early: %s", name, exc)
            return resp


def _tcp_peer(request: web.Request) -> str | None:
    """The peer's IP address on TCP; None on the unix socket (only the daemon's user)."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return str(peer[0]) if isinstance(peer, tuple) else None


def _decrement(counter: collections.Counter[str], key: str) -> None:
    counter[key] -= 1
    if not counter[key]:
        del counter[key]


def _no_news(chunk: Chunk, cursor: str) -> web.Response:
    """Long-poll 204: timed out (still open), or the stream is closed at this offset."""
    headers = {
        H_NEXT_OFFSET: format_offset(chunk.next_seq),
        H_UP_TO_DATE: TRUE,
        "Cache-Control": caching.CACHE_NONE,
    }
    if chunk.closed:
        headers[H_CLOSED] = TRUE
    else:
        headers[H_CURSOR] = cursor
    return web.Response(status=204, headers=headers)


def _sse_headers(encoding: sse.Encoding) -> dict[str, str]:
    headers = {
        "Content-Type": "text/event-stream",
        "Cache-Control": caching.CACHE_SSE,
        "X-Accel-Buffering": "no",  # reverse proxies must not buffer a live stream
    }
    if encoding is sse.Encoding.BASE64:
        headers[H_SSE_ENCODING] = SSE_ENCODING_BASE64
    return headers


class _SseStream:
    """One SSE connection: catch up chunk by chunk, then follow the tail until the channel
    closes or the connection reaches its maximum age."""

    def __init__(
        self,
        live: LiveReads,
        st: ChannelState,
        resp: web.StreamResponse,
        cursor: str | None,
    ) -> None:
        self.live = live
        self.service = service = live.service
        self.st = st
        self.resp = resp
        self.encoding = sse.encoding_for(parse_content_type(st.config.content_type))
        self.write_deadline_s = service.settings.limits.write_deadline_s
        self.cursor = caching.next_cursor(time.time(), cursor)

    def _cursor(self) -> int:
        # Never go backwards within a connection, even if the first value carried jitter.
        self.cursor = max(self.cursor, caching.cursor_interval(time.time()))
        return self.cursor

    async def run(self, chunk: Chunk, max_age_s: float) -> None:
        """Send ``chunk`` (the first read), then follow the channel."""
        deadline = asyncio.get_running_loop().time() + max_age_s
        await self._send(self._events(chunk))  # the first control event is sent even if empty
        idle_wakes = 0
        while not chunk.closed:
            if chunk.up_to_date:
                if idle_wakes > 1 or not await self._wait(chunk.next_seq, deadline):
                    return  # aged out, or woken twice for nothing (store stopping): resume later
                if not self.service.still_live(self.st):
                    return  # deleted or expired while we waited
            chunk = await self.service.read(self.st, chunk.next_seq)
            if chunk.empty and not chunk.closed:
                idle_wakes += 1
                continue
            idle_wakes = 0
            await self._send(self._events(chunk))

    async def _wait(self, seq: int, deadline: float) -> bool:
        """Sleep until new data (True) or the connection's maximum age (False), sending a
        keep-alive comment whenever the connection has been idle for a while."""
        loop = asyncio.get_running_loop()
        while (left := deadline - loop.time()) > 0:
            if await self.live.wait(self.st, seq, min(left, KEEPALIVE_S)):
                return True
            if self.live.stopping.is_set():
                return False
            if deadline - loop.time() > 0:
                await self._send(sse.KEEPALIVE)
        return False

    async def _send(self, data: bytes) -> None:
        """Write with a deadline: a reader that stops reading must not pin the connection (and
        its buffered events) forever. It resumes from its last offset once it reconnects."""
        async with asyncio.timeout(self.write_deadline_s):
            await self.resp.write(data)

    def _events(self, chunk: Chunk) -> bytes:
        """Data events of at most ``sse.EVENT_BYTES`` each, every one followed by its control
        event, so a reader cut by the write deadline keeps every event it got whole."""
        cursor = self._cursor()
        if chunk.empty:
            return sse.control_event(chunk.next_seq, cursor, chunk.up_to_date, chunk.closed)
        return b"".join(
            sse.data_event(part, self.encoding)
            + sse.control_event(part.next_seq, cursor, part.up_to_date, part.closed)
            for part in sse.pieces(chunk)
        )
