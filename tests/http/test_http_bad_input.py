"""Malformed headers, parameters and bodies (reliability contract B2): each gets the status
PROTOCOL.md specifies, never a 5xx, and a refused append leaves the channel untouched."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from httpkit import SMALL, STREAM, expect_error, put, serve, tail

TEXT = {"Content-Type": "text/plain"}
JSON = {"Content-Type": "application/json"}


def producer(epoch: str, seq: str, pid: str = "p") -> dict[str, str]:
    return {**TEXT, "Producer-Id": pid, "Producer-Epoch": epoch, "Producer-Seq": seq}


@pytest.mark.parametrize(
    "headers",
    [
        producer("-1", "0"),
        producer("0", "-1"),
        producer(str(2**53), "0"),
        producer("0", str(2**53)),
        producer("1e3", "0"),
        producer("01", "0"),
        producer("0", "1abc"),
        producer("", "0"),
        producer("0", "0", pid=""),
        {**TEXT, "Producer-Id": "p"},
        {**TEXT, "Producer-Epoch": "0"},
        {**TEXT, "Producer-Id": "p", "Producer-Seq": "0"},
        {**TEXT, "Stream-Seq": ""},
    ],
)
async def test_bad_append_headers_are_400_and_append_nothing(headers: dict[str, str]) -> None:
    async with serve() as s:
        await put(s.client, "x")
        before = await tail(s.client, "x")
        await expect_error(await s.client.post(STREAM + "x", data=b"d", headers=headers), 400)
        assert await tail(s.client, "x") == before


async def test_producer_values_at_the_limits_are_accepted() -> None:
    async with serve() as s:
        await put(s.client, "x")
        top = str(2**53 - 1)
        resp = await s.client.post(STREAM + "x", data=b"d", headers=producer(top, "0"))
        assert resp.status == 200
        assert resp.headers["Producer-Epoch"] == top


@pytest.mark.parametrize(
    "headers",
    [
        {"Stream-TTL": "03600"},
        {"Stream-TTL": "+3600"},
        {"Stream-TTL": "3.6e3"},
        {"Stream-TTL": "3600.0"},
        {"Stream-TTL": "-1"},
        {"Stream-TTL": "abc"},
        {"Stream-TTL": "60", "Stream-Expires-At": "2099-01-01T00:00:00Z"},
        {"Stream-Expires-At": "tomorrow"},
        {"Stream-Expires-At": "2099-01-01"},
        {"Stream-Expires-At": "2099-01-01T00:00:00"},
        {"Stream-Expires-At": "2099-13-01T00:00:00Z"},
        {"Content-Type": "not-a-type"},
        {"Stream-Fork-Offset": "0000000000000000_0000000000000000"},
        {"Stream-Fork-Sub-Offset": "0"},
    ],
)
async def test_bad_create_headers_are_400_and_create_nothing(headers: dict[str, str]) -> None:
    async with serve() as s:
        resp = await s.client.put(STREAM + "x", headers={**TEXT, **headers})
        await expect_error(resp, 400)
        assert s.store.names() == []


@pytest.mark.parametrize(
    "offset",
    ["garbage", "a" * 257, "../x", "0,1", "0 1", "-2", "NOW", "0000000000000001_0000000000000001"],
)
async def test_bad_offsets_are_400(offset: str) -> None:
    async with serve() as s:
        await put(s.client, "x", b"data")
        await expect_error(await s.client.get(STREAM + "x", params={"offset": offset}), 400)


async def test_offsets_beyond_the_tail_are_400() -> None:
    async with serve() as s:
        await put(s.client, "x", b"data")
        beyond = "0000000000000002_0000000000000000"
        for params in ({"offset": beyond}, {"offset": beyond, "live": "long-poll"}):
            await expect_error(await s.client.get(STREAM + "x", params=params), 400)


async def test_repeated_and_empty_parameters_are_400() -> None:
    async with serve() as s:
        await put(s.client, "x", b"data")
        for query in ("offset=-1&offset=-1", "offset=", "live=", "offset=-1&live=forever"):
            await expect_error(await s.client.get(f"{STREAM}x?{query}"), 400)
        await expect_error(await s.client.get(STREAM + "x", params={"live": "sse"}), 400)


@pytest.mark.parametrize(
    "body",
    [b"{nope", b"", b"   ", b"[]", b"NaN", b"[1, Infinity]", b"1e999", b"\xff\xfe", b'"\xc3'],
)
async def test_bad_json_appends_are_400_and_append_nothing(body: bytes) -> None:
    async with serve() as s:
        await put(s.client, "j", headers=JSON)
        await expect_error(await s.client.post(STREAM + "j", data=body, headers=JSON), 400)
        assert await tail(s.client, "j") == "0000000000000000_0000000000000000"


async def test_oversize_bodies_are_413_and_append_nothing() -> None:
    async with serve() as s:
        await put(s.client, "x", b"first")
        before = await tail(s.client, "x")
        big = b"x" * (SMALL.max_body_bytes + 1)
        await expect_error(await s.client.post(STREAM + "x", data=big, headers=TEXT), 413)

        async def chunked() -> Any:
            for _ in range(3):
                yield b"y" * (SMALL.max_body_bytes // 2)

        resp = await s.client.post(STREAM + "x", data=chunked(), headers=TEXT)
        assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
        await expect_error(resp, 413)
        assert await tail(s.client, "x") == before
        await expect_error(await s.client.put(STREAM + "y", data=big, headers=TEXT), 413)
        assert s.store.names() == ["x"]


async def test_chunked_body_within_the_limit_is_one_message() -> None:
    async with serve() as s:
        await put(s.client, "x")

        async def chunked() -> Any:
            for part in (b"hello ", b"chunked ", b"world"):
                yield part

        resp = await s.client.post(STREAM + "x", data=chunked(), headers=TEXT)
        assert resp.status == 204
        assert resp.headers["Stream-Next-Offset"] == "0000000000000001_0000000000000000"
        assert await (await s.client.get(STREAM + "x")).read() == b"hello chunked world"


async def test_content_type_rules_on_append() -> None:
    async with serve() as s:
        await put(s.client, "x")
        await expect_error(await s.client.post(STREAM + "x", data=b"{}", headers=JSON), 409)
        resp = await s.client.post(STREAM + "x", data=b"d", skip_auto_headers=["Content-Type"])
        await expect_error(resp, 400)
        ok = await s.client.post(STREAM + "x", data=b"d", headers={"Content-Type": "Text/Plain"})
        assert ok.status == 204


async def test_stream_seq_must_increase() -> None:
    async with serve() as s:
        await put(s.client, "x")
        client: TestClient[Any, Any] = s.client
        assert (
            await client.post(STREAM + "x", data=b"a", headers={**TEXT, "Stream-Seq": "2"})
        ).status == 204
        for seq in ("2", "10", "1"):
            resp = await client.post(STREAM + "x", data=b"b", headers={**TEXT, "Stream-Seq": seq})
            await expect_error(resp, 409)
        assert (
            await client.post(STREAM + "x", data=b"c", headers={**TEXT, "Stream-Seq": "3"})
        ).status == 204
