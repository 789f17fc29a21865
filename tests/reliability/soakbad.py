"""Requests the R7 soak sends the daemon that it must refuse, and raw-socket helpers.

Each bad request carries a message id of its own (``bad:N``), so if the daemon ever appended
one, CHECK would report it as a phantom; the soak also counts that none of them leaves an
ERROR line in the daemon log or a descriptor or task behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from .loadkit import JSON, request_bytes


def producer_headers(pid: str, seq: int) -> dict[str, str]:
    return {"Producer-Id": pid, "Producer-Epoch": "0", "Producer-Seq": str(seq)}


async def send_and_hang_up(sock: Path, path: str, body: bytes, headers: dict[str, str]) -> None:
    """Send a whole request and close the connection without reading the reply: the client
    cannot know whether the append happened, exactly the case producer ids exist for."""
    _, writer = await asyncio.open_unix_connection(str(sock))
    writer.write(request_bytes("POST", path, body, **headers))
    with contextlib.suppress(ConnectionError):  # whatever happened, the retry will tell
        await writer.drain()
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


CUT_OFF = 0  # "status" of a request the daemon cut off without a reply the client could read


async def raw_status(sock: Path, data: bytes) -> int:
    """Send raw bytes and return the status of the reply (the daemon may close after it)."""
    reader, writer = await asyncio.open_unix_connection(str(sock))
    try:
        writer.write(data)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
    except ConnectionError:
        return CUT_OFF
    finally:
        writer.close()
    return int(line.split()[1]) if line.startswith(b"HTTP/1.") else -1


async def _declared_1gib(sock: Path, s: aiohttp.ClientSession, mid: str) -> int:
    head = "POST /v1/stream/soak-a HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
    return await raw_status(sock, f"{head}Content-Length: 1073741824\r\n\r\n".encode())


async def _post(s: aiohttp.ClientSession, path: str, body: bytes, **headers: str) -> int:
    async with s.post(f"http://d{path}", data=body, headers={**JSON, **headers}) as r:
        await r.read()
        return r.status


async def _oversized(sock: Path, s: aiohttp.ClientSession, mid: str) -> int:
    """A whole 1 MiB + body: the daemon answers 413 and closes as soon as it is over the limit,
    so the client usually gets a broken pipe, and the 413 is lost with the reset (unix
    sockets drop what the closing side left unread); a later append must not contain it."""
    body = json.dumps([mid, "x" * (1 << 20)]).encode()
    head = "POST /v1/stream/soak-a HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
    return await raw_status(sock, f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)


async def _bad_json(sock: Path, s: aiohttp.ClientSession, mid: str) -> int:
    return await _post(s, "/v1/stream/soak-b", f'["{mid}", '.encode())


async def _bad_epoch(sock: Path, s: aiohttp.ClientSession, mid: str) -> int:
    headers = {**producer_headers("bad", 0), "Producer-Epoch": "-1"}
    return await _post(s, "/v1/stream/soak-b", json.dumps([mid]).encode(), **headers)


async def _no_channel(sock: Path, s: aiohttp.ClientSession, mid: str) -> int:
    return await _post(s, "/v1/stream/soak-missing", json.dumps([mid]).encode())


async def _bad_offset(sock: Path, s: aiohttp.ClientSession, mid: str) -> int:
    async with s.get("http://d/v1/stream/soak-a?offset=../x") as r:
        await r.read()
        return r.status


async def _huge_header(sock: Path, s: aiohttp.ClientSession, mid: str) -> int:
    head = f"GET /v1/stream/soak-a?offset=-1 HTTP/1.1\r\nHost: d\r\nX-Big: {'y' * 9000}\r\n\r\n"
    return await raw_status(sock, head.encode())


async def _garbage(sock: Path, s: aiohttp.ClientSession, mid: str) -> int:
    return await raw_status(sock, b"NOT-HTTP \x00\x01 garbage\r\n\r\n")


BadRequest = Callable[[Path, aiohttp.ClientSession, str], Awaitable[int]]
BAD_REQUESTS: tuple[tuple[str, BadRequest, tuple[int, ...]], ...] = (
    ("Content-Length 1 GiB", _declared_1gib, (413,)),
    ("1 MiB + body", _oversized, (413, CUT_OFF)),
    ("malformed JSON", _bad_json, (400,)),
    ("Producer-Epoch -1", _bad_epoch, (400,)),
    ("missing channel", _no_channel, (404,)),
    ("offset ../x", _bad_offset, (400,)),
    ("9000-byte header line", _huge_header, (400, 431)),
    ("not HTTP", _garbage, (400,)),
)
