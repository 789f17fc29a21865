"""Helpers for the HTTP-layer tests: an in-process app over MemoryStore, and raw requests.

Raw requests exist because HTTP clients normalise paths (``/a/../b`` becomes ``/b``) before
sending; name-validation tests must put the exact bytes on the wire.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from chanctl.daemon.config import Limits, Settings
from chanctl.daemon.http.app import build_app
from chanctl.daemon.service import StreamService
from chanctl.daemon.store.base import Retention
from chanctl.daemon.store.memory import MemoryStore

SMALL = Limits(
    max_body_bytes=4096,
    max_message_bytes=4096,
    max_live_readers=2,
    read_chunk_bytes=64,
    long_poll_timeout_s=0.2,
    sse_max_age_s=1.0,
)


@dataclass
class Served:
    client: TestClient[Any, Any]
    service: StreamService
    store: MemoryStore

    @property
    def port(self) -> int:
        port = self.client.port
        assert port is not None
        return port


@asynccontextmanager
async def serve(
    limits: Limits = SMALL, default_retention: Retention | None = None
) -> AsyncIterator[Served]:
    with tempfile.TemporaryDirectory(prefix="chanctl-http-") as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            socket_path=None,
            limits=limits,
            store="memory",
            default_retention=default_retention or Retention(),
        )
        store = MemoryStore()
        await store.start()
        service = StreamService(store, settings)
        async with TestClient(TestServer(build_app(service, settings))) as client:
            yield Served(client, service, store)
        await store.stop()


@dataclass
class RawReply:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_request(
    port: int,
    method: str,
    target: str,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
) -> RawReply:
    """Send exactly ``target`` as the request target, one request per connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return RawReply(int(status_line.split()[1]), parsed, rest)


def assert_envelope(status: int, headers: Mapping[str, str], body: Any, expected: int) -> None:
    """The one error shape: status, JSON envelope, and the browser security headers."""
    assert status == expected, (status, body)
    lower = {k.lower(): v for k, v in headers.items()}
    assert lower["content-type"].startswith("application/json")
    assert lower["x-content-type-options"] == "nosniff"
    assert lower["cross-origin-resource-policy"] in ("same-origin", "same-site", "cross-origin")
    assert set(body) == {"ok", "error", "status"}, body
    assert body["ok"] is False and body["status"] == expected
    assert isinstance(body["error"], str) and body["error"]


async def expect_error(resp: ClientResponse, expected: int) -> dict[str, Any]:
    body = await resp.json()
    assert_envelope(resp.status, resp.headers, body, expected)
    return dict(body)


STREAM = "/v1/stream/"


async def put(
    client: TestClient[Any, Any],
    name: str,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> int:
    """Create a channel (text/plain unless ``headers`` say otherwise); it must succeed."""
    sent = {"Content-Type": "text/plain", **(headers or {})}
    async with client.put(STREAM + name, data=body, headers=sent) as resp:
        assert resp.status in (200, 201), await resp.text()
        return resp.status


async def tail(client: TestClient[Any, Any], name: str) -> str:
    async with client.head(STREAM + name) as resp:
        assert resp.status == 200
        return resp.headers["Stream-Next-Offset"]
