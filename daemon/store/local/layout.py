"""The data directory layout and the whole-channel file operations (blocking; run in threads).

::

    <data_dir>/channels/<encoded name>/meta.json          ChannelConfig + deleted + fork_refs
    <data_dir>/channels/<encoded name>/<first seq>.log    segments, %020d
    <data_dir>/channels/.tmp-*    a channel being created (removed at start)
    <data_dir>/channels/.trash-*  a channel being deleted (removed at start)

A channel appears and disappears atomically: it is built complete (meta, first segment, all
fsynced) in a ``.tmp-`` directory, then renamed into place and the parent fsynced; deletion
renames it to ``.trash-`` first. A crash at any point leaves the channel wholly there or wholly
absent, never half-created.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass

from ..base import ChannelSummary
from .disk import Disk
from .meta import (
    META_FILE,
    ChannelMeta,
    decode_dir_name,
    is_channel_dir_name,
    meta_from_json,
)
from .recovery import read_checkpoint_blocking, recover_blocking
from .segment import list_segments_blocking, segment_name
from .tail import CHECKPOINT_FILE, Recovered, TailState, encode_checkpoint, probe_range

log = logging.getLogger("chanctl.store")
_TMP = ".tmp-"
_TRASH = ".trash-"


def scan_root_blocking(disk: Disk, root: str) -> dict[str, str]:
    """Create the channels directory if needed, clear leftovers, map name -> directory."""
    disk.ensure_dir(root)
    out: dict[str, str] = {}
    for entry in disk.listdir(root):
        path = os.path.join(root, entry)
        if entry.startswith((_TMP, _TRASH)):
            log.info("removing leftover %s from an interrupted create or delete", entry)
            disk.rmtree(path)
            continue
        if not is_channel_dir_name(entry) or not disk.is_dir(path):
            continue
        try:
            name = channel_name_blocking(disk, path)
        except (OSError, ValueError) as exc:
            log.error("skipping channel directory %s: %s", entry, exc)
            continue
        out[name] = entry
    return out


def channel_name_blocking(disk: Disk, chan_dir: str) -> str:
    """The channel a directory holds: decoded from the directory's name or, for a long name
    stored hashed, read from its ``meta.json`` (OSError or ValueError if that fails)."""
    name = decode_dir_name(os.path.basename(chan_dir))
    return name if name is not None else read_meta_blocking(disk, chan_dir).name


def read_meta_blocking(disk: Disk, chan_dir: str) -> ChannelMeta:
    return meta_from_json(disk.read_small(os.path.join(chan_dir, META_FILE)))


@dataclass(frozen=True, slots=True)
class ChannelPeek:
    """What a channel directory tells without replaying its log: the metadata, and from the
    file listing and a checkpoint that covers the whole tail segment (what a clean stop
    leaves), the offsets. None where only a replay could tell."""

    meta: ChannelMeta
    segments: int
    first_seq: int
    size_bytes: int
    next_seq: int | None = None
    closed: bool | None = None
    last_write: float | None = None

    def summary(self) -> ChannelSummary:
        meta = self.meta
        return ChannelSummary(
            name=meta.name,
            config=meta.config,
            opened=False,
            deleted=meta.deleted,
            fork_refs=meta.fork_refs,
            first_seq=self.first_seq,
            next_seq=self.next_seq,
            closed=self.closed,
            size_bytes=self.size_bytes,
            last_write=self.last_write,
        )


def peek_channels_blocking(disk: Disk, dirs: list[str]) -> list[ChannelPeek | str]:
    """``peek_channel_blocking`` for each directory; the error text where it failed."""
    out: list[ChannelPeek | str] = []
    for chan_dir in dirs:
        try:
            out.append(peek_channel_blocking(disk, chan_dir))
        except (OSError, ValueError) as exc:
            out.append(str(exc) or type(exc).__name__)
    return out


def peek_channel_blocking(disk: Disk, chan_dir: str) -> ChannelPeek:
    """A channel's metadata, segment listing and (if it covers the whole tail) checkpoint:
    a handful of small reads, where opening the channel would replay its tail segment."""
    meta = read_meta_blocking(disk, chan_dir)
    segs = list_segments_blocking(disk, chan_dir)
    if not segs:  # recovery will start an empty log at the fork point
        base = meta.config.fork.seq if meta.config.fork is not None else 0
        return ChannelPeek(meta, 0, base, 0)
    first, size = segs[0][0], sum(seg[2] for seg in segs)
    _, path, tail_size, _ = segs[-1]
    try:
        tail = read_checkpoint_blocking(disk, chan_dir, path, tail_size)
    except FileNotFoundError:
        tail = None
    if tail is None or tail.size != tail_size:  # bytes after the checkpoint: replay needed
        return ChannelPeek(meta, len(segs), first, size)
    return ChannelPeek(
        meta, len(segs), first, size, tail.end_seq, tail.closed, tail.last_time or None
    )


def create_blocking(
    disk: Disk, root: str, dirname: str, base: int, meta: bytes, segment: bytes, sync: bool
) -> None:
    """Build the channel in a temp directory, then rename it into place (atomic create)."""
    final = os.path.join(root, dirname)
    if disk.is_dir(final):
        raise FileExistsError(final)
    tmp = os.path.join(root, f"{_TMP}{dirname}-{secrets.token_hex(4)}")
    disk.mkdir(tmp)
    try:
        disk.write_new(os.path.join(tmp, META_FILE), meta, sync)
        disk.write_new(os.path.join(tmp, segment_name(base)), segment, sync)
        if sync:
            disk.fsync_dir(tmp)
        disk.rename(tmp, final)
    except BaseException:
        disk.rmtree(tmp)
        raise
    disk.hit("create.before_dirsync")
    if sync:
        disk.fsync_dir(root)


def delete_blocking(disk: Disk, root: str, dirname: str, sync: bool) -> None:
    """Rename the channel out of the way (atomic delete), then remove its files."""
    trash = os.path.join(root, f"{_TRASH}{dirname}-{secrets.token_hex(4)}")
    disk.rename(os.path.join(root, dirname), trash)
    if sync:
        disk.fsync_dir(root)
    disk.rmtree(trash)


def load_blocking(
    disk: Disk, chan_dir: str, max_record: int, cap: int, sync: bool
) -> tuple[ChannelMeta, Recovered]:
    """Read a channel's metadata and recover its log."""
    meta = read_meta_blocking(disk, chan_dir)
    fresh = meta.config.fork.seq if meta.config.fork is not None else 0
    rec = recover_blocking(disk, chan_dir, meta.name, fresh, max_record, cap, sync)
    return meta, rec


def unlink_segments_blocking(disk: Disk, chan_dir: str, paths: list[str], sync: bool) -> None:
    """Remove retention victims oldest first, fsyncing the directory after each one: without
    that, a power loss could keep a later unlink and lose an earlier one, leaving a hole that
    reads would (rightly) report as corruption. Whatever survives is a contiguous suffix."""
    for path in paths:
        try:
            disk.remove_if_exists(path)
            disk.hit("retention.after_unlink_before_dirsync")
            if sync:
                disk.fsync_dir(chan_dir)
        except OSError as exc:
            log.warning("retention could not remove %s: %s", path, exc)
            return


def write_checkpoint_blocking(disk: Disk, chan_dir: str, tail: TailState) -> int:
    """Record a channel's tail state (see ``tail``); returns the checkpoint's size. Not
    fsynced on purpose: a lost or torn checkpoint is detected and ignored."""
    data = encode_checkpoint(tail, disk.read_range(tail.path, *probe_range(tail.size)))
    disk.write_atomic(os.path.join(chan_dir, CHECKPOINT_FILE), data, False)
    return len(data)


def write_checkpoints_blocking(disk: Disk, tails: list[tuple[str, TailState]]) -> None:
    """Clean shutdown: checkpoint each changed channel so the next start replays nothing."""
    for chan_dir, tail in tails:
        try:
            write_checkpoint_blocking(disk, chan_dir, tail)
        except OSError as exc:
            log.warning("could not write the checkpoint of %s: %s", chan_dir, exc)
