"""Durable Streams semantics beyond what the official suite pins down: forks (stitching,
sub-offsets, soft delete and cascading GC), lifetimes, duplicates of pending appends,
retention, JSON framing, SSE framing, caching and the chanctl extension routes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from chanctl.daemon.http.app import build_app
from chanctl.daemon.model import AppendRequest, CreateRequest, ForkRequest
from chanctl.daemon.service import StreamService
from chanctl.daemon.store.base import (
    AppendBatch,
    ChannelConfig,
    Committed,
    ProducerStamp,
    Retention,
)
from chanctl.daemon.store.memory import MemoryStore
from httpkit import STREAM, expect_error, put, serve, tail

TEXT = {"Content-Type": "text/plain"}
JSON = {"Content-Type": "application/json"}
ZERO = "0000000000000000_0000000000000000"


def off(seq: int) -> str:
    return f"{seq:016d}_{0:016d}"


async def body(client: Any, name: str, **params: str) -> bytes:
    async with client.get(STREAM + name, params=params or {"offset": "-1"}) as resp:
        assert resp.status == 200, await resp.text()
        return bytes(await resp.read())


async def refs(store: MemoryStore, name: str) -> int:
    st = await store.get(name)
    assert st is not None
    return st.fork_refs


# -- forks -------------------------------------------------------------------------------------


async def test_fork_chain_reads_stitch_and_stay_isolated() -> None:
    async with serve() as s:
        c = s.client
        await put(c, "a", b"A")
        await c.post(STREAM + "a", data=b"B", headers=TEXT)
        await c.put(STREAM + "b", headers={**TEXT, "Stream-Forked-From": STREAM + "a"})
        await c.post(STREAM + "b", data=b"C", headers=TEXT)
        fork_at_1 = {**TEXT, "Stream-Forked-From": STREAM + "b", "Stream-Fork-Offset": off(1)}
        assert (await c.put(STREAM + "c", headers=fork_at_1)).status == 201
        await c.post(STREAM + "c", data=b"D", headers=TEXT)
        await c.post(STREAM + "a", data=b"x", headers=TEXT)
        assert await body(c, "a") == b"ABx"
        assert await body(c, "b") == b"ABC"
        assert await body(c, "c") == b"AD"
        assert await body(c, "c", offset=off(1)) == b"D"
        assert await tail(c, "c") == off(2)


async def test_fork_catch_up_is_chunked_across_the_boundary() -> None:
    async with serve() as s:  # read_chunk_bytes is 64
        c = s.client
        await put(c, "src", b"s" * 50)
        await c.post(STREAM + "src", data=b"t" * 50, headers=TEXT)
        await c.put(STREAM + "f", headers={**TEXT, "Stream-Forked-From": STREAM + "src"})
        await c.post(STREAM + "f", data=b"f" * 10, headers=TEXT)
        seen, offset, up_to_date = b"", "-1", None
        while not up_to_date:
            async with c.get(STREAM + "f", params={"offset": offset}) as resp:
                seen += await resp.read()
                offset = resp.headers["Stream-Next-Offset"]
                up_to_date = resp.headers.get("Stream-Up-To-Date")
        assert seen == b"s" * 50 + b"t" * 50 + b"f" * 10


async def test_json_sub_offset_copies_whole_messages() -> None:
    async with serve() as s:
        c = s.client
        await c.put(STREAM + "src", data=b'[{"a": 1}, {"b": 2}, {"c": 3}]', headers=JSON)
        headers = {
            **JSON,
            "Stream-Forked-From": STREAM + "src",
            "Stream-Fork-Offset": off(1),
            "Stream-Fork-Sub-Offset": "2",
        }
        resp = await c.put(STREAM + "f", data=b'{"d":4}', headers=headers)
        assert resp.status == 201 and resp.headers["Content-Type"] == "application/json"
        assert json.loads(await body(c, "f")) == [{"a": 1}, {"b": 2}, {"c": 3}, {"d": 4}]
        await expect_error(
            await c.put(STREAM + "g", headers={**headers, "Stream-Fork-Sub-Offset": "3"}), 400
        )


async def test_delete_with_forks_is_soft_and_gc_cascades() -> None:
    async with serve() as s:
        c = s.client
        await put(c, "l0", b"root")
        for child, parent in (("l1", "l0"), ("l2", "l1")):
            hdrs = {**TEXT, "Stream-Forked-From": STREAM + parent}
            assert (await c.put(STREAM + child, headers=hdrs)).status == 201
        assert await refs(s.store, "l0") == 1
        for name in ("l0", "l1"):
            assert (await c.delete(STREAM + name)).status == 204
            await expect_error(await c.get(STREAM + name), 410)
            assert (await c.head(STREAM + name)).status == 410
        await expect_error(await c.put(STREAM + "l0", headers=TEXT), 409)
        assert await body(c, "l2") == b"root"
        assert (await c.delete(STREAM + "l2")).status == 204
        assert sorted(s.store.names()) == []


async def test_rejected_fork_takes_no_reference() -> None:
    async with serve() as s:
        c = s.client
        await put(c, "src", b"data")
        bad = {"Content-Type": "application/json", "Stream-Forked-From": STREAM + "src"}
        await expect_error(await c.put(STREAM + "f", headers=bad), 409)
        beyond = {**TEXT, "Stream-Forked-From": STREAM + "src", "Stream-Fork-Offset": off(2)}
        await expect_error(await c.put(STREAM + "f", headers=beyond), 400)
        await expect_error(
            await c.put(STREAM + "f", headers={**TEXT, "Stream-Forked-From": "/v1/stream/none"}),
            404,
        )
        assert await refs(s.store, "src") == 0


async def test_fork_lifetime_inheritance() -> None:
    async with serve() as s:
        svc = s.service
        await svc.create(CreateRequest("ttl", "text/plain", ttl_s=3600))
        await svc.create(CreateRequest("exp", "text/plain", expires_at="2099-01-01T00:00:00Z"))
        await svc.create(CreateRequest("f1", fork=ForkRequest("ttl")))
        await svc.create(CreateRequest("f2", fork=ForkRequest("exp")))
        await svc.create(CreateRequest("f3", ttl_s=5, fork=ForkRequest("exp")))
        meta = {n: await svc.metadata(n) for n in ("f1", "f2", "f3")}
        assert (meta["f1"].ttl_s, meta["f1"].expires_at) == (3600, None)
        assert (meta["f2"].ttl_s, meta["f2"].expires_at) == (None, "2099-01-01T00:00:00Z")
        assert (meta["f3"].ttl_s, meta["f3"].expires_at) == (5, None)
        # Re-creating a fork without lifetime headers matches what it inherited.
        assert not (await svc.create(CreateRequest("f1", fork=ForkRequest("ttl")))).created


# -- lifetimes ---------------------------------------------------------------------------------


async def test_sweep_expires_idle_channels_without_access() -> None:
    async with serve() as s:
        svc = s.service
        await svc.create(CreateRequest("short", "text/plain", ttl_s=1))
        await svc.create(CreateRequest("forever", "text/plain"))
        await svc.sweep()
        assert sorted(s.store.names()) == ["forever", "short"]
        await svc.sweep(now=10**10)
        assert s.store.names() == ["forever"]


async def test_expires_at_is_canonical_and_compared_as_an_instant() -> None:
    async with serve() as s:
        c = s.client
        hdr = {**TEXT, "Stream-Expires-At": "2099-06-01T02:00:00.500+02:00"}
        assert (await c.put(STREAM + "x", headers=hdr)).status == 201
        same = {**TEXT, "Stream-Expires-At": "2099-06-01T00:00:00.5Z"}
        assert (await c.put(STREAM + "x", headers=same)).status == 200
        async with c.head(STREAM + "x") as resp:
            assert resp.headers["Stream-Expires-At"] == "2099-06-01T00:00:00.5Z"


# -- appends -----------------------------------------------------------------------------------


class GatedStore(MemoryStore):
    """Holds every commit until ``gate`` opens: appends stay pending, not yet durable."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: asyncio.Event | None = None

    def submit(self, name: str, batch: AppendBatch) -> Awaitable[Committed]:
        done = super().submit(name, batch)
        gate = self.gate
        if gate is None:
            return done

        async def later() -> Committed:
            await gate.wait()
            return await done

        return later()


async def test_duplicate_of_a_pending_append_waits_for_durability() -> None:
    async with serve() as s:
        store = GatedStore()
        svc = StreamService(store, s.service.settings)
        await svc.create(CreateRequest("x", "text/plain"))
        store.gate = asyncio.Event()
        req = AppendRequest("x", "text/plain", b"one", producer=ProducerStamp("p", 0, 0))
        first = asyncio.ensure_future(svc.append(req))
        await asyncio.sleep(0)
        dup = asyncio.ensure_future(svc.append(req))
        await asyncio.sleep(0.05)
        assert not first.done() and not dup.done()
        store.gate.set()
        assert (await first).wrote and not (await first).duplicate
        result = await dup
        assert result.duplicate and result.next_seq == 1 and (result.producer_seq == 0)


async def test_json_messages_are_stored_compact_and_framed() -> None:
    async with serve() as s:
        c = s.client
        await c.put(STREAM + "j", data=b"[]", headers=JSON)
        await c.post(STREAM + "j", data=b' [ {"a" : 1} , [1, 2] , "s p" ] ', headers=JSON)
        await c.post(STREAM + "j", data=b'"\\ud800 lone"', headers=JSON)
        got = await s.store.read_raw("j", 0, 1 << 20)
        assert got.data == b'{"a":1}[1,2]"s p""\\ud800 lone"'
        assert list(got.lengths) == [7, 5, 5, 13]
        assert json.loads(await body(c, "j")) == [{"a": 1}, [1, 2], "s p", "\ud800 lone"]


async def test_close_is_idempotent_and_atomic_with_the_final_append() -> None:
    async with serve() as s:
        c = s.client
        await put(c, "x")
        closing = {**TEXT, "Stream-Closed": "true"}
        first = await c.post(STREAM + "x", data=b"last", headers=closing)
        assert (first.status, first.headers["Stream-Closed"]) == (204, "true")
        again = await c.post(STREAM + "x", headers={"Stream-Closed": "true"})
        assert (again.status, again.headers["Stream-Next-Offset"]) == (204, off(1))
        async with c.get(STREAM + "x", params={"offset": "-1"}) as resp:
            assert (await resp.read(), resp.headers["Stream-Closed"]) == (b"last", "true")
            assert resp.headers["ETag"].endswith(':c"')


# -- reads -------------------------------------------------------------------------------------


async def test_retention_gap_is_410_and_minus_one_starts_at_the_retained_data() -> None:
    async with serve() as s:
        config = ChannelConfig("text/plain", 0.0, retention=Retention(max_messages=2))
        await s.store.create("r", config, AppendBatch([b"a", b"b", b"c", b"d"]))
        await s.store.enforce_retention(0.0)
        assert await body(s.client, "r") == b"cd"
        await expect_error(await s.client.get(STREAM + "r", params={"offset": ZERO}), 410)
        async with s.client.head(STREAM + "r") as resp:
            assert resp.headers["Chanctl-First-Offset"] == off(2)
            assert resp.headers["Chanctl-Fsync-Policy"] == "never"


async def test_etag_revalidation_and_cache_rules() -> None:
    async with serve() as s:
        c = s.client
        await put(c, "x", b"data")
        async with c.get(STREAM + "x") as resp:
            tag = resp.headers["ETag"]
            assert "max-age=60" in resp.headers["Cache-Control"]
        for match in (tag, f"W/{tag}", f'"other", {tag}', "*"):
            async with c.get(STREAM + "x", headers={"If-None-Match": match}) as resp:
                assert resp.status == 304 and await resp.read() == b""
        async with c.get(STREAM + "x", params={"offset": off(1)}) as resp:
            assert resp.headers["Cache-Control"] == "no-store"  # the open tail changes
        async with c.get(STREAM + "x", params={"offset": "now"}) as resp:
            assert "ETag" not in resp.headers and resp.headers["Cache-Control"] == "no-store"


async def test_long_poll_wakes_on_append_and_times_out_with_cursor() -> None:
    async with serve() as s:
        c = s.client
        await put(c, "x")
        params = {"offset": ZERO, "live": "long-poll"}
        waiter = asyncio.ensure_future(c.get(STREAM + "x", params=params))
        await asyncio.sleep(0.05)
        await c.post(STREAM + "x", data=b"new", headers=TEXT)
        resp = await waiter
        assert (resp.status, await resp.read()) == (200, b"new")
        assert resp.headers["Stream-Cursor"].isdigit()
        resp = await c.get(STREAM + "x", params={**params, "offset": off(1), "cursor": "9" * 15})
        assert resp.status == 204 and int(resp.headers["Stream-Cursor"]) > 10**15 - 1


async def test_sse_framing_is_injection_safe() -> None:
    async with serve() as s:
        c = s.client
        payload = b" lead\r\nmid\rend\n\nevent: control\ndata: {}"
        await put(c, "t", payload, headers={"Stream-Closed": "true"})
        async with c.get(STREAM + "t", params={"offset": "-1", "live": "sse"}) as resp:
            assert resp.headers["Content-Type"] == "text/event-stream"
            assert resp.headers["Cache-Control"] == "no-cache"
            text = (await resp.read()).decode()
        data, control = text.split("\n\n")[:2]
        assert data.split("\n") == [
            "event: data",
            "data:  lead",
            "data:mid",
            "data:end",
            "data:",
            "data:event: control",
            "data:data: {}",
        ]
        assert json.loads(control.split("data:", 1)[1]) == {
            "streamNextOffset": off(1),
            "upToDate": True,
            "streamClosed": True,
        }


async def test_sse_base64_for_binary_channels() -> None:
    async with serve() as s:
        await put(
            s.client, "b", b"\x00\xff\n", headers={"Content-Type": "application/octet-stream"}
        )
        params = {"offset": "-1", "live": "sse"}
        async with s.client.get(STREAM + "b", params=params) as resp:
            assert resp.headers["stream-sse-data-encoding"] == "base64"
            first = await resp.content.readuntil(b"\n\n")
        assert first == b"event: data\ndata:AP8K\n\n"


# -- extension routes and CORS -----------------------------------------------------------------


async def test_health_and_channel_listing() -> None:
    async with serve() as s:
        c = s.client
        health = await (await c.get("/v1/health")).json()
        assert health == {
            "ok": True,
            "version": health["version"],
            "fsync": "never",
            "tasks": health["tasks"],
        }
        assert isinstance(health["tasks"], int) and health["tasks"] >= 1  # this request's own
        await put(c, "b/two", b"xy")
        await put(c, "a", b"")
        listing = await (await c.get("/v1/channels")).json()
        assert [ch["name"] for ch in listing] == ["a", "b/two"]
        assert listing[1]["next_offset"] == off(1) and listing[1]["size"] == 2


@pytest.mark.parametrize("origins", [(), ("https://app.example",)])
async def test_cors_only_for_configured_origins(origins: tuple[str, ...]) -> None:
    async with serve() as s:
        app = build_app(s.service, s.service.settings, cors_origins=origins)
        async with TestClient(TestServer(app)) as c:
            hdrs = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
            resp = await c.options(STREAM + "x", headers=hdrs)
            assert resp.status == 204
            assert "if-none-match" in resp.headers["Access-Control-Allow-Headers"].lower()
            allowed = resp.headers.get("Access-Control-Allow-Origin")
            assert allowed == (origins[0] if origins else None)


async def test_sse_follows_the_tail_then_ends_at_max_age() -> None:
    async with serve() as s:  # sse_max_age_s is 1.0
        c = s.client
        await put(c, "x", b"a")
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with c.get(STREAM + "x", params={"offset": "-1", "live": "sse"}) as resp:
            await resp.content.readuntil(b"upToDate")
            await c.post(STREAM + "x", data=b"b", headers=TEXT)
            rest = (await resp.read()).decode()  # returns once the server ends the stream
        assert 0.9 < loop.time() - started < 3
        assert "event: data\ndata:b\n\nevent: control\n" in rest
        assert '"streamCursor"' in rest and "streamClosed" not in rest


async def test_sse_ends_when_the_channel_is_deleted() -> None:
    async with serve() as s:
        c = s.client
        await put(c, "x")
        async with c.get(STREAM + "x", params={"offset": "now", "live": "sse"}) as resp:
            await resp.content.readuntil(b"\n\n")
            assert (await c.delete(STREAM + "x")).status == 204
            assert await asyncio.wait_for(resp.read(), 0.5) == b""
