"""How ``chanctl run`` shows its job in a CI log (README "Use cases", examples/ci/).

CI logs are files, not terminals: nothing may move the cursor or redraw a line, and a long
build is only readable when its output folds away. ``chanctl run`` draws nothing of its own (no
spinner, no colour: the job's bytes are echoed as they are), so CI mode only adds the CI's own
fold markers around the echoed output: with ``CI=true`` (set by GitHub Actions and GitLab CI),
``::group::`` / ``::endgroup::`` when ``GITHUB_ACTIONS=true`` and GitLab's
``section_start`` / ``section_end`` lines when ``GITLAB_CI=true``. A CI this module does not
know gets plain output, which is always correct.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass

# GitLab section names may hold only letters, digits, "_", "." and "-".
_GITLAB_ID = re.compile(r"[^A-Za-z0-9_.-]")
# Whatever of the title would end the marker line or drive the terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


def in_ci(env: Mapping[str, str]) -> bool:
    return _true(env.get("CI"))


@dataclass(frozen=True)
class LogGroup:
    """The fold markers of one CI, for one run; ``begin``/``end`` are whole lines."""

    kind: str  # "github" or "gitlab"
    section: str
    title: str

    def begin(self) -> bytes:
        if self.kind == "github":
            return f"::group::{self.title}\n".encode()
        head = f"section_start:{int(time.time())}:{self.section}[collapsed=true]"
        return f"{head}\r\x1b[0K{self.title}\n".encode()

    def end(self) -> bytes:
        if self.kind == "github":
            return b"::endgroup::\n"
        return f"section_end:{int(time.time())}:{self.section}\r\x1b[0K\n".encode()


def log_group(env: Mapping[str, str], channel: str, argv: list[str]) -> LogGroup | None:
    """The markers to put around a run's echoed output, or None outside a known CI."""
    if not in_ci(env):
        return None
    title = _CONTROL.sub(" ", f"chanctl run {channel} -- {shlex.join(argv)}")[:200]
    section = "chanctl_" + _GITLAB_ID.sub("_", channel)
    if _true(env.get("GITHUB_ACTIONS")):
        return LogGroup("github", section, title)
    if _true(env.get("GITLAB_CI")):
        return LogGroup("gitlab", section, title)
    return None
