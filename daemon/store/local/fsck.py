"""Offline check of a stopped daemon's channel files (``chanctl fsck``). Read-only.

Every segment of a channel is walked record by record with recovery's own replay
(``recovery.check_segment_blocking``), so fsck and start-up agree on what a valid record is. A
problem in a sealed segment is corruption: the daemon quarantines the channel from that message
on. A problem in the last segment is a torn tail: start-up truncates it (or removes a segment
without a complete STATE prefix), so it is reported but is not an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .disk import Disk
from .layout import read_meta_blocking
from .meta import META_FILE, decode_dir_name, is_channel_dir_name
from .producers import DEFAULT_PRODUCER_CAP
from .recovery import check_segment_blocking
from .segment import list_segments_blocking


@dataclass(frozen=True, slots=True)
class Problem:
    """Where a channel's files go wrong: the first bad message, file and byte, and why."""

    seq: int | None  # the first message that cannot be read (None: not about messages)
    file: str
    pos: int | None
    reason: str


@dataclass(slots=True)
class ChannelCheck:
    name: str
    path: str
    segments: int = 0
    messages: int = 0
    corrupt: Problem | None = None
    torn_tail: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.corrupt is None


def channel_dirs_blocking(disk: Disk, root: str) -> list[tuple[str, str]]:
    """(name, directory) of every channel under ``root`` (``<data>/channels``), by name.
    Unlike start-up, leftovers of interrupted creates and deletes are left alone; a hashed
    directory whose ``meta.json`` cannot be read is listed under its directory name."""
    if not disk.is_dir(root):
        return []
    out = []
    for entry in disk.listdir(root):
        path = os.path.join(root, entry)
        if not is_channel_dir_name(entry) or not disk.is_dir(path):
            continue
        name = decode_dir_name(entry)
        if name is None:
            try:
                name = read_meta_blocking(disk, path).name
            except (OSError, ValueError):
                name = entry
        out.append((name, path))
    out.sort()
    return out


def check_channel_blocking(disk: Disk, name: str, chan_dir: str, max_record: int) -> ChannelCheck:
    """Check ``meta.json`` and every segment of one channel; stops at the first corruption."""
    out = ChannelCheck(name, chan_dir)
    try:
        read_meta_blocking(disk, chan_dir)
    except (OSError, ValueError) as exc:
        out.corrupt = Problem(None, META_FILE, None, str(exc) or type(exc).__name__)
        return out
    segs = list_segments_blocking(disk, chan_dir)
    out.segments = len(segs)
    for i, (base, path, size, _) in enumerate(segs):
        res = check_segment_blocking(disk, path, base, size, max_record, DEFAULT_PRODUCER_CAP)
        out.messages += res.end_seq - base
        last = i == len(segs) - 1
        file = os.path.basename(path)
        problem = None
        if res.reason is not None:
            problem = Problem(res.end_seq, file, res.bad_pos, res.reason)
            if last and not res.header_ok:
                problem = Problem(base, file, 0, f"{res.reason}; the segment would be removed")
        elif not last and res.end_seq != segs[i + 1][0]:
            reason = f"segment ends at seq {res.end_seq}, the next one starts at {segs[i + 1][0]}"
            problem = Problem(res.end_seq, file, size, reason)
        if problem is None:
            continue
        if last:
            out.torn_tail = problem
        else:
            out.corrupt = problem
        break
    return out
