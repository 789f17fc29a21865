"""Summaries of py-spy's collapsed stacks, so ``--profile`` says where the daemon's time goes.

py-spy (``record --format raw``) writes one line per distinct stack: frames joined by ``;``,
root first, then a sample count; with ``--threads`` the root frame names the thread. This module
answers, per thread group (the event loop's MainThread, the store's executor threads...): which
functions hold the samples themselves (self time), which call trees hold them (inclusive), and
which part of the code base they live in (HTTP layer, storage engine, aiohttp, asyncio...).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<path>[^()]*?)(?::\d+)?\)$")
_OWN = ("daemon/", "chanctl/")  # the project's own code: what inclusive time is shown for
_THREAD = re.compile(r"^thread \(\d+\)(?::\s*(.*))?$")


@dataclass
class Profile:
    """Sample counts of one group of threads, aggregated three ways; inclusive time is kept
    for the project's own functions only (runpy and the event loop are on every stack)."""

    total: int = 0
    self_time: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    areas: Counter[str] = field(default_factory=Counter)

    def add(self, frames: list[tuple[str, str]], count: int) -> None:
        self.total += count
        self.self_time[frames[-1][0]] += count
        self.areas[frames[-1][1]] += count
        for name in {name for name, owner in frames if owner.startswith(_OWN)}:
            self.inclusive[name] += count


def area(path: str) -> str:
    """A coarse owner of a source file: a project folder (``daemon/http``), else the top-level
    package or module (``aiohttp``, ``asyncio``, ``selectors``). py-spy shortens paths to be
    relative to sys.path, but full paths are handled too."""
    path = path.split("site-packages/", 1)[-1]
    stdlib = re.search(r"/lib/python3\.\d+/(.+)$", path)
    parts = Path(stdlib.group(1) if stdlib else path).parts
    for anchor in ("daemon", "chanctl"):
        if anchor in parts[:-1]:
            i = parts.index(anchor)
            return "/".join(parts[i : i + 2]).removesuffix(".py")
    return parts[0].removesuffix(".py") if parts else "?"


def _name(frame: str) -> tuple[str, str]:
    """(``func (file)``, area) for one frame of a collapsed stack."""
    m = _FRAME.match(frame)
    if m is None:
        return frame, "?"
    path = m.group("path")
    return f"{m.group('func')} ({Path(path).name})", area(path)


def _thread_group(frame: str) -> str | None:
    """``thread (123): ThreadPoolExecutor-0_1`` -> ``ThreadPoolExecutor``; None if no thread."""
    m = _THREAD.match(frame)
    if m is None:
        return None
    return re.sub(r"[-_\d]+$", "", m.group(1) or "").strip() or "unnamed"


def load(path: Path) -> dict[str, Profile]:
    """Aggregate a py-spy raw file (recorded with --threads) per thread group."""
    groups: dict[str, Profile] = {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        raw = [f for f in stack.split(";") if f]
        group = _thread_group(raw[0]) if raw else None
        frames = [_name(f) for f in (raw[1:] if group else raw)]
        if frames:
            groups.setdefault(group or "all", Profile()).add(frames, int(count_text))
    return groups


def summary(label: str, groups: dict[str, Profile], top: int = 12) -> str:
    """Where the samples are: per thread group, then the event loop (MainThread) in detail.

    py-spy samples threads that are on CPU or blocked in a system call such as fdatasync;
    idle waits (sleep, epoll with nothing ready) are mostly left out. The event loop thread is
    the one that bounds a single-process asyncio server, so it gets the detailed breakdown.
    """
    total = sum(p.total for p in groups.values())
    if total == 0:
        return f"{label}: no samples"
    lines = [f"== daemon profile: {label} ({total:,} samples at 250 Hz) =="]
    for name, prof in sorted(groups.items(), key=lambda kv: -kv[1].total):
        lines.append(f"  {100 * prof.total / total:5.1f}%  thread {name}")
    for name, prof in sorted(groups.items(), key=lambda kv: -kv[1].total):
        depth = top if name in ("MainThread", "all") else 5
        lines += _detail(name, prof, depth)
    return "\n".join(lines)


def _detail(name: str, prof: Profile, top: int) -> list[str]:
    lines = []
    for title, counter in (
        ("self time by area", prof.areas),
        ("self time by function", prof.self_time),
        ("inclusive time by chanctl function", prof.inclusive),
    ):
        if title.startswith("inclusive") and name not in ("MainThread", "all"):
            continue
        lines.append(f"-- {name}: {title} (% of this thread's samples)")
        for func, count in counter.most_common(top):
            lines.append(f"  {100 * count / prof.total:5.1f}%  {func}")
    return lines
