"""Every error path answers with the one JSON envelope and the browser security headers.

Guards the rule that errors are produced in one place: a new error path that builds its own
response (plain text, no nosniff) fails here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from httpkit import (
    SMALL,
    STREAM,
    RawReply,
    Served,
    assert_envelope,
    expect_error,
    put,
    raw_request,
    serve,
)

Scenario = Callable[[Served], Awaitable[Any]]


async def _missing(s: Served) -> Any:
    return await s.client.get(STREAM + "nope")


async def _bad_name(s: Served) -> Any:
    return await raw_request(s.port, "GET", "/v1/stream/a/../b")


async def _bad_offset(s: Served) -> Any:
    await put(s.client, "x")
    return await s.client.get(STREAM + "x", params={"offset": "garbage"})


async def _ttl_and_expiry(s: Served) -> Any:
    headers = {"Stream-TTL": "60", "Stream-Expires-At": "2099-01-01T00:00:00Z"}
    return await s.client.put(STREAM + "x", headers=headers)


async def _invalid_json(s: Served) -> Any:
    await put(s.client, "j", headers={"Content-Type": "application/json"})
    return await s.client.post(
        STREAM + "j", data=b"{nope", headers={"Content-Type": "application/json"}
    )


async def _empty_post(s: Served) -> Any:
    await put(s.client, "x")
    return await s.client.post(STREAM + "x", data=b"", headers={"Content-Type": "text/plain"})


async def _stale_epoch(s: Served) -> Any:
    await put(s.client, "x")
    await _produce(s, epoch=1, seq=0)
    return await _produce(s, epoch=0, seq=0)


async def _producer_gap(s: Served) -> Any:
    await put(s.client, "x")
    await _produce(s, epoch=0, seq=0)
    return await _produce(s, epoch=0, seq=5)


async def _produce(s: Served, epoch: int, seq: int) -> Any:
    headers = {
        "Content-Type": "text/plain",
        "Producer-Id": "p",
        "Producer-Epoch": str(epoch),
        "Producer-Seq": str(seq),
    }
    return await s.client.post(STREAM + "x", data=b"d", headers=headers)


async def _type_mismatch(s: Served) -> Any:
    await put(s.client, "x")
    return await s.client.post(
        STREAM + "x", data=b"{}", headers={"Content-Type": "application/json"}
    )


async def _config_mismatch(s: Served) -> Any:
    await put(s.client, "x")
    return await s.client.put(STREAM + "x", headers={"Content-Type": "application/json"})


async def _closed(s: Served) -> Any:
    await put(s.client, "x", headers={"Stream-Closed": "true"})
    return await s.client.post(STREAM + "x", data=b"d", headers={"Content-Type": "text/plain"})


async def _soft_deleted(s: Served) -> Any:
    await put(s.client, "src", b"data")
    fork = {"Stream-Forked-From": STREAM + "src", "Content-Type": "text/plain"}
    assert (await s.client.put(STREAM + "fork", headers=fork)).status == 201
    await s.client.delete(STREAM + "src")
    return await s.client.get(STREAM + "src")


async def _too_large(s: Served) -> Any:
    await put(s.client, "x")
    big = b"x" * (SMALL.max_body_bytes + 1)
    return await s.client.post(STREAM + "x", data=big, headers={"Content-Type": "text/plain"})


async def _wrong_method(s: Served) -> Any:
    return await s.client.patch(STREAM + "x")


async def _unknown_route(s: Served) -> Any:
    return await s.client.get("/v2/nothing")


CASES: list[tuple[str, Scenario, int]] = [
    ("missing channel", _missing, 404),
    ("traversal name", _bad_name, 400),
    ("malformed offset", _bad_offset, 400),
    ("TTL and Expires-At", _ttl_and_expiry, 400),
    ("invalid JSON", _invalid_json, 400),
    ("empty append", _empty_post, 400),
    ("stale producer epoch", _stale_epoch, 403),
    ("producer sequence gap", _producer_gap, 409),
    ("content-type mismatch", _type_mismatch, 409),
    ("create with other config", _config_mismatch, 409),
    ("append to closed channel", _closed, 409),
    ("soft-deleted source", _soft_deleted, 410),
    ("body over the limit", _too_large, 413),
    ("method not allowed", _wrong_method, 405),
    ("unknown route", _unknown_route, 404),
]


@pytest.mark.parametrize(
    ("scenario", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_error_envelope(scenario: Scenario, expected: int) -> None:
    async with serve() as s:
        reply = await scenario(s)
        if isinstance(reply, RawReply):
            assert_envelope(reply.status, reply.headers, reply.json(), expected)
        else:
            await expect_error(reply, expected)


async def test_protocol_headers_survive_the_envelope() -> None:
    """Errors that must carry protocol headers still do, inside the one envelope."""
    async with serve() as s:
        reply = await _closed(s)
        await expect_error(reply, 409)
        assert reply.headers["Stream-Closed"] == "true"
        assert reply.headers["Stream-Next-Offset"] == "0000000000000000_0000000000000000"
    async with serve() as s:
        reply = await _stale_epoch(s)
        await expect_error(reply, 403)
        assert reply.headers["Producer-Epoch"] == "1"
    async with serve() as s:
        reply = await _producer_gap(s)
        await expect_error(reply, 409)
        assert reply.headers["Producer-Expected-Seq"] == "1"
        assert reply.headers["Producer-Received-Seq"] == "5"


async def test_live_reader_cap_is_503_with_retry_after() -> None:
    async with serve() as s:
        await put(s.client, "x")
        params = {"offset": "now", "live": "long-poll"}
        waiting = [
            asyncio.ensure_future(s.client.get(STREAM + "x", params=params)) for _ in range(2)
        ]
        await asyncio.sleep(0.05)
        reply = await s.client.get(STREAM + "x", params=params)
        await expect_error(reply, 503)
        assert reply.headers["Retry-After"] == "1"
        for fut in waiting:
            assert (await fut).status == 204


async def test_unexpected_exception_is_500_envelope(monkeypatch: pytest.MonkeyPatch) -> None:
    async with serve() as s:

        async def boom(name: str) -> None:
            raise RuntimeError("disk on fire")

        monkeypatch.setattr(s.service, "delete", boom)
        body = await expect_error(await s.client.delete(STREAM + "x"), 500)
        assert "disk on fire" not in body["error"]  # internals stay in the daemon log
