"""``chanctl fsck --repair``: cut a stopped daemon's corrupt channel back to its last good record.

Only ever run with the operator's consent, on a directory no daemon holds (the CLI takes the
data-directory lock). Nothing is thrown away: the bytes cut off the damaged segment are first
saved beside it as ``<segment>.corrupt-<offset>``, and every later segment is renamed the same
way (the daemon only reads ``%020d.log`` files, so it ignores them). The channel itself is never
deleted. Afterwards the damaged segment is the channel's last one: the daemon replays it on
start, serves every message before the cut and appends after it.

Order, so that a crash at any step leaves a directory that this same repair finishes: save the
cut-off bytes (atomically), then truncate (failpoint ``fsck.before_truncate``), then rename the
later segments oldest first. A crash before the truncate leaves the channel as it was plus a
copy; one while renaming leaves a gap after the cut, which fsck reports as corruption at the
same offset and the next repair completes. Reads never see a torn record either way: recovery
and quarantine stop at the first invalid one.

Blocking file I/O: runs in the CLI process, never on the daemon's event loop.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from chanctl.protocol import format_offset

from ..base import ChannelCheck
from .disk import Disk
from .producers import DEFAULT_PRODUCER_CAP
from .records import encode_state
from .recovery import check_segment_blocking
from .segment import list_segments_blocking


class NotRepairable(Exception):
    """Corruption that cutting the log cannot fix (a damaged ``meta.json``)."""


@dataclass
class Repaired:
    """What a repair did: where the channel now ends and where the rest went."""

    offset: str  # the cut: the channel now ends here
    saved: list[str] = field(default_factory=list)  # files holding what was cut off


def repair_blocking(disk: Disk, check: ChannelCheck, max_record: int) -> Repaired:
    """Cut ``check.path`` at ``check.corrupt`` (found by ``check_channel_blocking``)."""
    bad = check.corrupt
    if bad is None or bad.seq is None or bad.pos is None:
        why = bad.reason if bad is not None else "nothing to repair"
        raise NotRepairable(f"{bad.file if bad else check.name}: {why}")
    chan_dir = check.path
    segs = list_segments_blocking(disk, chan_dir)
    at = next(i for i, s in enumerate(segs) if os.path.basename(s[1]) == bad.file)
    base, path, size, _ = segs[at]
    suffix = f".corrupt-{format_offset(bad.seq)}"
    out = Repaired(format_offset(bad.seq))
    res = check_segment_blocking(disk, path, base, size, max_record, DEFAULT_PRODUCER_CAP)
    cut = bad.pos if res.header_ok else 0  # inside the STATE prefix: the whole segment goes
    if cut < size:
        disk.write_atomic(path + suffix, disk.read_range(path, cut, size - cut))
        out.saved.append(path + suffix)
    disk.hit("fsck.before_truncate")
    if cut > 0 and cut < size:
        _truncate(disk, path, cut)
    elif cut == 0 and at == 0:  # the first segment: keep the channel's seq base in its name
        disk.write_atomic(path, b"".join(encode_state(base, time.time_ns(), False, None, [])))
    elif cut == 0:  # the previous segment becomes the last one
        disk.unlink(path)
    for _, later, _, _ in segs[at + 1 :]:  # oldest first: a crash leaves a gap, never a hole
        disk.rename(later, later + suffix)
        out.saved.append(later + suffix)
    disk.fsync_dir(chan_dir)
    return out


def _truncate(disk: Disk, path: str, size: int) -> None:
    fd = disk.open_append(path)
    try:
        disk.truncate(fd, size)
        disk.fsync(fd)
    finally:
        disk.close(fd)
