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

from ..base import Retention
from .disk import Disk
from .meta import (
    META_FILE,
    ChannelMeta,
    decode_dir_name,
    is_channel_dir_name,
    meta_from_json,
)
from .recovery import recover_blocking
from .segment import segment_name
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
        name = decode_dir_name(entry)
        if name is None:
            try:
                name = read_meta_blocking(disk, path).name
            except (OSError, ValueError) as exc:
                log.error("skipping channel directory %s: %s", entry, exc)
                continue
        out[name] = entry
    return out


def read_meta_blocking(disk: Disk, chan_dir: str) -> ChannelMeta:
    return meta_from_json(disk.read_small(os.path.join(chan_dir, META_FILE)))


def peek_retention_blocking(disk: Disk, dirs: list[str]) -> list[Retention | None]:
    """Each channel's retention (None when unreadable), without opening its log."""
    out: list[Retention | None] = []
    for chan_dir in dirs:
        try:
            out.append(read_meta_blocking(disk, chan_dir).config.retention)
        except (OSError, ValueError):
            out.append(None)
    return out


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
