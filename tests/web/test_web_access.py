"""Who gets the web view (issue 5; reliability.md S4), over real sockets and without a browser.

Nothing of the page without the token (401: the unlock page only, no application, no data); a
session cookie opens the page's files but never the API; foreign Host headers (DNS rebinding)
and cross-origin writes are refused; the unix socket serves no page; ``chanctl web`` opens a
loopback listener on demand and prints a URL that works.
"""

from __future__ import annotations

import http.client
import json
import re

import pytest
from daemonkit import StartDaemon, TestEnv, cli, free_port, http_tcp, http_unix, wait_for
from webkit import WebDaemon

APP_MARKERS = (b"app.js", b"channel-view", b"<table")


def _session_cookie(web: WebDaemon) -> str:
    reply = http_tcp("127.0.0.1", web.port, "POST", "/ui/session", headers=web.auth())
    assert reply.status == 204, reply.body
    return reply.headers["set-cookie"]


def test_no_token_no_page(web: WebDaemon) -> None:
    reply = web.get("/ui/")
    assert reply.status == 401
    assert reply.headers["content-type"].startswith("text/html")
    assert not any(marker in reply.body for marker in APP_MARKERS)
    assert "script-src 'sha256-" in reply.headers["content-security-policy"]
    for path in ("/ui/app.js", "/ui/style.css", "/v1/channels", "/v1/stream/x?offset=-1"):
        assert web.get(path).status == 401, path
    wrong = {"Authorization": "Bearer " + "x" * 43}
    assert web.get("/ui/", wrong).status == 401
    forged = {"Cookie": f"chanctl_ui_{web.port}=99999999999.deadbeef"}
    assert web.get("/ui/app.js", forged).status == 401


def test_token_opens_the_page_with_strict_headers(web: WebDaemon) -> None:
    reply = web.get("/ui/", web.auth())
    assert reply.status == 200 and b'src="app.js"' in reply.body
    headers = reply.headers
    assert headers["content-security-policy"].startswith("default-src 'none'; script-src 'self'")
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    assert headers["referrer-policy"] == "no-referrer"
    assert "access-control-allow-origin" not in headers
    js = web.get("/ui/app.js", web.auth())
    assert js.status == 200 and js.headers["content-type"].startswith("text/javascript")
    assert web.get("/ui/unlock.js", web.auth()).status == 404  # inlined, never a file
    assert web.get("/ui/../security.py", web.auth()).status == 404


def test_session_cookie_opens_files_not_the_api(web: WebDaemon) -> None:
    set_cookie = _session_cookie(web)
    attrs = {a.strip().lower() for a in set_cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/ui"} <= attrs
    cookie = set_cookie.split(";", 1)[0]
    assert web.get("/ui/", {"Cookie": cookie}).status == 200
    assert web.get("/ui/view.js", {"Cookie": cookie}).status == 200
    assert web.get("/v1/channels", {"Cookie": cookie}).status == 401
    name, value = cookie.split("=", 1)
    tampered = f"{name}={int(value.split('.')[0]) + 1}.{value.split('.')[1]}"
    assert web.get("/ui/", {"Cookie": tampered}).status == 401
    expired = http_tcp("127.0.0.1", web.port, "POST", "/ui/session")
    assert expired.status == 401  # no bearer: no cookie either


def test_foreign_host_and_origin_are_refused(web: WebDaemon) -> None:
    """S4: DNS rebinding (a foreign Host) and a cross-origin form post without a token."""
    evil_host = {"Host": f"evil.example:{web.port}", **web.auth()}
    assert web.get("/ui/", evil_host).status == 421
    assert web.get("/v1/channels", evil_host).status == 421
    post = http_tcp(
        "127.0.0.1",
        web.port,
        "POST",
        "/v1/control/victim",
        body=b'[{"type":"steer","data":"kill"}]',
        headers={"Origin": "http://evil.example", "Content-Type": "text/plain"},
    )
    assert post.status == 403
    assert "access-control-allow-origin" not in post.headers
    assert http_unix(web.tenv.socket, "HEAD", "/v1/control/victim").status == 404


def test_unix_socket_serves_no_page(web: WebDaemon) -> None:
    reply = http_unix(web.tenv.socket, "GET", "/ui/")
    assert reply.status == 404
    tcp = http_tcp("127.0.0.1", web.port, "POST", "/v1/web", headers=web.auth())
    assert tcp.status == 403  # the token cannot be asked for over TCP


def test_listing_counts_live_readers(web: WebDaemon) -> None:
    json_type = {"Content-Type": "application/json"}
    http_unix(web.tenv.socket, "PUT", "/v1/stream/watched", headers=json_type)
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=5)
    conn.request("GET", "/v1/stream/watched?offset=-1&live=sse", headers=web.auth())
    assert conn.getresponse().status == 200

    def readers() -> int:
        listing = http_unix(web.tenv.socket, "GET", "/v1/channels").json()
        return int(next(e for e in listing if e["name"] == "watched")["readers"])

    wait_for(lambda: readers() == 1, 5, "the SSE reader to be counted")
    conn.close()

    def gone() -> bool:  # an idle reader notices the hang-up when it next writes
        http_unix(web.tenv.socket, "POST", "/v1/stream/watched", b'"ping"', json_type)
        return readers() == 0

    wait_for(gone, 5, "the reader to be gone")


def test_chanctl_web_opens_tcp_on_demand(tenv: TestEnv, start_daemon: StartDaemon) -> None:
    daemon = start_daemon(store="memory")
    assert "listen" not in daemon.holder() or daemon.holder()["listen"] is None
    result = cli(tenv, "web", "--no-open", "build/42")
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/ui/\?channel=build%2F42#token=(\S+)", url)
    assert match, url
    port, token = int(match.group(1)), match.group(2)
    assert token == tenv.token_file.read_text().strip()
    assert "does not exist yet" in result.stderr
    assert daemon.tcp_address() == ("127.0.0.1", port)
    auth = {"Authorization": f"Bearer {token}"}
    assert http_tcp("127.0.0.1", port, "GET", "/ui/", headers=auth).status == 200
    assert http_tcp("127.0.0.1", port, "GET", "/ui/").status == 401
    again = cli(tenv, "web", "--no-open")  # the same listener, not a second one
    assert again.returncode == 0 and again.stdout.startswith(f"http://127.0.0.1:{port}/ui/#")
    status = json.loads(cli(tenv, "daemon", "status", "--json").stdout)
    assert status["listen"] == f"127.0.0.1:{port}" and status["auth"] == "token"
    assert token not in daemon.stderr  # never logged


def test_no_auth_daemon_has_no_web_view(tenv: TestEnv, start_daemon: StartDaemon) -> None:
    port = free_port()
    start_daemon("--listen", f"127.0.0.1:{port}", "--no-auth")
    reply = http_tcp("127.0.0.1", port, "GET", "/ui/")
    assert reply.status == 403 and b"--no-auth" in reply.body
    result = cli(tenv, "web", "--no-open")
    assert result.returncode == 1
    assert "--no-auth" in result.stderr


@pytest.mark.parametrize("given", ["", "Bearer", "Basic abc"])
def test_session_needs_the_bearer_token(web: WebDaemon, given: str) -> None:
    headers = {"Authorization": given} if given else {}
    reply = http_tcp("127.0.0.1", web.port, "POST", "/ui/session", headers=headers)
    assert reply.status == 401 and "set-cookie" not in reply.headers


def test_chanctl_web_opens_a_browser_without_the_token_on_argv(
    tenv: TestEnv, start_daemon: StartDaemon
) -> None:
    """The browser gets a 0600 redirect file's path; the token is only inside that file."""
    start_daemon(store="memory")
    seen = tenv.root / "browser-argv"
    fake = tenv.root / "fake-browser"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {seen}.tmp && mv {seen}.tmp {seen}\n')
    fake.chmod(0o700)
    result = cli(tenv, "web", env={"DISPLAY": ":0", "BROWSER": str(fake)})
    assert result.returncode == 0, result.stderr
    token = tenv.token_file.read_text().strip()
    wait_for(seen.exists, 10, "the fake browser to run")
    argv = seen.read_text()
    assert token not in argv and argv.startswith("file://"), argv
    redirect = tenv.runtime_dir / "web-open.html"
    assert argv.strip() == redirect.as_uri()
    assert redirect.stat().st_mode & 0o777 == 0o600
    assert f"#token={token}" in redirect.read_text()
    assert "opened it in your browser" in result.stderr
