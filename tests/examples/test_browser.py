"""examples/browser: a static page reading a channel with the browser's own EventSource (the
Durable Streams SSE read, no chanctl code in the page) shows live messages and, after a
reload, resumes from the offset it stored: nothing shown twice, nothing missed."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from daemonkit import CHROMIUM, LAUNCH_ARGS, free_port, http_tcp, wait_for
from examplekit import EXAMPLES, Procs

import chanctl
from chanctl.protocol import format_offset

ROWS = "() => [...document.querySelectorAll('#log .msg')].map((r) => r.textContent)"


@pytest.fixture
def page() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        pg = browser.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        yield pg
        browser.close()
        assert not errors, f"script errors in the page: {errors}"


def _serve(procs: Procs, env: dict[str, str]) -> int:
    port = free_port()
    procs.spawn(env, [sys.executable, str(EXAMPLES / "browser" / "serve.py"), str(port)])

    def up() -> bool:
        try:
            return http_tcp("127.0.0.1", port, "GET", "/", timeout=1).status == 200
        except OSError:
            return False

    wait_for(up, 15, "the example's server")
    return port


def _rows(page: Any, n: int) -> list[str]:
    page.wait_for_function(f"() => document.querySelectorAll('#log .msg').length >= {n}")
    return list(page.evaluate(ROWS))


def test_page_follows_live_and_resumes_after_reload(
    ex_env: dict[str, str], procs: Procs, page: Any
) -> None:
    port = _serve(procs, ex_env)
    reads: list[str] = []
    page.on("request", lambda r: reads.append(r.url) if "/v1/stream/" in r.url else None)
    with chanctl.Client(ex_env["CHANCTL_URL"], autostart=False) as c:
        c.publish_many("room", ["one", "two", "three"])
        page.goto(f"http://127.0.0.1:{port}/?channel=room")
        assert _rows(page, 3) == ["messageone", "messagetwo", "messagethree"]
        page.wait_for_function("() => document.getElementById('status').textContent === 'live'")
        c.publish("room", "four", type="stdout")  # live: pushed over the open SSE read
        c.publish("room", "<b>five</b>", type="stderr")
        assert _rows(page, 5)[3:] == ["stdoutfour", "stderr<b>five</b>"]
        assert page.evaluate("() => document.querySelectorAll('#log b').length") == 0

        page.reload()
        page.wait_for_function("() => document.getElementById('status').textContent === 'live'")
        resumed = format_offset(5)
        assert page.text_content("#resumed") == f"resumed at offset {resumed}"
        assert reads[-1].split("?", 1)[1] == f"offset={resumed}&live=sse"
        assert page.evaluate(ROWS) == []  # nothing shown twice
        c.publish_many("room", ["six", "seven"])
        c.close("room")
        page.wait_for_function("() => document.getElementById('status').textContent === 'closed'")
        assert page.evaluate(ROWS) == ["messagesix", "messageseven"]  # nothing missed


def test_server_refuses_what_it_should(ex_env: dict[str, str], procs: Procs) -> None:
    port = _serve(procs, ex_env)
    rebinding = http_tcp("127.0.0.1", port, "GET", "/", headers={"Host": "evil.example"})
    assert rebinding.status == 421
    write = http_tcp("127.0.0.1", port, "POST", "/v1/stream/room", body=b"[]")
    assert write.status == 501  # only reads are passed through
