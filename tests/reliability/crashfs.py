"""CrashFS: record the local engine's file I/O, then build the directories a power loss could
leave behind (reliability.md §5.1 L2, tests C3 and C8).

``RecordingDisk`` is the production ``Disk`` doing real I/O in a working directory, plus a trace
of every mutation in inode terms (so renaming a directory does not confuse later writes).
Syncs are recorded, not performed: durability is what the model below decides.

``CrashModel`` replays a trace prefix and tracks, like a page cache over a disk, what each file
held at its last fsync/fdatasync and what each directory listed at its last directory fsync.
``materialize`` writes one crash state: synced bytes and entries always survive; of the later
ones a variant keeps none, all, a prefix, a random subset (reordering), tears the last kept
write at a 512 B or 4 KiB boundary, or extends the file with zeros or garbage (size persisted,
data not); un-fsynced directory entries (creates, renames, unlinks) may be undone likewise.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from chanctl.daemon.store.local.disk import Disk, Failpoints

ROOT = 0  # inode of the working directory; it exists durably before the trace starts
FILE_VARIANTS = ("durable", "all", "prefix", "subset", "torn", "zeros", "garbage")
DIR_VARIANTS = ("durable", "all", "prefix", "subset")
Tree = dict[str, bytes | None]


@dataclass(frozen=True, slots=True)
class TraceOp:
    """One mutation. ``kind``: mkdir/create (parent, name, ino), write (ino, offset, data),
    truncate (ino, offset=size), sync/dirsync (ino), rename (parent, name -> dst_parent,
    dst_name), unlink (parent, name; also a whole removed tree)."""

    kind: str
    ino: int = 0
    parent: int = 0
    name: str = ""
    offset: int = 0
    data: bytes = b""
    dst_parent: int = 0
    dst_name: str = ""


class RecordingDisk(Disk):
    """The real Disk confined to ``workdir``, logging every mutation to ``trace``. A lock
    makes the trace order the order the effects happened in (the engine writes from threads)."""

    def __init__(self, workdir: str) -> None:
        super().__init__(Failpoints(""))
        self.workdir = os.path.abspath(workdir)
        self.trace: list[TraceOp] = []
        self.times: list[float] = []  # monotonic time of each op (loss windows in time)
        self._lock = threading.RLock()
        self._dirs: dict[int, dict[str, int]] = {ROOT: {}}
        self._fds: dict[int, int] = {}
        self._next = ROOT + 1

    def _log(self, op: TraceOp) -> None:
        self.trace.append(op)
        self.times.append(time.monotonic())

    def _where(self, path: str) -> tuple[int, str]:
        """(parent inode, name) of ``path`` in the live namespace."""
        rel = os.path.relpath(os.path.abspath(path), self.workdir)
        assert not rel.startswith(".."), f"{path} is outside the CrashFS working directory"
        *parts, name = rel.split(os.sep)
        ino = ROOT
        for part in parts:
            ino = self._dirs[ino][part]
        return ino, name

    def _ino(self, path: str) -> int:
        parent, name = self._where(path)
        return self._dirs[parent][name] if name != "." else ROOT

    def _new(self, kind: str, path: str) -> int:
        parent, name = self._where(path)
        ino, self._next = self._next, self._next + 1
        self._dirs[parent][name] = ino
        if kind == "mkdir":
            self._dirs[ino] = {}
        self._log(TraceOp(kind, ino, parent, name))
        return ino

    # -- files -----------------------------------------------------------------------------

    def open_append(self, path: str, create: bool = False) -> int:
        with self._lock:
            fd = super().open_append(path, create)
            self._fds[fd] = self._new("create", path) if create else self._ino(path)
            return fd

    def create_new(self, path: str) -> int:
        with self._lock:
            fd = super().create_new(path)
            self._fds[fd] = self._new("create", path)
            return fd

    def close(self, fd: int) -> None:
        with self._lock:
            self._fds.pop(fd, None)
            super().close(fd)

    def write_all(self, fd: int, bufs: Sequence[bytes], limit: int | None = None) -> None:
        with self._lock:
            appending = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND
            start = os.fstat(fd).st_size if appending else os.lseek(fd, 0, os.SEEK_CUR)
            try:
                super().write_all(fd, bufs, limit)
            finally:
                end = os.fstat(fd).st_size if appending else os.lseek(fd, 0, os.SEEK_CUR)
                if end > start:
                    data = b"".join(bufs)[: end - start]
                    self._log(TraceOp("write", self._fds[fd], offset=start, data=data))

    def fdatasync(self, fd: int) -> None:
        with self._lock:
            self._log(TraceOp("sync", self._fds[fd]))

    def fsync(self, fd: int) -> None:
        self.fdatasync(fd)

    def truncate(self, fd: int, size: int) -> None:
        with self._lock:
            super().truncate(fd, size)
            self._log(TraceOp("truncate", self._fds[fd], offset=size))

    # -- directories -----------------------------------------------------------------------

    def mkdir(self, path: str) -> None:
        with self._lock:
            super().mkdir(path)
            self._new("mkdir", path)

    def fsync_dir(self, path: str) -> None:
        with self._lock:
            self._log(TraceOp("dirsync", self._ino(path)))

    def rename(self, src: str, dst: str) -> None:
        with self._lock:
            super().rename(src, dst)
            self._moved(src, dst)

    def replace(self, src: str, dst: str) -> None:
        with self._lock:
            super().replace(src, dst)
            self._moved(src, dst)

    def _moved(self, src: str, dst: str) -> None:
        (sp, sn), (dp, dn) = self._where(src), self._where(dst)
        ino = self._dirs[dp][dn] = self._dirs[sp].pop(sn)
        self._log(TraceOp("rename", ino, sp, sn, dst_parent=dp, dst_name=dn))

    def unlink(self, path: str) -> None:
        with self._lock:
            super().unlink(path)
            self._gone(path)

    def rmtree(self, path: str) -> None:
        with self._lock:
            super().rmtree(path)
            if not os.path.lexists(path):
                self._gone(path)

    def _gone(self, path: str) -> None:
        parent, name = self._where(path)
        if self._dirs[parent].pop(name, None) is not None:
            self._log(TraceOp("unlink", 0, parent, name))


@dataclass
class _File:
    durable: bytes = b""
    cur: bytearray = field(default_factory=bytearray)
    pending: list[TraceOp] = field(default_factory=list)  # writes/truncates since last sync


@dataclass
class _Dir:
    durable: dict[str, int] = field(default_factory=dict)
    cur: dict[str, int] = field(default_factory=dict)
    pending: list[TraceOp] = field(default_factory=list)  # entry changes since last dirsync


@dataclass
class Damage:
    """What a materialized state lost compared with the page cache (coverage figures)."""

    files_changed: int = 0  # files whose bytes differ from what the process last saw
    torn: int = 0  # writes kept only up to a sector/page boundary
    extended: int = 0  # files grown with zeros or garbage
    dirs_changed: int = 0  # directories listing other entries than the process last saw

    @property
    def any(self) -> bool:
        return bool(self.files_changed or self.dirs_changed)


class CrashModel:
    """The durable and volatile state after a trace prefix; ``advance`` replays further."""

    def __init__(self, trace: Sequence[TraceOp]) -> None:
        self.trace = trace
        self.at = 0
        self.files: dict[int, _File] = {}
        self.dirs: dict[int, _Dir] = {ROOT: _Dir()}

    def advance(self, point: int) -> None:
        """Apply ops until ``point`` ops are applied (a crash right before op ``point``)."""
        assert point >= self.at, "crash points must come in increasing order"
        for op in self.trace[self.at : point]:
            self._apply(op)
        self.at = point

    def _apply(self, op: TraceOp) -> None:
        k = op.kind
        if k in ("mkdir", "create"):
            if k == "mkdir":
                self.dirs[op.ino] = _Dir()
            else:
                self.files[op.ino] = _File()
            self._dir_op(op.parent, op)
        elif k in ("write", "truncate"):
            f = self.files[op.ino]
            _apply_file_op(f.cur, op)
            f.pending.append(op)
        elif k == "sync":
            f = self.files[op.ino]
            f.durable, f.pending = bytes(f.cur), []
        elif k == "dirsync":
            d = self.dirs[op.ino]
            d.durable, d.pending = dict(d.cur), []
        elif k == "rename":
            self._dir_op(op.parent, op)
            if op.dst_parent != op.parent:  # two directories: each persists on its own
                self._dir_op(op.dst_parent, op)
        elif k == "unlink":
            self._dir_op(op.parent, op)
        else:
            raise AssertionError(f"unknown trace op {k}")

    def _dir_op(self, ino: int, op: TraceOp) -> None:
        d = self.dirs[ino]
        _apply_dir_op(d.cur, ino, op)
        d.pending.append(op)

    def materialize(self, rng: random.Random, files: str, dirs: str) -> tuple[Tree, Damage]:
        """One crash state as {relative path: bytes, or None for a directory}. ``files`` and
        ``dirs`` name a variant from FILE_VARIANTS / DIR_VARIANTS, or "mixed" for a random one
        per file or directory."""
        tree: Tree = {}
        damage = Damage()
        self._collect("", ROOT, rng, files, dirs, tree, damage)
        return tree, damage

    def _collect(
        self, path: str, ino: int, rng: random.Random, files: str, dirs: str, tree: Tree, d: Damage
    ) -> None:
        node = self.dirs[ino]
        entries = _choose_entries(node, ino, rng, _pick(dirs, DIR_VARIANTS, rng))
        d.dirs_changed += entries != node.cur
        for name, child in sorted(entries.items()):
            rel = os.path.join(path, name)
            if child in self.dirs:
                tree[rel] = None
                self._collect(rel, child, rng, files, dirs, tree, d)
                continue
            f = self.files[child]
            data = _choose_bytes(f, rng, _pick(files, FILE_VARIANTS, rng), d)
            d.files_changed += data != f.cur
            tree[rel] = data


def write_tree(dest: str, tree: Tree) -> None:
    """Create ``dest`` holding a materialized crash state."""
    os.mkdir(dest, 0o700)
    for rel, data in tree.items():  # parents come before their entries
        path = os.path.join(dest, rel)
        if data is None:
            os.mkdir(path, 0o700)
            continue
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def tree_key(tree: Tree) -> bytes:
    """A digest telling identical crash states apart (each distinct one is checked once)."""
    h = hashlib.blake2b(digest_size=16)
    for rel, data in sorted(tree.items()):
        h.update(rel.encode() + b"\0" + (b"D" if data is None else b"F%d:" % len(data)))
        h.update(data or b"")
    return h.digest()


def _pick(name: str, choices: Sequence[str], rng: random.Random) -> str:
    return rng.choice(choices) if name == "mixed" else name


def _apply_file_op(buf: bytearray, op: TraceOp) -> None:
    if op.kind == "truncate":
        del buf[op.offset :]
        buf.extend(bytes(op.offset - len(buf)))
        return
    if op.offset > len(buf):
        buf.extend(bytes(op.offset - len(buf)))
    buf[op.offset : op.offset + len(op.data)] = op.data


def _apply_dir_op(entries: dict[str, int], ino: int, op: TraceOp) -> None:
    """Apply one entry change to ``entries``, the listing of directory ``ino``. A rename kept
    without the create before it still names its inode (with that inode's durable bytes)."""
    if op.kind in ("mkdir", "create"):
        entries[op.name] = op.ino
    elif op.kind == "unlink":
        entries.pop(op.name, None)
    elif op.kind == "rename":
        if op.parent == ino:
            entries.pop(op.name, None)
        if op.dst_parent == ino:
            entries[op.dst_name] = op.ino


def _choose_entries(d: _Dir, ino: int, rng: random.Random, how: str) -> dict[str, int]:
    if how == "all" or not d.pending:
        return dict(d.cur)
    ops = _keep(d.pending, rng, how)
    out = dict(d.durable)
    for op in ops:
        _apply_dir_op(out, ino, op)
    return out


def _keep(ops: list[TraceOp], rng: random.Random, how: str) -> list[TraceOp]:
    if how == "durable":
        return []
    if how == "subset":
        return [op for op in ops if rng.random() < 0.5]
    return ops[: rng.randint(0, len(ops))]  # prefix


def _choose_bytes(f: _File, rng: random.Random, how: str, damage: Damage) -> bytes:
    if how == "all" or not f.pending:
        return bytes(f.cur)
    buf = bytearray(f.durable)
    if how in ("durable", "prefix", "subset"):
        for op in _keep(f.pending, rng, how):
            _apply_file_op(buf, op)
        return bytes(buf)
    k = rng.randint(0, len(f.pending) - 1)
    if how == "torn":  # tear a write that spans a block boundary, if any does
        tearable = [i for i, op in enumerate(f.pending) if _tear_point(op, rng, 512)]
        k = rng.choice(tearable) if tearable else k
    for op in f.pending[:k]:
        _apply_file_op(buf, op)
    last = f.pending[k]
    if how == "torn":
        cut = _tear_point(last, rng, rng.choice((512, 4096)))
        cut = cut or _tear_point(last, rng, 512)
        if cut:
            _apply_file_op(buf, TraceOp("write", offset=last.offset, data=last.data[:cut]))
            damage.torn += 1
        return bytes(buf)
    size = max(len(f.cur), len(buf)) + rng.choice((0, 0, 1, 511, 4096))
    pad = size - len(buf)
    if pad > 0:
        buf += bytes(pad) if how == "zeros" else rng.randbytes(pad)
        damage.extended += 1
    return bytes(buf)


def _tear_point(op: TraceOp, rng: random.Random, block: int) -> int | None:
    """Bytes of write ``op`` kept when it tears at a ``block`` boundary of the file (sectors
    and pages are written whole), or None when the write stays within one block."""
    if op.kind != "write":
        return None
    end = op.offset + len(op.data)
    first = (op.offset // block + 1) * block
    if first >= end:
        return None
    return rng.randrange(first, end, block) - op.offset
