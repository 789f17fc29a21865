"""Helpers for the web view tests: a TCP daemon on a fixed port, and reading the page's log.

The log is virtualized (only visible rows are in the DOM), so "what the page shows" is read by
scrolling it from top to bottom and collecting the rows each position puts in the DOM, keyed
by the message seq each row carries. That is the DOM a person would see, row by row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemonkit import (
    DaemonProcess,
    StartDaemon,
    TestEnv,
    http_tcp,
)


@dataclass
class WebDaemon:
    """A daemon listening on loopback TCP with a token; restartable on the same port."""

    tenv: TestEnv
    start_daemon: StartDaemon
    port: int
    proc: DaemonProcess | None = None

    def start(self) -> WebDaemon:
        listen = f"127.0.0.1:{self.port}"
        self.proc = self.start_daemon("--listen", listen, store="local")
        return self

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.stop()

    @property
    def token(self) -> str:
        return str(self.tenv.token_file.read_text().strip())

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, channel: str | None = None) -> str:
        from urllib.parse import quote

        query = f"?channel={quote(channel, safe='')}" if channel else ""
        return f"{self.base}/ui/{query}#token={self.token}"

    def get(self, path: str, headers: dict[str, str] | None = None) -> Any:
        return http_tcp("127.0.0.1", self.port, "GET", path, headers=headers)

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


# Runs in the page: every row currently in the DOM as [seq, class, text].
_DOM_ROWS = """() => [...document.querySelectorAll('#log .rows .row')].map(
    (r) => [r.dataset.seq === undefined ? null : Number(r.dataset.seq), r.className,
            r.querySelector('.tx').textContent])"""

# Runs in the page: scroll the log to `top` and resolve after the next two frames.
_SCROLL = """(top) => new Promise((resolve) => {
    const log = document.getElementById('log');
    log.scrollTop = top;
    requestAnimationFrame(() => requestAnimationFrame(() => resolve(
        [log.scrollTop, log.scrollHeight, log.clientHeight])));
})"""


def dom_rows(page: Any) -> list[list[Any]]:
    return list(page.evaluate(_DOM_ROWS))


def all_rows(page: Any) -> list[list[Any]]:
    """Every row of the log, top to bottom, as the DOM shows it while scrolling through."""
    seen: dict[int, list[Any]] = {}
    top = 0
    while True:
        pos, height, view = page.evaluate(_SCROLL, top)
        for index, row in _indexed(page):
            seen[index] = row
        if pos + view >= height - 1:
            break
        top = pos + max(1, view - 40)
    return [seen[i] for i in sorted(seen)]


def _indexed(page: Any) -> list[tuple[int, list[Any]]]:
    """DOM rows with their index in the log (from the rows box offset and the row height)."""
    first = page.evaluate(
        """() => {
        const box = document.querySelector('#log .rows');
        const m = /translateY\\(([0-9.]+)px\\)/.exec(box.style.transform);
        const row = box.firstElementChild;
        const h = row ? row.getBoundingClientRect().height : 1;
        return Math.round((m ? Number(m[1]) : 0) / h);
    }"""
    )
    return [(first + i, row) for i, row in enumerate(dom_rows(page))]


# Runs in the page: WCAG contrast ratio of each selector's first match against the first
# opaque background behind it; returns [selector, ratio] for those below `minimum`.
_CONTRAST = """([selectors, minimum]) => {
    const rgb = (c) => (c.match(/[0-9.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => {
        const f = (v) => {
            v /= 255;
            return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
        };
        return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (el) => {
        for (; el; el = el.parentElement) {
            const c = rgb(getComputedStyle(el).backgroundColor);
            if (c.length === 3 || c[3] > 0) return c;
        }
        return rgb(getComputedStyle(document.documentElement).backgroundColor);
    };
    const bad = [];
    for (const sel of selectors) {
        const el = document.querySelector(sel);
        if (!el) { bad.push([sel, 0]); continue; }
        const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(background(el))];
        const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
        if (ratio < minimum) bad.push([sel, Math.round(ratio * 100) / 100]);
    }
    return bad;
}"""


def low_contrast(page: Any, selectors: list[str], minimum: float = 4.5) -> list[list[Any]]:
    """Selectors whose text fails WCAG AA contrast (or that match nothing)."""
    return list(page.evaluate(_CONTRAST, [selectors, minimum]))
