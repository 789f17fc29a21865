"""``chanctl.AsyncClient``: the asyncio twin of ``chanctl.Client``, on aiohttp.

Same methods, same errors, same wire decisions (all made in ``chanctl._core``,
``chanctl.reading``, ``chanctl._reconnect`` and ``chanctl._steering``); only the I/O differs.
Import it only where an event loop runs anyway: aiohttp costs ~200 ms to import, which is
why the CLI and ``chanctl.Client`` never touch it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

from . import _core as core
from . import errors as ce
from . import protocol as p
from ._async_read import AsyncTail
from ._info import ChannelInfo, Published, cursor_offset, parse_cursors, parse_info, parse_list
from ._reconnect import Reconnect
from ._sync_read import TailOptions
from .transport import Dropped, Response, Unreachable, resolve_endpoint

if TYPE_CHECKING:
    from ._steering import Sent, Waited


class AsyncClient:
    """An asyncio connection to the chanctl daemon (started on first use unless disabled).

    Example::

        import asyncio, chanctl

        async def main() -> None:
            async with chanctl.AsyncClient() as c:
                await c.publish("demo", "hello")
                await c.close("demo")
                async for msg in c.tail("demo", last=5):   # ends: the channel is closed
                    print(msg.seq, msg.text)

        asyncio.run(main())

    Arguments and behaviour are those of ``chanctl.Client``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        autostart: bool | None = None,
        timeout: float = 30.0,
        reconnect_timeout: float = 60.0,
    ) -> None:
        self.endpoint = resolve_endpoint(url, token)
        self.timeout = timeout
        self.reconnect_timeout = reconnect_timeout
        self._autostart = autostart
        self._session: aiohttp.ClientSession | None = None
        self._producer = core.Producer()
        self._lock = asyncio.Lock()
        self._connected_once = False
        self._start_tried = False

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session (a later call opens a new one)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:
            ep = self.endpoint
            connector: aiohttp.BaseConnector = (
                aiohttp.UnixConnector(path=ep.socket_path)
                if ep.socket_path
                else aiohttp.TCPConnector()
            )
            base = "http://localhost" if ep.socket_path else f"http://{ep.host}:{ep.port}"
            headers = {"Authorization": f"Bearer {ep.token}"} if ep.token else None
            self._session = aiohttp.ClientSession(
                base, connector=connector, headers=headers, auto_decompress=False
            )
        return self._session

    async def _once(self, req: core.Request, timeout: float | None) -> Response:
        wait = aiohttp.ClientTimeout(total=self.timeout if timeout == -1.0 else timeout)
        try:
            async with self._session_now().request(
                req.method, req.path, headers=dict(req.headers), data=req.body, timeout=wait
            ) as resp:
                return Response(resp.status, resp.headers, await resp.read())
        except aiohttp.ClientConnectorError as exc:
            raise Unreachable(str(exc)) from exc
        except (
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientOSError,
            aiohttp.ClientPayloadError,
        ) as exc:
            raise Dropped(str(exc)) from exc

    async def send_request(self, req: core.Request, timeout: float | None = -1.0) -> Response:
        """Send ``req``, reconnecting while the daemon is briefly away (the policy of
        ``Client.send_via``, from ``chanctl._reconnect``). ``timeout=None`` waits forever."""
        retries = Reconnect(self.reconnect_timeout, self.endpoint.url)
        while True:
            outcome: Response | Exception
            try:
                outcome = await self._once(req, timeout)
                self._connected_once = True
            except Unreachable as exc:
                if not self._connected_once:
                    await self._first_contact_failed(exc)
                    continue
                outcome = exc
            except Dropped as exc:
                outcome = exc
            step = retries.step(outcome)
            if isinstance(step, Response):
                return step
            await asyncio.sleep(step.delay)  # back off between reconnect attempts

    async def _first_contact_failed(self, exc: Exception) -> None:
        from . import autostart

        if self._start_tried or not autostart.start_allowed(self.endpoint, self._autostart):
            raise ce.DaemonUnavailable(
                f"no daemon at {self.endpoint.url}: {exc}",
                hint="start one with `chanctl daemon start`",
            )
        self._start_tried = True
        await asyncio.get_running_loop().run_in_executor(
            None, autostart.ensure_daemon, self.endpoint
        )

    async def _call(self, req: core.Request, channel: str, action: str) -> Response:
        resp = await self.send_request(req)
        core.check(resp, channel, action)
        return resp

    # -- writing --------------------------------------------------------------------------------

    async def create(self, channel: str) -> bool:
        """Create ``channel`` if needed; True if it was created now."""
        return (await self._call(core.create_request(channel), channel, "create")).status == 201

    async def publish(
        self,
        channel: str,
        data: str | bytes,
        *,
        type: str = p.TYPE_MESSAGE,
        headers: Mapping[str, str] | None = None,
    ) -> Published:
        """Append one message (creating the channel if needed), exactly once."""
        return await self.publish_many(channel, [data], type=type, headers=headers)

    async def publish_many(
        self,
        channel: str,
        items: Iterable[str | bytes] | AsyncIterable[str | bytes],
        *,
        type: str = p.TYPE_MESSAGE,
        headers: Mapping[str, str] | None = None,
        lane: str = p.LANE_OUTPUT,
    ) -> Published:
        """Append every item, in order, in batches of up to ~1 MiB; the next batch is encoded
        while the previous one is in flight. ``lane`` as for ``Client.publish_many``."""
        ce.checked(p.validate_name, channel)
        count, next_offset = 0, ""
        async with self._lock:
            async for body, n in _bodies(items, type, headers):
                resp = await self._append(channel, body, lane)
                count, next_offset = count + n, resp.header(p.H_NEXT_OFFSET) or next_offset
        return Published(channel, count, next_offset)

    async def _append(self, channel: str, body: bytes, lane: str) -> Response:
        """POST one batch exactly once (see ``Client.append_body_locked``)."""
        key = core.producer_key(channel, lane)
        tuple_ = self._producer.take(key)
        while True:
            resp = await self.send_request(core.append_request(channel, body, tuple_, lane))
            if resp.status == 404:
                created = await self.send_request(core.create_request(channel, lane))
                core.check(created, channel, "create")
                continue
            if resp.status == 413 and (halves := core.split_body(body)) is not None:
                self._producer.undo(key, tuple_)
                await self._append(channel, halves[0], lane)
                return await self._append(channel, halves[1], lane)
            core.check(resp, channel, "publish to")
            return resp

    async def close(self, channel: str) -> str:
        """Close ``channel`` for writing; returns its final offset."""
        resp = await self._call(core.close_request(channel), channel, "close")
        return resp.header(p.H_NEXT_OFFSET) or ""

    async def delete(self, channel: str) -> None:
        """Delete ``channel`` and its messages for good."""
        await self._call(core.delete_request(channel), channel, "delete")

    # -- reading --------------------------------------------------------------------------------

    async def info(self, channel: str) -> ChannelInfo:
        head = await self._call(core.head_request(channel), channel, "inspect")
        listing = await self.send_request(core.Request("GET", core.CHANNELS_PATH))
        return parse_info(channel, head, listing)

    async def list(self) -> list[ChannelInfo]:
        return parse_list(await self._call(core.Request("GET", core.CHANNELS_PATH), "", "list"))

    async def health(self) -> dict[str, Any]:
        resp = await self._call(core.Request("GET", core.HEALTH_PATH), "", "check health")
        doc = json.loads(resp.body or b"{}")
        return doc if isinstance(doc, dict) else {}

    def tail(self, channel: str, **options: Any) -> AsyncTail:
        """Follow ``channel``; options as for ``Client.tail``. Use with ``async for``."""
        return AsyncTail(self, TailOptions.build(channel, **options))

    def replay(self, channel: str, **options: Any) -> AsyncTail:
        """History from the start (or ``start``/``since``) to now, then stop."""
        options.setdefault("start", p.OFFSET_START)
        options.setdefault("follow", False)
        options.setdefault("wait", False)
        return AsyncTail(self, TailOptions.build(channel, **options))

    # -- cursors ----------------------------------------------------------------------------------

    async def get_cursor(self, channel: str, name: str, *, lane: str = p.LANE_OUTPUT) -> str | None:
        """The offset stored under cursor ``name`` for ``channel`` (or its ``lane``), or None."""
        resp = await self.send_request(core.cursor_request("GET", channel, name, lane=lane))
        return cursor_offset(resp, channel, name)

    async def set_cursor(
        self, channel: str, name: str, offset: str, lane: str = p.LANE_OUTPUT
    ) -> None:
        """Store ``offset`` (where the next read starts) under cursor ``name``, durably."""
        ce.checked(lambda o: p.format_offset(p.parse_offset(o)), offset)
        req = core.cursor_request("PUT", channel, name, offset, lane)
        await self._call(req, channel, "save cursor of")

    async def delete_cursor(self, channel: str, name: str) -> None:
        await self._call(core.cursor_request("DELETE", channel, name), channel, "delete cursor of")

    async def cursors(self, channel: str) -> dict[str, str]:
        resp = await self._call(
            core.cursor_request("GET", channel, None), channel, "list cursors of"
        )
        return parse_cursors(resp)

    # -- steering (README "Steering and wrapping jobs"; semantics of ``Client.send`` etc.) ------

    async def send(
        self,
        channel: str,
        message: str | bytes,
        *,
        type: str = p.TYPE_STEER,
        headers: Mapping[str, str] | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> Sent:
        """Append one message to ``channel``'s control lane for its producer; with ``wait``,
        also await its answer. Errors as for ``Client.send`` (SteeringRefused,
        NotAcknowledged, TimedOut)."""
        from . import _steering

        hdrs = dict(headers) if headers else None
        return await _steering.send_async(self, channel, message, type, hdrs, wait, timeout)

    def recv(
        self,
        channel: str,
        *,
        follow: bool = False,
        cursor: str | None = None,
        start: str | int | None = None,
        types: Iterable[str] | None = None,
        timeout: float | None = None,
    ) -> AsyncTail:
        """``channel``'s steering messages, as its producer reads them (``async for``); where
        it starts and when it ends as for ``Client.recv``."""
        from ._steering import recv_options

        return AsyncTail(self, recv_options(channel, follow, cursor, start, types, timeout))

    async def wait(
        self, channel: str, *, for_: str = "exit", timeout: float | None = None
    ) -> Waited:
        """Return once ``for_`` (``closed``, ``exit``, ``match=REGEX``, ``type=T``) holds on
        ``channel``; errors as for ``Client.wait`` (ConditionNotMet, TimedOut)."""
        from . import _steering

        cond = _steering.Condition(for_)
        return await _steering.wait_for_async(self, channel, cond, timeout)

    async def output_end(self, channel: str) -> str:
        """Where ``channel``'s output lane ends now (``-1`` when it does not exist yet)."""
        return core.output_end(await self.send_request(core.head_request(channel)), channel)

    async def producer(self, channel: str) -> dict[str, Any]:
        """``channel``'s ``run`` producer, as ``Client.producer`` describes it."""
        req = core.producer_request("GET", channel)
        resp = await self._call(req, channel, "describe producer of")
        doc = json.loads(resp.body or b"{}")
        return doc if isinstance(doc, dict) else {}


_END = object()


async def _bodies(
    items: Iterable[str | bytes] | AsyncIterable[str | bytes],
    type_: str,
    headers: Mapping[str, str] | None,
) -> AsyncIterator[tuple[bytes, int]]:
    """Encoded bodies from a sync or async iterable.

    An async source is read by a task of its own; each body takes everything that arrived
    while the previous one was being sent, so a slow producer's message goes out at once and a
    fast one's are batched (the async form of the sync pipeline's "send when idle").
    """
    if not isinstance(items, AsyncIterable):
        for job in core.encode_bodies(items, type_, headers, _never):
            yield job
        return
    source = items
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=50_000)

    async def feed() -> None:
        try:
            async for item in source:
                await queue.put(item)
        finally:
            await queue.put(_END)

    feeder = asyncio.create_task(feed())
    try:
        while True:
            batch = [await queue.get()]
            while not queue.empty() and len(batch) < 50_000:
                batch.append(queue.get_nowait())
            ended = batch[-1] is _END
            ready = [b for b in batch if isinstance(b, str | bytes)]
            for job in core.encode_bodies(ready, type_, headers, _never):
                yield job
            if ended:
                break
        await feeder  # re-raise what the source raised, if anything
    finally:
        feeder.cancel()


def _never() -> bool:
    return False
