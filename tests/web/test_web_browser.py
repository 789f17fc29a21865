"""The web view in a real browser (Debian's chromium, headless, driven by Playwright).

Everything goes through the page as a person uses it: the URL ``chanctl web`` prints, the
unlock step, the list, a channel, live lines, a daemon restart in the middle, 100,000
messages, 2,000 messages per second, steering. Measurements are printed (run with ``-s``).
Screenshots of the list and the channel view, light and dark, go to $CHANCTL_WEB_SCREENSHOTS
when it is set (they are for looking at, not committed).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemonkit import TestEnv, http_unix, wait_for
from webkit import WebDaemon, all_rows, dom_rows, low_contrast

import chanctl

LIST_TEXT = ["td.name a", "td.num", "th", "#list-count", ".state-open", ".state-closed", "label"]
VIEW_TEXT = [
    ".row .tx",
    ".row.stderr .tx",
    ".row.exit-fail .tx",
    ".row .ts",
    "#channel-state",
    "#channel-count",
    ".brand",
    ".crumb",
]

LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__longTasks.push(e.duration);
}).observe({ type: "longtask", buffered: true });
"""


@pytest.fixture
def client(web: WebDaemon) -> Iterator[chanctl.Client]:
    with chanctl.Client(f"unix://{web.tenv.socket}", autostart=False) as c:
        yield c


def _open(page: Any, web: WebDaemon, channel: str | None = None) -> None:
    page.goto(web.url(channel))
    page.wait_for_selector("#channel-view" if channel else "#list-view", state="visible")


def _badge(page: Any, text: str, timeout_ms: float = 15_000) -> None:
    page.wait_for_function(
        "(t) => document.getElementById('channel-state').textContent.startsWith(t)",
        arg=text,
        timeout=timeout_ms,
    )


def _count(page: Any, n: int, timeout_ms: float = 30_000) -> None:
    page.wait_for_function(
        "(n) => document.getElementById('channel-count').textContent === n",
        arg=f"{n:,} messages",
        timeout=timeout_ms,
    )


def _seed_run(c: chanctl.Client, name: str) -> None:
    start = {"argv": ["make", "-j8"], "pid": 4242, "host": "devbox", "cwd": "/src"}
    c.publish(name, json.dumps(start), type="start")
    c.publish_many(name, [f"compiling {i}.c" for i in range(30)], type="stdout")
    c.publish(
        name, '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>', type="stderr"
    )
    c.publish(name, "two\nlines", type="stdout")
    c.publish(name, "2", type="exit")
    c.close(name)


def test_list_then_channel(page: Any, web: WebDaemon, client: chanctl.Client, shots: Path) -> None:
    _seed_run(client, "build-42")
    client.publish("agent/7/tokens", "thinking")
    _open(page, web)
    assert "#token" not in page.url  # the token left the address bar at once
    row = page.locator("#channels tbody tr[data-name='build-42']")
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[0] == "build-42" and cells[1] == "34" and cells[4] == "closed"
    assert cells[3].endswith("ago") and cells[6] == "0"
    client.publish("late-arrival", "hello")  # appears without a reload
    page.locator("#channels tbody tr[data-name='late-arrival']").wait_for(timeout=6000)
    page.fill("#filter", "agent")
    assert page.locator("#channels tbody tr").all_inner_texts()[0].startswith("agent/7/tokens")
    assert page.locator("#channels tbody tr").count() == 1
    page.fill("#filter", "")
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        assert low_contrast(page, LIST_TEXT) == [], scheme
        page.screenshot(path=str(shots / f"list-{scheme}.png"))

    page.click("text=build-42")
    _badge(page, "finished: exit 2")
    rows = all_rows(page)
    texts = [text for _, _, text in rows]
    assert texts[0] == "▶ started make -j8 (pid 4242 on devbox in /src)"
    assert texts[1:31] == [f"compiling {i}.c" for i in range(30)]
    assert "stderr" in rows[31][1] and texts[31].startswith("<img src=x onerror=")
    assert texts[32:34] == ["two", "lines"] and rows[32][0] == rows[33][0] == 32
    assert texts[34] == "■ exited with code 2" and "exit-fail" in rows[34][1]
    assert page.evaluate("window.pwned") is None  # shown as text, never run
    page.check("#show-time")
    stamp = page.locator("#log .row .ts").first.inner_text()
    assert len(stamp) == 12 and stamp[2] == ":" and stamp[8] == "."
    assert page.locator("#stop").is_hidden() and page.locator("#steer").is_hidden()
    for scheme in ("dark", "light"):
        page.emulate_media(color_scheme=scheme)
        assert low_contrast(page, VIEW_TEXT) == [], scheme
        page.screenshot(path=str(shots / f"channel-{scheme}.png"))
    page.go_back()
    page.locator("#channels tbody tr[data-name='build-42']").wait_for()


def test_partial_and_huge_lines(page: Any, web: WebDaemon, client: chanctl.Client) -> None:
    partial = {"partial": "1"}  # `chanctl run` sends a line it has not finished like this
    client.publish("parts", "progress: 50%", type="stdout", headers=partial)
    client.publish("parts", " 100%", type="stdout")  # continues the line above
    client.publish("parts", "half", type="stdout", headers=partial)
    client.publish("parts", "oops", type="stderr")  # in between: the halves stay apart
    client.publish("parts", " rest", type="stdout")
    client.publish("parts", "x" * 20_000, type="stdout")
    client.close("parts")
    _open(page, web, "parts")
    _badge(page, "closed")
    rows = [(seq, text) for seq, _, text in all_rows(page)]
    assert rows == [
        (0, "progress: 50% 100%"),
        (2, "half"),
        (3, "oops"),
        (4, " rest"),
        (5, "x" * 4000 + " … [16,000 more characters]"),
    ]


def test_a_channel_that_does_not_exist_yet(
    page: Any, web: WebDaemon, client: chanctl.Client
) -> None:
    _open(page, web, "later")
    _badge(page, "waiting for the channel")
    assert page.locator("#steer").is_hidden()  # nothing to steer yet
    client.publish("later", "here now", type="stdout")
    _badge(page, "live")
    page.locator("#log .row[data-seq='0']", has_text="here now").wait_for()


def _producer(web: WebDaemon, name: str, count: int) -> threading.Thread:
    """Publishes `line 0` .. `line N-1`, one message every ~10 ms, riding out daemon restarts
    (the client retries, and its idempotent producer keeps every line exactly once)."""

    def produce() -> None:
        with chanctl.Client(f"unix://{web.tenv.socket}", autostart=False) as c:
            for i in range(count):
                c.publish(name, f"line {i}", type="stdout")
                time.sleep(0.01)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    return thread


def test_live_lines_survive_a_daemon_restart(
    page: Any, web: WebDaemon, client: chanctl.Client
) -> None:
    client.publish_many("live", [f"line {i}" for i in range(20)], type="stdout")  # history
    _open(page, web, "live")
    _badge(page, "live")
    producer = _producer(web, "live", 180)  # appends line 0.. again, after the history
    page.locator("#log .row[data-seq='60']").wait_for()  # live, following the bottom
    web.stop()
    _badge(page, "reconnecting")
    time.sleep(0.3)  # the producer is blocked retrying meanwhile
    web.start()
    producer.join(30)
    assert not producer.is_alive()
    client.close("live")
    _badge(page, "closed")
    _count(page, 200)
    rows = all_rows(page)
    lines = [(seq, text) for seq, _, text in rows if seq is not None]
    expected = [f"line {i}" for i in range(20)] + [f"line {i}" for i in range(180)]
    assert lines == list(enumerate(expected))  # none lost, none doubled, in order
    assert [text for seq, _, text in rows if seq is None] == ["── live ──"]
    assert [m.text for m in client.replay("live")] == expected


def test_100k_messages_without_freezing(page: Any, web: WebDaemon, client: chanctl.Client) -> None:
    n = 100_000
    client.publish_many("big", (f"message {i}" for i in range(n)), type="stdout")
    page.add_init_script(LONG_TASKS)
    started = time.monotonic()
    _open(page, web, "big")
    _count(page, n)
    loaded = time.monotonic() - started
    page.locator(f"#log .row[data-seq='{n - 1}']").wait_for()
    longest = max(page.evaluate("window.__longTasks"), default=0.0)
    in_dom = page.locator("#log .row").count()
    print(
        f"\n100k: shown in {loaded:.2f} s, longest main-thread task {longest:.0f} ms, "
        f"{in_dom} rows in the DOM"
    )
    assert in_dom < 200
    assert loaded < 20 and longest < 1000
    page.focus("#log")
    page.keyboard.press("Home")
    page.locator("#log .row[data-seq='0']").wait_for()
    assert dom_rows(page)[0][2] == "message 0"
    jump = page.locator("#jump")
    jump.wait_for()
    assert low_contrast(page, ["#jump"]) == []
    client.publish("big", "after the jump", type="stdout")
    page.wait_for_function("() => document.getElementById('jump').textContent.includes('1 new')")
    jump.click()
    page.locator(f"#log .row[data-seq='{n}']").wait_for()
    assert jump.is_hidden()


def test_2000_messages_per_second_stay_live(
    page: Any, web: WebDaemon, client: chanctl.Client
) -> None:
    client.create("fast")
    page.add_init_script(LONG_TASKS)
    _open(page, web, "fast")
    _badge(page, "live")
    seconds, rate, batch = 3, 2000, 20
    with chanctl.Client(f"unix://{web.tenv.socket}", autostart=False) as writer:
        begin = time.monotonic()
        for k in range(seconds * rate // batch):
            writer.publish_many("fast", [f"tick {k}.{j}" for j in range(batch)], type="stdout")
            time.sleep(max(0.0, begin + (k + 1) * batch / rate - time.monotonic()))
    _count(page, seconds * rate)
    lat = sorted(page.evaluate("globalThis.chanctlStats.latencies"))
    p95 = lat[int(len(lat) * 0.95)]
    longest = max(page.evaluate("window.__longTasks"), default=0.0)
    print(
        f"\n2000 msg/s: render latency p50 {lat[len(lat) // 2]} ms, p95 {p95} ms, "
        f"max {lat[-1]} ms over {len(lat)} frames; longest task {longest:.0f} ms"
    )
    # Issue 5: p95 within 250 ms. On an idle machine no main-thread task even reaches 50 ms;
    # the bound on the longest task leaves room for a shared CI machine stealing the CPU.
    assert p95 < 250 and longest < 500


def _attach_producer(web: WebDaemon, name: str) -> bool:
    claim = {"run_id": "web-test", "pid": 1, "host": socket.gethostname(), "ttl": 120}
    reply = http_unix(
        web.tenv.socket,
        "PUT",
        f"/v1/producer/{name}",
        json.dumps(claim).encode(),
        {"Content-Type": "application/json"},
    )
    return reply.status == 200


def _control_lane(web: WebDaemon, name: str) -> list[dict[str, Any]]:
    reply = http_unix(web.tenv.socket, "GET", f"/v1/control/{name}?offset=-1")
    return list(reply.json()) if reply.status == 200 else []


def test_steering_box_and_stop_button(
    page: Any, web: WebDaemon, client: chanctl.Client, shots: Path
) -> None:
    client.publish("job", json.dumps({"argv": ["sleep", "1000"], "pid": 1}), type="start")
    assert _attach_producer(web, "job"), "the daemon must accept a producer registration"
    _open(page, web, "job")
    _badge(page, "live")
    stop = page.locator("#stop")
    stop.wait_for()
    stop.click()
    dialog = page.locator("#confirm")
    dialog.wait_for()
    assert page.locator("#confirm-title").inner_text() == "Stop the job?"
    page.keyboard.press("Escape")  # cancelled: nothing is sent
    dialog.wait_for(state="hidden")
    stop.click()
    page.click("#confirm-ok")
    wait_for(lambda: len(_control_lane(web, "job")) == 1, 5, "the stop message")
    page.fill("#steer-text", "pause")
    page.keyboard.press("Enter")
    wait_for(lambda: len(_control_lane(web, "job")) == 2, 5, "the typed message")
    sent = _control_lane(web, "job")
    assert [(m["type"], m["data"]) for m in sent] == [("steer", "stop"), ("steer", "pause")]
    # The box is cleared once the page has the daemon's answer, a moment after the append.
    wait_for(lambda: page.input_value("#steer-text") == "", 5, "the steering box to clear")
    history = page.locator("#steer-history li")
    page.wait_for_function("() => document.querySelectorAll('#steer-history li').length === 2")
    assert history.all_inner_texts() == [
        "#1 pause — waiting for the job",
        "#0 stop — waiting for the job",
    ]
    ack = {
        "steer": "0000000000000000_0000000000000000",
        "cmd": "stop",
        "ok": True,
        "detail": "SIGTERM sent",
    }
    client.publish("job", json.dumps(ack), type="ack")
    page.locator("#log .row.mark").wait_for()
    assert page.locator("#log .row.mark").inner_text() == (
        "⇄ done stop: SIGTERM sent (steering message #0)"
    )
    assert history.last.inner_text() == "#0 stop — done: SIGTERM sent"
    steer_text = [
        "#stop",
        "#kill",
        ".row.mark .tx",
        "#steer-history li.done",
        "#steer-history li.pending",
        "#steer-status",
        ".row.banner .tx",
    ]
    for scheme in ("dark", "light"):
        page.emulate_media(color_scheme=scheme)
        assert low_contrast(page, steer_text) == [], scheme
    page.screenshot(path=str(shots / "steering-light.png"))
    client.publish("job", "143", type="exit")
    client.close("job")
    _badge(page, "finished: exit 143")
    assert stop.is_hidden() and page.locator("#steer").is_hidden()


def test_run_stopped_from_the_page(page: Any, web: WebDaemon, tenv: TestEnv, shots: Path) -> None:
    """The product scenario: `chanctl run` a job, watch it, press Stop, see it end."""
    env = {**tenv.env, "CHANCTL_NO_AUTOSTART": "1"}
    probe = subprocess.run(
        [sys.executable, "-m", "chanctl.cli", "run", "--help"],
        env=env,
        capture_output=True,
        timeout=30,
    )
    assert probe.returncode == 0, probe.stderr
    script = "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.05; done"
    run = subprocess.Popen(
        [sys.executable, "-m", "chanctl.cli", "run", "wf-42", "--quiet", "--", "sh", "-c", script],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _open(page, web, "wf-42")
        page.locator("#log .row", has_text="tick").first.wait_for(timeout=15_000)
        page.locator("#stop").wait_for(timeout=10_000)
        page.click("#stop")
        page.click("#confirm-ok")
        _badge(page, "finished: exit", timeout_ms=20_000)
        code = run.wait(20)
    finally:
        run.kill()
    badge = page.inner_text("#channel-state")
    assert badge == f"finished: exit {code}" and code == 128 + 15, badge
    banner = page.locator("#log .row.exit-fail").inner_text()
    assert banner.startswith("■ exited with code 143 (killed by SIGTERM) after "), banner
    page.locator("#log .row.mark", has_text="⇄ done stop").wait_for()
    assert page.locator("#stop").is_hidden()
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=str(shots / "run-stopped-dark.png"))
