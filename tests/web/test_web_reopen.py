"""The web view's listener outlives the daemon that opened it (README "Web view").

``chanctl web`` opens loopback TCP on demand; the daemon remembers that request beside its socket
and opens the same port again at its next start, after ``daemon stop``/``start`` and after a
``kill -9`` followed by an autostart, without anyone running ``chanctl web`` again. An open
page in a real headless Chromium goes on showing new messages across such a restart.
``chanctl web --stop`` closes the listener and forgets the request; a port taken meanwhile
gives a warning and the next ``chanctl web`` a free port.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import signal
import socket
import time
from typing import Any

from daemonkit import DaemonProcess, StartDaemon, TestEnv, cli, http_tcp, wait_for

import chanctl


def _web(tenv: TestEnv, *args: str) -> tuple[str, int, str]:
    """Run ``chanctl web --no-open``; (url, port, token)."""
    result = cli(tenv, "web", "--no-open", *args)
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/ui/\S*#token=(\S+)", url)
    assert match, url
    return url, int(match.group(1)), match.group(2)


def _page_status(port: int, token: str) -> int:
    try:
        auth = {"Authorization": f"Bearer {token}"}
        return http_tcp("127.0.0.1", port, "GET", "/ui/", headers=auth, timeout=2).status
    except OSError:
        return 0  # nothing listens


def _answers(port: int, token: str, timeout: float = 15.0) -> None:
    wait_for(lambda: _page_status(port, token) == 200, timeout, f"the web view on port {port}")


def _holder_pid(tenv: TestEnv) -> int:
    return int(json.loads((tenv.runtime_dir / "chanctl.lock").read_text())["pid"])


def test_the_listener_comes_back_after_stop_start_and_kill9(
    tenv: TestEnv, start_daemon: StartDaemon
) -> None:
    daemon = start_daemon(store="local")
    _, port, token = _web(tenv)
    request = tenv.runtime_dir / "chanctl.web.json"
    assert json.loads(request.read_text()) == {"port": port}
    assert request.stat().st_mode & 0o777 == 0o600

    daemon.stop()  # SIGTERM: a clean stop keeps the request
    assert _page_status(port, token) == 0
    again = start_daemon(store="local")
    assert _page_status(port, token) == 200  # open before it answered; no `chanctl web` run
    assert again.tcp_address() == ("127.0.0.1", port)
    assert f"opened TCP 127.0.0.1:{port}" in again.stderr

    again.signal(signal.SIGKILL)  # a crash; the next command autostarts a daemon
    again.wait_exit()
    assert _page_status(port, token) == 0
    listing = cli(tenv, "ls")
    assert listing.returncode == 0 and "started daemon" in listing.stderr, listing.stderr
    assert _page_status(port, token) == 200
    assert _holder_pid(tenv) != again.pid

    with chanctl.Client(f"unix://{tenv.socket}", autostart=False) as c:
        c.publish("watched", "x")
    reader = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    auth = {"Authorization": f"Bearer {token}"}
    reader.request("GET", "/v1/stream/watched?offset=-1&live=sse", headers=auth)
    live = reader.getresponse()
    assert live.status == 200
    stopped = cli(tenv, "web", "--stop")  # opt out: closed now and at the next start
    assert stopped.returncode == 0 and "closed" in stopped.stderr, stopped.stderr
    began = time.monotonic()
    with contextlib.suppress(http.client.IncompleteRead, ConnectionError):
        live.read()  # the page's live read is cut, not left to run on
    assert time.monotonic() - began < 5
    reader.close()
    assert _page_status(port, token) == 0 and not request.exists()
    status = json.loads(cli(tenv, "daemon", "status", "--json").stdout)
    assert status["listen"] is None
    assert cli(tenv, "daemon", "stop").returncode == 0
    last = start_daemon(store="local")
    assert _page_status(port, token) == 0 and last.holder()["listen"] is None


def test_a_taken_port_warns_and_the_next_web_picks_another(
    tenv: TestEnv, start_daemon: StartDaemon
) -> None:
    first = start_daemon(store="memory")
    _, port, _ = _web(tenv)
    first.stop()
    with socket.create_server(("127.0.0.1", port)):  # someone else took the port meanwhile
        daemon = start_daemon(store="memory")
        assert daemon.holder()["listen"] is None
        assert f"could not reopen the web view's TCP listener on 127.0.0.1:{port}" in (
            daemon.stderr
        )
        _, other, token = _web(tenv)
    assert other != port
    _answers(other, token)
    request = tenv.runtime_dir / "chanctl.web.json"
    assert json.loads(request.read_text()) == {"port": other}


def test_web_stop_without_a_daemon_starts_none(tenv: TestEnv, start_daemon: StartDaemon) -> None:
    daemon = start_daemon(store="memory")
    _web(tenv)
    daemon.stop()
    request = tenv.runtime_dir / "chanctl.web.json"
    assert request.exists()
    result = cli(tenv, "web", "--stop")
    assert result.returncode == 0, result.stderr
    assert not request.exists()
    assert not (tenv.runtime_dir / "chanctl.sock").exists()  # nothing was started


def test_web_stop_refuses_a_listen_daemon(tenv: TestEnv, start_daemon: StartDaemon) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start_daemon("--listen", f"127.0.0.1:{port}", store="memory")
    result = cli(tenv, "web", "--stop")
    assert result.returncode == 1 and "--listen" in result.stderr


def test_an_open_page_keeps_following_across_a_restart(
    tenv: TestEnv, start_daemon: StartDaemon, page: Any
) -> None:
    daemon: DaemonProcess = start_daemon(store="local")
    url, port, _ = _web(tenv, "follow")
    with chanctl.Client(f"unix://{tenv.socket}", autostart=False) as c:
        c.publish("follow", "before the restart", type="stdout")
    page.goto(url)
    row = "#log .row[data-seq='{}']"
    page.locator(row.format(0), has_text="before the restart").wait_for()
    daemon.stop()
    start_daemon(store="local")  # its own start reopens the listener: no `chanctl web`
    with chanctl.Client(f"unix://{tenv.socket}", autostart=False) as c:
        c.publish("follow", "after the restart", type="stdout")
        page.locator(row.format(1), has_text="after the restart").wait_for(timeout=20_000)
        c.publish("follow", "and live again", type="stdout")
        page.locator(row.format(2), has_text="and live again").wait_for(timeout=10_000)
    assert page.locator("#log .row[data-seq='1']").count() == 1  # shown once
    assert _page_status(port, "x") == 401  # the same port, still guarded
