"""``chanctl.AsyncClient``: the asyncio twin of ``chanctl.Client``, on aiohttp.

Same methods, same errors, same wire decisions (all made in ``chanctl._core`` and
``chanctl.reading``); only the I/O differs. Import it only where an event loop runs anyway:
aiohttp costs ~200 ms to import, which is why the CLI and ``chanctl.Client`` never touch it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Any

import aiohttp

from . import _core as core
from . import errors as ce
from . import protocol as p
from ._async_read import AsyncTail
from ._info import ChannelInfo, Published, cursor_offset, parse_cursors, parse_info, parse_list
from ._sync_read import TailOptions
from .transport import Dropped, Response, Unreachable, resolve_endpoint


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

    async def send(self, req: core.Request, timeout: float | None = -1.0) -> Response:
        """Send ``req``, reconnecting (never re-starting) while the daemon is briefly away."""
        deadline: float | None = None
        delay = 0.05
        while True:
            refused: Response | None = None
            failure: Exception
            try:
                resp = await self._once(req, timeout)
                self._connected_once = True
                if not core.retry_later(resp):  # 503: waited out, as in Client.send_via
                    return resp
                refused, failure = resp, Dropped("the daemon answered 503")
            except Unreachable as exc:
                if not self._connected_once:
                    await self._first_contact_failed(exc)
                    continue
                failure = exc
            except Dropped as exc:
                failure = exc
            now = time.monotonic()
            deadline = deadline or now + self.reconnect_timeout
            if now >= deadline and refused is not None:
                return refused
            if now >= deadline:
                raise ce.ConnectionLost(
                    f"lost the daemon at {self.endpoint.url}: {failure}",
                    hint="check `chanctl daemon status`",
                )
            await asyncio.sleep(delay)  # back off between reconnect attempts
            delay = min(delay * 2, 1.0)

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
        resp = await self.send(req)
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
    ) -> Published:
        """Append every item, in order, in batches of up to ~1 MiB; the next batch is encoded
        while the previous one is in flight."""
        ce.checked(p.validate_name, channel)
        count, next_offset = 0, ""
        async with self._lock:
            async for body, n in _bodies(items, type, headers):
                resp = await self._append(channel, body)
                count, next_offset = count + n, resp.header(p.H_NEXT_OFFSET) or next_offset
        return Published(channel, count, next_offset)

    async def _append(self, channel: str, body: bytes) -> Response:
        """POST one batch exactly once (see ``Client.append_body_locked``)."""
        tuple_ = self._producer.take(channel)
        while True:
            resp = await self.send(core.append_request(channel, body, tuple_))
            if resp.status == 404:
                core.check(await self.send(core.create_request(channel)), channel, "create")
                continue
            if resp.status == 413 and (halves := core.split_body(body)) is not None:
                self._producer.undo(channel, tuple_)
                await self._append(channel, halves[0])
                return await self._append(channel, halves[1])
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
        listing = await self.send(core.Request("GET", core.CHANNELS_PATH))
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

    async def get_cursor(self, channel: str, name: str) -> str | None:
        resp = await self.send(core.cursor_request("GET", channel, name))
        return cursor_offset(resp, channel, name)

    async def set_cursor(self, channel: str, name: str, offset: str) -> None:
        ce.checked(lambda o: p.format_offset(p.parse_offset(o)), offset)
        await self._call(
            core.cursor_request("PUT", channel, name, offset), channel, "save cursor of"
        )

    async def delete_cursor(self, channel: str, name: str) -> None:
        await self._call(core.cursor_request("DELETE", channel, name), channel, "delete cursor of")

    async def cursors(self, channel: str) -> dict[str, str]:
        resp = await self._call(
            core.cursor_request("GET", channel, None), channel, "list cursors of"
        )
        return parse_cursors(resp)


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
