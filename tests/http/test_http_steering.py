"""The control lane and producer liveness routes (daemon/http/steering.py): a control lane is a
plain Durable Streams stream that appears on first POST, stays out of listings and dies with its
channel; producer attach, heartbeat, takeover, fencing, detach and "lost". Guards README
"Steering and wrapping jobs" on the daemon side."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from httpkit import STREAM, serve

CONTROL = "/v1/control/"
PRODUCER = "/v1/producer/"
JSON = {"Content-Type": "application/json"}
STEER = b'[{"type":"steer","time":"2026-01-01T00:00:00.000000Z","data":"stop"}]'


def claim(run: str, **extra: Any) -> dict[str, Any]:
    return {"run_id": run, "pid": 4242, "host": "box", "ttl": 0.5, **extra}


async def test_control_lane_is_a_hidden_part_of_its_channel() -> None:
    async with serve() as s:
        c = s.client
        async with c.post(CONTROL + "job/1", data=STEER, headers=JSON) as resp:
            assert resp.status in (200, 204)  # created by its first append
        async with c.get(CONTROL + "job/1", params={"offset": "-1"}) as resp:
            assert (await resp.json())[0]["data"] == "stop"
        async with c.head(STREAM + "job/1") as resp:
            assert resp.status == 404, "the output lane is separate"
        async with c.put(STREAM + "job/1", headers=JSON) as resp:
            assert resp.status == 201
        async with c.put(
            "/v1/cursors/job/1?lane=control&name=producer",
            json={"offset": "0000000000000001_0000000000000000"},
        ) as resp:
            assert resp.status == 204
        async with c.get("/v1/channels") as resp:
            assert [e["name"] for e in await resp.json()] == ["job/1"]
        async with c.delete(STREAM + "job/1") as resp:
            assert resp.status == 204
        async with c.head(CONTROL + "job/1") as resp:
            assert resp.status == 404, "deleted with its channel"
        async with c.get("/v1/cursors/job/1?lane=control&name=producer") as resp:
            assert (await resp.json())["offset"] is None, "and so is its position"
        async with c.get(CONTROL + "bad%23name", params={"offset": "-1"}) as resp:
            assert resp.status == 400, "no way to address a store name directly"


async def test_attach_takeover_fencing_and_detach() -> None:
    async with serve() as s:
        c = s.client
        async with c.put(PRODUCER + "p", json=claim("run-a")) as resp:
            first = await resp.json()
        assert (first["state"], first["epoch"], first["pid"]) == ("attached", 1, 4242)
        async with c.put(PRODUCER + "p", json=claim("run-b")) as resp:
            assert resp.status == 409 and (await resp.json())["producer"]["run_id"] == "run-a"
        async with c.put(PRODUCER + "p", json=claim("run-b", takeover=True)) as resp:
            assert (await resp.json())["epoch"] == 2
        async with c.put(PRODUCER + "p", json=claim("run-a", epoch=1)) as resp:
            assert resp.status == 409 and (await resp.json())["fenced"] is True
        async with c.delete(PRODUCER + "p", params={"run_id": "run-b", "exit_status": "3"}) as r:
            assert r.status == 204
        async with c.get(PRODUCER + "p") as resp:
            done = await resp.json()
        assert (done["state"], done["exit_status"]) == ("exited", 3)
        async with c.get("/v1/producer/none") as resp:
            assert (await resp.json()) == {"state": "none"}
        async with c.put(PRODUCER + "p", json={"run_id": "", "pid": 1}) as resp:
            assert resp.status == 400


async def test_a_silent_producer_is_lost_and_needs_no_takeover() -> None:
    async with serve() as s:
        c = s.client
        async with c.put(PRODUCER + "q", json=claim("run-a")) as resp:
            assert resp.status == 200
        async with c.put(STREAM + "q", headers=JSON) as resp:
            assert resp.status == 201
        deadline = time.monotonic() + 5
        while True:
            async with c.get("/v1/channels") as resp:
                state = (await resp.json())[0]["producer"]["state"]
            if state == "lost" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)  # polling the listing until the ttl has run out
        assert state == "lost"
        async with c.put(PRODUCER + "q", json=claim("run-b")) as resp:
            assert (await resp.json())["epoch"] == 2
