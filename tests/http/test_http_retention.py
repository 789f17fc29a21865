"""Per-channel retention over the wire, and retention that never breaks a fork.

Guards the Chanctl-Max-* headers (grammar, 400s that name the header, part of the channel's
config for the same-config rule, echoed by HEAD and the listing), daemon-wide defaults, and the
fork pins the service passes to ``enforce_retention``: a fork reads its source's history below
its fork point, so neither the source nor an intermediate fork may drop it while the fork lives.
Runs over the memory engine; tests/daemon/test_retention.py repeats the essentials through the
real daemon and the local engine.
"""

from __future__ import annotations

from typing import Any

import pytest
from chanctl.daemon.store.base import Retention
from httpkit import STREAM, expect_error, put, serve

TEXT = {"Content-Type": "text/plain"}
LIMITS = {"Chanctl-Max-Age": "2h", "Chanctl-Max-Bytes": "1000", "Chanctl-Max-Messages": "3"}


def off(seq: int) -> str:
    return f"{seq:016d}_{0:016d}"


async def head(client: Any, name: str) -> dict[str, str]:
    async with client.head(STREAM + name) as resp:
        assert resp.status == 200
        return dict(resp.headers)


async def listing(client: Any) -> dict[str, dict[str, Any]]:
    async with client.get("/v1/channels") as resp:
        return {entry["name"]: entry for entry in await resp.json()}


async def read_from(client: Any, name: str, offset: str) -> bytes:
    """Every byte from ``offset`` to the tail, following Stream-Next-Offset."""
    out = b""
    while True:
        async with client.get(STREAM + name, params={"offset": offset}) as resp:
            assert resp.status == 200, await resp.text()
            out += await resp.read()
            offset = resp.headers["Stream-Next-Offset"]
            if resp.headers.get("Stream-Up-To-Date") == "true":
                return out


async def append(client: Any, name: str, *messages: bytes) -> None:
    for msg in messages:
        async with client.post(STREAM + name, data=msg, headers=TEXT) as resp:
            assert resp.status == 204, await resp.text()


async def first_offset(client: Any, name: str) -> str:
    return (await head(client, name))["Chanctl-First-Offset"]


# -- the headers -------------------------------------------------------------------------------


async def test_limits_are_config_echoed_by_head_and_listing() -> None:
    async with serve() as s:
        c = s.client
        assert await put(c, "r", headers=LIMITS) == 201
        await put(c, "plain")
        shown = await head(c, "r")
        assert (shown["Chanctl-Max-Age"], shown["Chanctl-Max-Bytes"]) == ("7200", "1000")
        assert shown["Chanctl-Max-Messages"] == "3"
        assert not any(k.startswith("Chanctl-Max-") for k in await head(c, "plain"))
        entries = await listing(c)
        assert entries["r"]["retention"] == {
            "max_age_s": 7200,
            "max_bytes": 1000,
            "max_messages": 3,
        }
        assert entries["plain"]["retention"] == {
            "max_age_s": None,
            "max_bytes": None,
            "max_messages": None,
        }
        # Same config (another spelling of the same age): 200. Different or missing: 409.
        assert await put(c, "r", headers={**LIMITS, "Chanctl-Max-Age": "120m"}) == 200
        for other in ({**LIMITS, "Chanctl-Max-Messages": "4"}, {}):
            async with c.put(STREAM + "r", headers={**TEXT, **other}) as resp:
                body = await expect_error(resp, 409)
                assert "retention" in body["error"] and "Chanctl-Max-Messages: 3" in body["error"]
        async with c.put(STREAM + "plain", headers={**TEXT, "Chanctl-Max-Bytes": "5"}) as resp:
            await expect_error(resp, 409)


@pytest.mark.parametrize(
    ("given", "seconds"),
    [("45", "45"), ("45s", "45"), ("3m", "180"), ("2h", "7200"), ("7d", "604800")],
)
async def test_max_age_units(given: str, seconds: str) -> None:
    async with serve() as s:
        await put(s.client, "r", headers={"Chanctl-Max-Age": given})
        assert (await head(s.client, "r"))["Chanctl-Max-Age"] == seconds


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Chanctl-Max-Age", "0"),
        ("Chanctl-Max-Age", "-5"),
        ("Chanctl-Max-Age", "1.5h"),
        ("Chanctl-Max-Age", "5w"),
        ("Chanctl-Max-Age", "h"),
        ("Chanctl-Max-Age", ""),
        ("Chanctl-Max-Bytes", "01"),
        ("Chanctl-Max-Bytes", "1e6"),
        ("Chanctl-Max-Bytes", "10k"),
        ("Chanctl-Max-Bytes", "+7"),
        ("Chanctl-Max-Messages", "0"),
        ("Chanctl-Max-Messages", "9007199254740992"),  # 2^53: beyond what JSON clients hold
    ],
)
async def test_malformed_limits_are_400_and_create_nothing(header: str, value: str) -> None:
    async with serve() as s:
        async with s.client.put(STREAM + "r", headers={**TEXT, header: value}) as resp:
            body = await expect_error(resp, 400)
        assert header in body["error"] and "positive whole number" in body["error"]
        async with s.client.head(STREAM + "r") as resp:
            assert resp.status == 404


async def test_daemon_defaults_fill_what_a_put_leaves_out() -> None:
    async with serve(default_retention=Retention(max_age_s=3600, max_messages=2)) as s:
        c = s.client
        await put(c, "bare")
        await put(c, "own", headers={"Chanctl-Max-Messages": "5", "Chanctl-Max-Bytes": "99"})
        bare, own = await head(c, "bare"), await head(c, "own")
        assert (bare["Chanctl-Max-Age"], bare["Chanctl-Max-Messages"]) == ("3600", "2")
        assert "Chanctl-Max-Bytes" not in bare
        assert (own["Chanctl-Max-Age"], own["Chanctl-Max-Messages"]) == ("3600", "5")
        assert own["Chanctl-Max-Bytes"] == "99"
        assert await put(c, "bare") == 200  # a bare PUT means "the defaults": same config
        assert await put(c, "bare", headers={"Chanctl-Max-Messages": "2"}) == 200


async def test_sweep_trims_then_old_offsets_are_410_and_minus_one_starts_at_the_data() -> None:
    async with serve() as s:
        c = s.client
        await put(c, "r", headers={"Chanctl-Max-Messages": "2"})
        await append(c, "r", b"a", b"b", b"c", b"d", b"e")
        await s.service.enforce_retention()
        assert await first_offset(c, "r") == off(3)
        await expect_error(await c.get(STREAM + "r", params={"offset": off(1)}), 410)
        assert await read_from(c, "r", "-1") == b"de"
        assert await read_from(c, "r", off(3)) == b"de"


# -- forks pin the history they read -----------------------------------------------------------


async def test_a_fork_pins_its_source_until_it_is_deleted() -> None:
    async with serve() as s:
        c = s.client
        keep2 = {"Chanctl-Max-Messages": "2"}
        for name in ("src", "control"):
            await put(c, name, headers=keep2)
            await append(c, name, b"a", b"b", b"c", b"d", b"e", b"f")
        fork = {"Stream-Forked-From": STREAM + "src", "Stream-Fork-Offset": off(4)}
        await put(c, "fork", headers=fork)
        await append(c, "fork", b"X")
        await s.service.enforce_retention()
        assert await first_offset(c, "control") == off(4)  # the sweep did run
        assert await first_offset(c, "src") == off(0)  # pinned below the fork point
        assert await read_from(c, "fork", "-1") == b"abcdX"
        assert await read_from(c, "fork", off(1)) == b"bcdX"
        async with c.delete(STREAM + "fork") as resp:
            assert resp.status == 204
        await s.service.enforce_retention()
        assert await first_offset(c, "src") == off(4)
        assert await read_from(c, "src", "-1") == b"ef"


async def test_a_fork_of_a_fork_pins_the_whole_chain() -> None:
    """leaf reads mid below 2, which mid inherits from src: trimming mid's *own* log would
    hide that inherited history, so mid is pinned as a whole, and src through it."""
    async with serve() as s:
        c = s.client
        await put(c, "src", headers={"Chanctl-Max-Messages": "1"})
        await append(c, "src", b"a", b"b", b"c")
        mid = {"Stream-Forked-From": STREAM + "src", "Chanctl-Max-Messages": "1"}
        await put(c, "mid", headers=mid)
        await append(c, "mid", b"D", b"E", b"F")
        await put(
            c, "leaf", headers={"Stream-Forked-From": STREAM + "mid", "Stream-Fork-Offset": off(2)}
        )
        await append(c, "leaf", b"z")
        for _ in range(2):
            await s.service.enforce_retention()
        assert await read_from(c, "leaf", "-1") == b"abz"
        assert await read_from(c, "mid", "-1") == b"abcDEF"
        async with c.delete(STREAM + "leaf") as resp:
            assert resp.status == 204
        await s.service.enforce_retention()  # mid trims its own log past its fork point ...
        assert await first_offset(c, "mid") == off(5)
        await expect_error(await c.get(STREAM + "mid", params={"offset": off(1)}), 410)
        assert await read_from(c, "mid", "-1") == b"F"
        await s.service.enforce_retention()  # ... which releases src
        assert await read_from(c, "src", "-1") == b"c"


async def test_a_fork_that_trimmed_past_its_fork_point_pins_nothing() -> None:
    async with serve() as s:
        c = s.client
        await put(c, "src", headers={"Chanctl-Max-Messages": "1"})
        await append(c, "src", b"a", b"b")
        await put(
            c, "f", headers={"Stream-Forked-From": STREAM + "src", "Chanctl-Max-Messages": "1"}
        )
        await append(c, "f", b"C", b"D")
        for _ in range(2):
            await s.service.enforce_retention()
        assert await read_from(c, "f", "-1") == b"D"
        assert await read_from(c, "src", "-1") == b"b"
