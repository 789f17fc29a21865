"""Connection-level hygiene that aiohttp does not offer: a request-head deadline and draining.

aiohttp bounds header *sizes* but not how long a client may take to send them, so a slowloris
client trickling one byte every few seconds could hold a connection (and an fd) for the whole
75 s keep-alive window, forever if it keeps trickling. ``HeadDeadline`` wraps aiohttp's protocol
object per connection and closes it when a request head is not complete within
``Limits.header_read_timeout_s``. The request middleware tells it when a head has arrived (the
middleware runs exactly when aiohttp finished parsing one) and when the response is done.

Responses get the same kind of deadline: when a client stops reading, the transport pauses
writing (its buffer is over the high-water mark) and, unless it resumes within
``Limits.write_deadline_s``, the connection is aborted and its buffered bytes dropped. Without
it a reader that never reads would hold its last response (up to a 1 MiB read chunk) and the
connection forever, even after the handler gave up on it. Clients resume from their offset.

A request body gets a deadline of its own, ``Limits.body_read_timeout_s`` from its head: a
client that declares a large body and then trickles it (one byte every few seconds) would
otherwise hold a connection and a handler for as long as it likes. When the body is overdue, the
handler's next read raises ``RequestTimeout`` (408; nothing is stored, since appends only go to
the store once the whole body is read) and the unread rest closes the connection. A body that
arrives steadily but slowly is fine as long as it is complete in time.

It costs next to nothing per request, since every request passes through it: a head only
notes when it began, and later chunks (bodies included) only get a cheap check that aiohttp's
parser has not given up inside the body being read (``_check_body``). One timer per
connection checks heads lazily, re-arming for whatever time the current head has left, instead
of a timer armed and cancelled per request.

``Lifecycle`` counts in-flight requests so SIGTERM can let appends finish before the store is
stopped, and turns away requests that arrive on kept-alive connections while draining.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator

from aiohttp import StreamReader, web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import _ErrInfo

from .config import Limits
from .errors import RequestTimeout
from .security import Admit, error_response

log = logging.getLogger(__name__)

ProtocolFactory = Callable[[], asyncio.Protocol]


class HeadDeadline(asyncio.Protocol):
    """Forwards everything to aiohttp's handler; closes the transport if a head is too slow."""

    def __init__(self, inner: asyncio.Protocol, tracker: Lifecycle, limits: Limits) -> None:
        self._inner = inner
        self._tracker = tracker
        self._timeout = limits.header_read_timeout_s
        self._write_deadline = limits.write_deadline_s
        self._body_timeout = limits.body_read_timeout_s
        self._transport: asyncio.BaseTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._since: float | None = None  # loop time the pending head began; None: none pending
        self._busy = False
        self._body: StreamReader | None = None  # the in-flight request's body
        self.on_lost: Callable[[], None] | None = None  # set by a live read (``on_disconnect``)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._tracker.guards[self._inner] = self
        self._inner.connection_made(transport)
        self._head_begins()  # a client that connects and sends nothing gets the same deadline

    def data_received(self, data: bytes) -> None:
        """Only reached for the first chunk after a response (see ``_head_begins``)."""
        if not self._busy:
            self._head_begins()
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._timer, self._write_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._write_timer = self._body_timer = None
        self._tracker.guards.pop(self._inner, None)
        self._inner.connection_lost(exc)
        if self.on_lost is not None:
            callback, self.on_lost = self.on_lost, None
            callback()

    def pause_writing(self) -> None:
        if self._write_timer is None:
            loop = asyncio.get_running_loop()
            self._write_timer = loop.call_later(self._write_deadline, self._write_overdue)
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        self._inner.resume_writing()

    def _write_overdue(self) -> None:
        self._write_timer = None
        transport = self._transport
        # Even when closing: close() would still wait for the client to take the buffer.
        if isinstance(transport, asyncio.WriteTransport):
            log.info(
                "closed a connection: the client read too little for %.0fs", self._write_deadline
            )
            transport.abort()

    def head_received(self, body: StreamReader | None = None) -> None:
        self._busy = True
        self._since = None
        self._body = body
        self._check_body()
        # Usually the whole body came with the head (no timer at all); only larger or slower
        # bodies arm one.
        if body is not None and not body.is_eof():
            loop = asyncio.get_running_loop()
            self._body_timer = loop.call_later(self._body_timeout, self._body_overdue, body)

    def response_done(self) -> None:
        self._busy = False
        self._body = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self.__dict__.pop("data_received", None)  # the next chunk begins a head again

    def _chunk_received(self, data: bytes) -> None:
        """Chunks after a head: the rest of its body, or pipelined requests."""
        self._inner.data_received(data)
        if self._body is not None:
            self._check_body()

    def _body_overdue(self, body: StreamReader) -> None:
        self._body_timer = None
        if body is self._body and not body.is_eof():
            log.info("request body not complete within %.0fs", self._body_timeout)
            body.set_exception(
                RequestTimeout(f"the request body did not arrive within {self._body_timeout:g}s")
            )

    def _check_body(self) -> None:
        """Close the connection when aiohttp's parser gave up inside the body the handler is
        reading (a bad chunk size, a missing CRLF: B5 of reliability.md). The C parser then
        drops that body without ending it, so the handler would wait for the rest forever,
        and the parser's 400 is queued behind it. Closing ends both; nothing was stored.
        ``_messages`` is aiohttp's (private) queue of parsed requests: should a release rename
        it, this check does nothing and tests/http/test_http_framing.py fails."""
        body, queued = self._body, getattr(self._inner, "_messages", None)
        if body is None or body.is_eof() or not queued:
            return
        if isinstance(queued[-1][0], _ErrInfo) and self._transport is not None:
            log.info("closed a connection: malformed request body")  # no client bytes logged
            self._transport.close()

    def _head_begins(self) -> None:
        loop = asyncio.get_running_loop()
        self._since = loop.time()
        if self._timer is None:
            self._timer = loop.call_later(self._timeout, self._check)
        # Until the response is done, chunks skip the head bookkeeping: the transport looks the
        # method up on this object each time, and an instance attribute shadows ours.
        setattr(self, "data_received", self._chunk_received)  # noqa: B010

    def _check(self) -> None:
        """The timer: close if the pending head is overdue, else wait for what it has left.
        With no head pending it stops; the next head re-arms it."""
        self._timer = None
        since, transport = self._since, self._transport
        if since is None or self._busy or transport is None or transport.is_closing():
            return
        loop = asyncio.get_running_loop()
        left = since + self._timeout - loop.time()
        if left > 0:
            self._timer = loop.call_later(left, self._check)
            return
        log.info("closed a connection: no complete request head within %.0fs", self._timeout)
        transport.close()


@contextlib.contextmanager
def on_disconnect(request: web.BaseRequest, callback: Callable[[], None]) -> Iterator[bool]:
    """Call ``callback`` if the request's connection is lost while the block runs; yields
    False when it is already gone.

    aiohttp does not cancel a handler whose client went away (``handler_cancellation`` would
    cancel every handler, appends included), so a live read sleeping until new data or its
    timeout would hold its slot for up to 30 s after its client vanished: a client reconnecting
    in a loop would fill the live-reader caps with dead connections. The guard already sees
    ``connection_lost``; this is how a live read hears of it, at no cost while it waits."""
    transport = request.transport
    if transport is None or transport.is_closing():
        yield False
        return
    guard = transport.get_protocol()
    if not isinstance(guard, HeadDeadline):  # a listener without the guard: nothing to hook
        yield True
        return
    guard.on_lost = callback
    try:
        yield True
    finally:
        if guard.on_lost is callback:
            guard.on_lost = None


class GuardedSite(web.BaseSite):
    """Serve the runner's app on an already-bound socket, each connection behind HeadDeadline.

    Taking a pre-bound socket (rather than a path, as ``UnixSite`` does) is what lets the
    server set the umask for ``bind`` and check the path beforehand.
    """

    __slots__ = ("_sock", "_name", "_tracker", "_limits")

    def __init__(
        self, runner: web.BaseRunner, sock: socket.socket, tracker: Lifecycle, limits: Limits
    ) -> None:
        super().__init__(runner)
        self._sock = sock
        self._tracker = tracker
        self._limits = limits  # the deadlines every connection's HeadDeadline enforces
        if sock.family == socket.AF_UNIX:
            self._name = f"unix:{sock.getsockname()}"
        else:
            host, port = sock.getsockname()[:2]
            self._name = f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None, "runner.setup() must run first"
        tracker, limits = self._tracker, self._limits

        def factory() -> asyncio.Protocol:
            return HeadDeadline(server(), tracker, limits)

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(factory, sock=self._sock, backlog=self._backlog)


class Lifecycle:
    """In-flight request accounting plus the head-deadline hand-off, as one middleware."""

    def __init__(self) -> None:
        self.guards: dict[asyncio.Protocol, HeadDeadline] = {}
        self.draining = False
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def middleware(self, admit: Admit | None = None) -> Middleware:
        """The middleware; with ``admit`` (``AccessPolicy.admitter``) it is the access check
        too, a middleware layer less for every request."""

        @web.middleware
        async def lifecycle(request: web.Request, handler: Handler) -> web.StreamResponse:
            guard = self.guards.get(request.protocol) if request.protocol else None
            if guard is not None:
                guard.head_received(request.content)
            if self.draining:
                return error_response(503, "daemon is shutting down", close=True)
            if admit is not None and (rejection := admit(request)) is not None:
                if guard is not None:
                    guard.response_done()
                return rejection
            # Live readers (long-poll, SSE) are not waited for: stopping the store ends them.
            counted = "live" not in request.query
            if counted:
                self._enter()
            try:
                return await handler(request)
            finally:
                if counted:
                    self._leave()
                if guard is not None:
                    guard.response_done()

        return lifecycle

    def _enter(self) -> None:
        self._inflight += 1
        self._idle.clear()

    def _leave(self) -> None:
        self._inflight -= 1
        if self._inflight == 0:
            self._idle.set()

    async def drain(self, timeout: float) -> int:
        """Refuse new requests, wait up to ``timeout`` for counted ones; return how many remain."""
        self.draining = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            pass
        return self._inflight
