"""Channel names outside the allowlist get 400 with the rule text, whatever the encoding
(reliability contract B4): no traversal, NUL, control characters or overlong names reach the
store, and nothing is created for them."""

from __future__ import annotations

import pytest
from httpkit import assert_envelope, raw_request, serve

from chanctl.protocol import NAME_RULES

BAD_TARGETS = [
    "/v1/stream/..",
    "/v1/stream/%2e%2e",
    "/v1/stream/%2E%2E/etc",
    "/v1/stream/a/../b",
    "/v1/stream/a/%2e%2e/%2e%2e/b",
    "/v1/stream/..%2f..%2fetc%2fpasswd",
    "/v1/stream/.",
    "/v1/stream/a/./b",
    "/v1/stream/",
    "/v1/stream//etc",
    "/v1/stream/a//b",
    "/v1/stream/a/",
    "/v1/stream/a%00b",
    "/v1/stream/a%0Ab",
    "/v1/stream/ab%0A",
    "/v1/stream/a%0D%0Ab",
    "/v1/stream/a%20b",
    "/v1/stream/%5C..%5C",
    "/v1/stream/caf%C3%A9",
    "/v1/stream/e%CC%81",
    "/v1/stream/%E2%80%AEevil",
    "/v1/stream/" + "a" * 201,
    "/v1/stream/" + "a" * 4096,
]


@pytest.mark.parametrize("target", BAD_TARGETS)
@pytest.mark.parametrize("method", ["PUT", "POST", "GET", "HEAD", "DELETE"])
async def test_bad_names_are_400(method: str, target: str) -> None:
    async with serve() as s:
        headers = {"Content-Type": "text/plain"}
        reply = await raw_request(
            s.port, method, target, headers, b"x" if method == "POST" else b""
        )
        assert reply.status == 400
        if method != "HEAD":  # HEAD answers carry no body
            assert_envelope(reply.status, reply.headers, reply.json(), 400)
            assert NAME_RULES in reply.json()["error"]
        assert s.store.names() == []


async def test_fork_source_name_is_validated_too() -> None:
    async with serve() as s:
        headers = {"Content-Type": "text/plain", "Stream-Forked-From": "/v1/stream/../secret"}
        reply = await raw_request(s.port, "PUT", "/v1/stream/fork", headers)
        assert_envelope(reply.status, reply.headers, reply.json(), 400)
        assert s.store.names() == []


@pytest.mark.parametrize("name", ["a", "a/b/c", "A-b_c.d:e", "x" * 200, "run.2024-01-01/logs"])
async def test_good_names_round_trip(name: str) -> None:
    async with serve() as s:
        reply = await raw_request(
            s.port, "PUT", "/v1/stream/" + name, {"Content-Type": "text/plain"}, b"hi"
        )
        assert reply.status == 201
        assert reply.headers["location"].endswith("/v1/stream/" + name)
        reply = await raw_request(s.port, "GET", "/v1/stream/" + name)
        assert (reply.status, reply.body) == (200, b"hi")
        assert s.store.names() == [name]
