"""Fixtures for the web view tests: a token-protected TCP daemon and a real headless Chromium.

Chromium is Debian's package (``apt-get install chromium``), driven by Playwright for Python
without ``playwright install``: no browser is downloaded. Browser tests skip when either is
missing; ``.ci/run`` installs both, so CI always runs them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemonkit import CHROMIUM, LAUNCH_ARGS, StartDaemon, TestEnv, free_port
from webkit import WebDaemon


@pytest.fixture
def web(tenv: TestEnv, start_daemon: StartDaemon) -> WebDaemon:
    """A daemon (durable local store) on 127.0.0.1:PORT with a bearer token."""
    return WebDaemon(tenv, start_daemon, free_port()).start()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per test module (Playwright's sync API must not outlive into async tests)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies, no storage); fails the test on a script error."""
    context = browser.new_context(viewport={"width": 1100, "height": 650})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"script errors in the page: {errors}"


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: $CHANCTL_WEB_SCREENSHOTS if set (to look at them), else tmp."""
    target = Path(os.environ.get("CHANCTL_WEB_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target
