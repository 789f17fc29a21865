"""``chanctl fsck`` for the local engine: every record of a channel, checked.

Every segment of a channel is walked record by record with recovery's own replay
(``recovery.check_segment_blocking``), so fsck and start-up agree on what a valid record is. A
problem in a sealed segment is corruption: the daemon quarantines the channel from that message
on. Offline (a stopped daemon's directory), a problem in the last segment is a torn tail:
start-up truncates it (or removes a segment without a complete STATE prefix), so it is reported
but is not an error. Online (``verify_log``, for a running daemon) the active segment is checked
up to its durable end, where every record is complete, so any problem there is corruption too.
"""

from __future__ import annotations

import os

from ..base import ChannelCheck, ChannelMissing, Problem
from .channel_log import ChannelLog
from .disk import Disk
from .layout import channel_name_blocking, read_meta_blocking
from .meta import META_FILE, is_channel_dir_name
from .producers import DEFAULT_PRODUCER_CAP
from .reader import _quarantine as quarantine  # one rule (and log line) for reads and fsck
from .recovery import check_segment_blocking
from .segment import list_segments_blocking

__all__ = ["ChannelCheck", "Problem", "channel_dirs_blocking", "check_channel_blocking"]
SegmentSpan = tuple[int, str, int]  # (base, path, bytes to check)


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
        try:
            name = channel_name_blocking(disk, path)
        except (OSError, ValueError):
            name = entry
        out.append((name, path))
    out.sort()
    return out


def check_channel_blocking(disk: Disk, name: str, chan_dir: str, max_record: int) -> ChannelCheck:
    """Check ``meta.json`` and every segment of a stopped daemon's channel; stops at the first
    corruption (a problem in the last segment is a torn tail)."""
    out = ChannelCheck(name, chan_dir)
    try:
        read_meta_blocking(disk, chan_dir)
    except (OSError, ValueError) as exc:
        out.corrupt = Problem(None, META_FILE, None, str(exc) or type(exc).__name__)
        return out
    segs = [(b, p, size) for b, p, size, _ in list_segments_blocking(disk, chan_dir)]
    return check_segments_blocking(disk, out, segs, max_record, tail_is_torn=True)


def check_segments_blocking(
    disk: Disk, out: ChannelCheck, segs: list[SegmentSpan], max_record: int, tail_is_torn: bool
) -> ChannelCheck:
    """Walk ``segs`` (oldest first, each up to its given size) into ``out``; stops at the first
    problem, which is a torn tail when it is in the last segment and ``tail_is_torn``."""
    out.segments = len(segs)
    for i, (base, path, size) in enumerate(segs):
        file = os.path.basename(path)
        try:
            res = check_segment_blocking(disk, path, base, size, max_record, DEFAULT_PRODUCER_CAP)
        except FileNotFoundError:
            out.corrupt = Problem(base, file, 0, "segment file is missing")
            break
        out.messages += res.end_seq - base
        last = i == len(segs) - 1
        problem = None
        if res.reason is not None:
            problem = Problem(res.end_seq, file, res.bad_pos, res.reason)
            if last and tail_is_torn and not res.header_ok:
                problem = Problem(base, file, 0, f"{res.reason}; the segment would be removed")
        elif not last and res.end_seq != segs[i + 1][0]:
            reason = f"segment ends at seq {res.end_seq}, the next one starts at {segs[i + 1][0]}"
            problem = Problem(res.end_seq, file, size, reason)
        if problem is None:
            continue
        if last and tail_is_torn:
            out.torn_tail = problem
        else:
            out.corrupt = problem
        break
    return out


async def verify_log(lg: ChannelLog) -> ChannelCheck:
    """Check an open channel while the daemon serves it: sealed segments whole, the active one
    up to its durable end (appends go on behind it: files are only ever appended to), in one of
    the store's I/O threads. Corruption quarantines the channel like a read reaching it."""
    sh, st = lg.shared, lg.state
    while True:
        segs = [(s.base, s.path, s.size if s.sealed else s.durable_size) for s in lg.segments]
        out = ChannelCheck(st.name, lg.dir)
        await sh.run(check_segments_blocking, sh.disk, out, segs, sh.max_record, False)
        if lg.removed:
            raise ChannelMissing(st.name)
        bad = out.corrupt
        if bad is None or bad.seq is None:
            return out
        seg = next((s for s in lg.segments if os.path.basename(s.path) == bad.file), None)
        if seg is None and segs[0][0] < lg.segments[0].base:
            continue  # retention dropped a segment while we read it: check what is left
        if seg is not None:
            seg.mark_bad(bad.pos if bad.pos is not None else 0, bad.seq)
            quarantine(lg, seg, bad.seq, bad.reason)
        return out
