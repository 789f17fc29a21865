"""``chanctl.Client``: the synchronous client library the CLI is built on.

Stdlib only (http.client over the unix socket), so importing it costs a few milliseconds and it
never starts an event loop behind the caller's back (safe in Jupyter and agent frameworks).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from . import _core as core
from . import errors as ce
from . import protocol as p
from ._info import ChannelInfo, Published, parse_info, parse_list
from ._reconnect import Reconnect
from ._sync_read import Tail, TailOptions
from .transport import Dropped, Response, Transport, Unreachable, resolve_endpoint

if TYPE_CHECKING:
    from ._steering import Sent, Waited
    from .daemonctl import DaemonStatus


class Client:
    """A connection to the chanctl daemon (started on first use unless disabled).

    Example::

        import chanctl

        with chanctl.Client() as c:
            c.publish("demo", "hello")
            c.publish_many("demo", ["one", "two", "three"])
            for msg in c.replay("demo"):
                print(msg.seq, msg.type, msg.text)
            c.close("demo")                       # readers following it now stop
            for msg in c.tail("demo", last=2):    # ends because the channel is closed
                print(msg.text)

    ``url`` is ``unix:///path/chanctl.sock`` or ``http://127.0.0.1:PORT`` (default:
    ``$CHANCTL_URL``, then the per-user socket); ``token`` (default ``$CHANCTL_TOKEN``) is
    sent to TCP listeners. A dropped connection or a daemon restart is retried for up to
    ``reconnect_timeout`` seconds; appends carry idempotent-producer headers, so a retry never
    duplicates a message, and reads resume from their last offset. Methods raise
    ``chanctl.errors.ChanctlError`` subclasses and never print (``on_autostart`` is called
    with the daemon's status when this client had to start it, so a CLI can say so). One
    instance may be shared by threads: requests are serialized.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        autostart: bool | None = None,
        timeout: float = 30.0,
        reconnect_timeout: float = 60.0,
        on_autostart: Callable[[DaemonStatus], None] | None = None,
    ) -> None:
        self.endpoint = resolve_endpoint(url, token)
        self.reconnect_timeout = reconnect_timeout
        self.on_autostart = on_autostart  # told when this client started the daemon
        self._autostart = autostart
        self._transport = Transport(self.endpoint, timeout)
        self._producer = core.Producer()
        self._lock = threading.RLock()
        self._connected_once = False
        self._start_tried = False

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    def disconnect(self) -> None:
        """Drop the keep-alive connection (a later call reconnects)."""
        with self._lock:
            self._transport.close()

    # -- transport with reconnects ------------------------------------------------------------

    def _send_locked(self, req: core.Request, timeout: float | None = -1.0) -> Response:
        """Send ``req`` on the shared connection; the caller holds ``self._lock``."""
        return self.send_via(self._transport, req, timeout)

    def send_via(
        self, transport: Transport, req: core.Request, timeout: float | None = -1.0
    ) -> Response:
        """Send ``req``, reconnecting while the daemon is briefly away.

        The first connection may auto-start the daemon; later failures only wait for it to come
        back (up to ``reconnect_timeout``), so a tail does not resurrect a daemon someone
        stopped on purpose. A 503 (the daemon is shutting down, or overloaded) is waited out
        the same way; after the deadline it is returned for the caller to report.
        """
        retries = Reconnect(self.reconnect_timeout, self.endpoint.url)
        while True:
            outcome: Response | Exception
            try:
                outcome = transport.request(req.method, req.path, req.headers, req.body, timeout)
                self._connected_once = True
            except Unreachable as exc:
                if not self._connected_once:
                    self._first_contact_failed(exc)
                    continue
                outcome = exc
            except Dropped as exc:
                outcome = exc
            step = retries.step(outcome)
            if isinstance(step, Response):
                return step
            time.sleep(step.delay)  # back off between reconnect attempts

    def _first_contact_failed(self, exc: Exception) -> None:
        """Auto-start the daemon once per client, or explain why we may not."""
        from . import autostart

        if self._start_tried or not autostart.start_allowed(self.endpoint, self._autostart):
            raise ce.DaemonUnavailable(
                f"no daemon at {self.endpoint.url}: {exc}",
                hint="start one with `chanctl daemon start`",
            )
        self._start_tried = True
        started = autostart.ensure_daemon(self.endpoint)
        if started is not None and self.on_autostart is not None:
            self.on_autostart(started)

    def _call(self, req: core.Request, channel: str, action: str) -> Response:
        with self._lock:
            resp = self._send_locked(req)
        core.check(resp, channel, action)
        return resp

    # -- writing --------------------------------------------------------------------------------

    def create(self, channel: str) -> bool:
        """Create ``channel`` if needed; True if it was created now."""
        return self._call(core.create_request(channel), channel, "create").status == 201

    def publish(
        self,
        channel: str,
        data: str | bytes,
        *,
        type: str = p.TYPE_MESSAGE,
        headers: Mapping[str, str] | None = None,
    ) -> Published:
        """Append one message (creating the channel if needed), exactly once."""
        return self.publish_many(channel, [data], type=type, headers=headers)

    def publish_many(
        self,
        channel: str,
        items: Iterable[str | bytes | core.Flush],
        *,
        type: str = p.TYPE_MESSAGE,
        headers: Mapping[str, str] | None = None,
        lane: str = p.LANE_OUTPUT,
    ) -> Published:
        """Append every item as one message, in order, in JSON-array batches of up to ~1 MiB.

        ``items`` may be an endless iterator (e.g. lines of a pipe): batches are sent while the
        next ones are encoded, and a batch goes out as soon as the sender is idle, so slow
        producers see low latency and fast ones get full batches. ``lane`` is
        ``protocol.LANE_OUTPUT`` (the channel itself) or ``LANE_CONTROL`` (see ``send``).
        """
        from ._publish import Pipeline

        ce.checked(p.validate_name, channel)
        with self._lock:
            return Pipeline(self, channel, type, headers, lane).run(items)

    def append_body_locked(
        self, channel: str, body: bytes, count: int, lane: str = p.LANE_OUTPUT
    ) -> Response:
        """POST one encoded batch with the next producer sequence; the caller holds the lock.

        A missing channel is created and the same tuple re-sent; a batch the daemon finds too
        large is halved (the refused tuple was not consumed, so the halves reuse it).
        """
        key = core.producer_key(channel, lane)
        tuple_ = self._producer.take(key)
        while True:
            resp = self._send_locked(core.append_request(channel, body, tuple_, lane))
            if resp.status == 404:
                created = self._send_locked(core.create_request(channel, lane))
                core.check(created, channel, "create")
                continue
            if resp.status == 413:
                halves = core.split_body(body)
                if halves is not None:
                    self._producer.undo(key, tuple_)  # the refused tuple is reusable
                    self.append_body_locked(channel, halves[0], 0, lane)
                    return self.append_body_locked(channel, halves[1], 0, lane)
            core.check(resp, channel, "publish to")
            return resp

    def close(self, channel: str) -> str:
        """Close ``channel`` for writing (readers following it stop); returns its final offset."""
        resp = self._call(core.close_request(channel), channel, "close")
        return resp.header(p.H_NEXT_OFFSET) or ""

    def delete(self, channel: str) -> None:
        """Delete ``channel`` and its messages for good."""
        self._call(core.delete_request(channel), channel, "delete")

    # -- reading --------------------------------------------------------------------------------

    def info(self, channel: str) -> ChannelInfo:
        """Offsets, counts, limits and producer state of one channel."""
        with self._lock:
            head = self._send_locked(core.head_request(channel))
            core.check(head, channel, "inspect")
            listing = self._send_locked(core.Request("GET", core.CHANNELS_PATH))
        return parse_info(channel, head, listing)

    def list(self) -> list[ChannelInfo]:
        """Every channel the daemon holds, sorted by name."""
        return parse_list(self._call(core.Request("GET", core.CHANNELS_PATH), "", "list channels"))

    def health(self) -> dict[str, Any]:
        """The daemon's health document (version, protocol, ...)."""
        import json

        resp = self._call(core.Request("GET", core.HEALTH_PATH), "", "check health")
        doc = json.loads(resp.body or b"{}")
        return doc if isinstance(doc, dict) else {}

    def tail(self, channel: str, **options: Any) -> Tail:
        """Follow ``channel``: the last ``last`` (default 10) messages, then live ones.

        Keyword options (all optional): ``last`` (int, or None with ``start``), ``start``
        (offset string, seq int, ``"start"`` or ``"now"``), ``since``/``until`` (unix seconds),
        ``types`` (iterable of message types), ``follow`` (default True), ``wait`` (wait for a
        missing channel to appear, default True), ``timeout`` (seconds, then TimedOut),
        ``cursor`` (a durable read position to resume from and advance), ``speed`` (replay
        pacing factor). Iterating yields ``Message``; ``.batches()`` yields whole answers.
        """
        return Tail(self, TailOptions.build(channel, **options))

    def replay(self, channel: str, **options: Any) -> Tail:
        """History from the start (or ``start``/``since``) to now, then stop."""
        options.setdefault("start", p.OFFSET_START)
        options.setdefault("follow", False)
        options.setdefault("wait", False)
        return Tail(self, TailOptions.build(channel, **options))

    # -- cursors ----------------------------------------------------------------------------------

    def get_cursor(self, channel: str, name: str, *, lane: str = p.LANE_OUTPUT) -> str | None:
        """The offset stored under cursor ``name`` for ``channel`` (or its ``lane``), or None."""
        from ._info import cursor_offset

        with self._lock:
            resp = self._send_locked(core.cursor_request("GET", channel, name, lane=lane))
        return cursor_offset(resp, channel, name)

    def set_cursor(self, channel: str, name: str, offset: str, lane: str = p.LANE_OUTPUT) -> None:
        """Store ``offset`` (where the next read starts) under cursor ``name``, durably."""
        ce.checked(lambda o: p.format_offset(p.parse_offset(o)), offset)
        req = core.cursor_request("PUT", channel, name, offset, lane)
        self._call(req, channel, "save cursor of")

    def delete_cursor(self, channel: str, name: str) -> None:
        self._call(core.cursor_request("DELETE", channel, name), channel, "delete cursor of")

    def cursors(self, channel: str) -> dict[str, str]:
        """Every cursor of ``channel``: name -> offset."""
        from ._info import parse_cursors

        resp = self._call(core.cursor_request("GET", channel, None), channel, "list cursors of")
        return parse_cursors(resp)

    # -- steering (README "Steering and wrapping jobs") -------------------------------------------

    def send(
        self,
        channel: str,
        message: str | bytes,
        *,
        type: str = p.TYPE_STEER,
        headers: Mapping[str, str] | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> Sent:
        """Append one message for ``channel``'s producer to its control lane (created if needed).

        ``chanctl run`` obeys ``steer`` messages (``stop``, ``kill``, ``signal USR1``, ``pause``,
        ``resume``, ``stdin TEXT``, ``eof``) and answers each with an ``ack`` on the output
        lane; other types are left to the job (``recv``). With ``wait``, block until that
        answer: raises SteeringRefused when the producer refused the message, NotAcknowledged
        when the channel closed first, TimedOut after ``timeout`` seconds.
        """
        from . import _steering

        hdrs = dict(headers) if headers else None
        return _steering.send(self, channel, message, type, hdrs, wait, timeout)

    def recv(
        self,
        channel: str,
        *,
        follow: bool = False,
        cursor: str | None = None,
        start: str | int | None = None,
        types: Iterable[str] | None = None,
        timeout: float | None = None,
    ) -> Tail:
        """``channel``'s steering messages, as its producer reads them.

        Starts at the producer position (where the next ``run`` continues; cursor
        ``producer`` of the control lane, read when the iteration begins) unless ``start`` or
        ``cursor`` says otherwise; ``follow`` keeps waiting for more, and for the control lane
        to appear.
        """
        from ._steering import recv_options

        return Tail(self, recv_options(channel, follow, cursor, start, types, timeout))

    def wait(self, channel: str, *, for_: str = "exit", timeout: float | None = None) -> Waited:
        """Block until ``for_`` holds on ``channel``: ``closed``, ``exit`` (of its latest run),
        ``match=REGEX`` or ``type=T``. History counts, so a condition already met returns at
        once. Raises ConditionNotMet when the channel closes first, TimedOut after ``timeout``.
        """
        from . import _steering

        return _steering.wait_for(self, channel, _steering.Condition(for_), timeout)

    def output_end(self, channel: str) -> str:
        """Where ``channel``'s output lane ends now (``-1`` when it does not exist yet)."""
        with self._lock:
            resp = self._send_locked(core.head_request(channel))
        return core.output_end(resp, channel)

    def fsck(
        self,
        channels: Iterable[str] | None = None,
        *,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> Iterator[p.FsckResult]:
        """Have the running daemon verify ``channels`` (default: every one), yielding a result
        per channel as they come; ``on_progress(done, total)`` is called between batches. A
        corrupt channel is quarantined, as a read reaching the damage would. (`chanctl fsck`.)"""
        from ._fsck import check_online

        return check_online(self, channels, on_progress)

    def producer(self, channel: str) -> dict[str, Any]:
        """``channel``'s ``run`` producer: ``state`` (attached, lost, exited or none), ``pid``,
        ``host``, ``since``, ``epoch``, ``exit_status``..."""
        import json

        resp = self._call(core.producer_request("GET", channel), channel, "describe producer of")
        doc = json.loads(resp.body or b"{}")
        return doc if isinstance(doc, dict) else {}
