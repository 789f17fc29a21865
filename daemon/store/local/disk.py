"""The one file-I/O seam of the local engine, plus named failpoints.

Every open, write, fsync, rename, unlink, truncate and directory fsync the engine performs goes
through a ``Disk`` object, so tests can swap in a recording or fault-injecting implementation
(reliability.md §5.1, CrashFS) without touching engine code. Files are created 0600 and
directories 0700 whatever the umask, and every path is opened with ``O_NOFOLLOW`` so a symlink
planted inside the data directory is refused instead of followed.

Failpoints are compiled in but inert unless ``CHANCTL_FAILPOINTS`` is set (or a spec is passed
explicitly). Syntax: ``name=action[@k];name2=action2``. Actions: ``panic`` (``os._exit(137)``,
no cleanup, like a crash at that instruction), ``error:EIO`` / ``error:ENOSPC`` (raise OSError),
``sleep:MS``, ``short_write:N`` (the next write at that point stores only N bytes, then fails
with ENOSPC, like a disk filling up mid-write). Without ``@k`` an action fires on every hit;
with ``@k`` it fires on the k-th hit only (1-based), which lets a test fail once and recover.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

FILE_MODE = 0o600
DIR_MODE = 0o700
_BASE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC

# Every named point the engine calls; a spec naming anything else is a typo and is refused.
FAILPOINT_NAMES = frozenset(
    {
        "append.before_write",
        "append.after_write",
        "append.before_fsync",
        "append.after_fsync_before_ack",
        "roll.after_create",
        "roll.before_dirsync",
        "create.before_dirsync",
        "close.before_fsync",
        "retention.after_unlink_before_dirsync",
        "meta.before_replace",
        "recovery.before_truncate",
        "fsck.before_truncate",
    }
)
_ERRNOS = {"EIO": errno.EIO, "ENOSPC": errno.ENOSPC, "EDQUOT": errno.EDQUOT}


@dataclass(frozen=True)
class _Action:
    kind: str  # panic | error | sleep | short_write
    arg: int = 0
    at_hit: int | None = None


class Failpoints:
    """Parsed failpoint spec with per-point hit counters (thread-safe: hit from executors)."""

    def __init__(self, spec: str | None = None) -> None:
        self._actions = parse_failpoints(spec or "")
        self._hits: dict[str, int] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> Failpoints:
        return cls(os.environ.get("CHANCTL_FAILPOINTS"))

    @property
    def active(self) -> bool:
        return bool(self._actions)

    def hits(self, name: str) -> int:
        """How often ``name`` was reached (coverage checks in the failpoint matrix)."""
        with self._lock:
            return self._hits.get(name, 0)

    def hit(self, name: str) -> int | None:
        """Run the action armed at ``name``; returns a short-write byte limit, if any."""
        if not self._actions:
            return None
        with self._lock:
            count = self._hits[name] = self._hits.get(name, 0) + 1
        action = self._actions.get(name)
        if action is None or (action.at_hit is not None and action.at_hit != count):
            return None
        if action.kind == "panic":
            os._exit(137)
        if action.kind == "error":
            raise OSError(action.arg, f"{os.strerror(action.arg)} (failpoint {name})")
        if action.kind == "sleep":
            time.sleep(action.arg / 1000)
            return None
        return action.arg  # short_write


def parse_failpoints(spec: str) -> dict[str, _Action]:
    """Parse ``name=action[@k];...``; raises ValueError naming the bad part."""
    out: dict[str, _Action] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, sep, rest = part.partition("=")
        if not sep or name not in FAILPOINT_NAMES:
            raise ValueError(f"unknown failpoint in {part!r}; known: {sorted(FAILPOINT_NAMES)}")
        rest, at_sep, at = rest.partition("@")
        if at_sep and not (at.isdigit() and int(at) > 0):
            raise ValueError(f"failpoint {part!r}: '@k' needs a positive integer")
        out[name] = _parse_action(part, rest, int(at) if at_sep else None)
    return out


def _parse_action(part: str, text: str, at_hit: int | None) -> _Action:
    kind, _, arg = text.partition(":")
    if kind == "panic" and not arg:
        return _Action("panic", at_hit=at_hit)
    if kind == "error" and arg in _ERRNOS:
        return _Action("error", _ERRNOS[arg], at_hit)
    if kind in ("sleep", "short_write") and arg.isdigit():
        return _Action(kind, int(arg), at_hit)
    raise ValueError(
        f"failpoint {part!r}: action must be panic, error:EIO, error:ENOSPC, sleep:MS "
        "or short_write:N"
    )


class Disk:
    """Plain POSIX file operations; subclass or wrap to record or inject faults. Every
    mutation is one overridable method (composites such as ``write_atomic`` call them), so a
    recording subclass (tests/reliability/crashfs.py) sees each create, write and rename."""

    def __init__(self, failpoints: Failpoints | None = None) -> None:
        self.failpoints = failpoints if failpoints is not None else Failpoints.from_env()

    def hit(self, point: str) -> int | None:
        return self.failpoints.hit(point)

    # -- files -------------------------------------------------------------------------------

    def open_append(self, path: str, create: bool = False) -> int:
        """Open a segment for reading (pread) and appending; ``create`` makes a new file."""
        flags = os.O_RDWR | os.O_APPEND | _BASE_FLAGS
        if create:
            flags |= os.O_CREAT | os.O_EXCL
        fd = os.open(path, flags, FILE_MODE)
        if create:
            os.fchmod(fd, FILE_MODE)  # exact mode whatever the umask
        return fd

    def close(self, fd: int) -> None:
        os.close(fd)

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        """Read up to ``n`` bytes at ``offset``; shorter only at end of file."""
        data = os.pread(fd, n, offset)
        if len(data) == n or not data:
            return data
        parts = [data]
        got = len(data)
        while got < n:
            more = os.pread(fd, n - got, offset + got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def write_all(self, fd: int, bufs: Sequence[bytes], limit: int | None = None) -> None:
        """Write every buffer (looping over short writes). ``limit`` simulates a disk that fills
        up after that many bytes: the prefix is written, then ENOSPC is raised."""
        if limit is not None:
            data = b"".join(bufs)
            if limit:
                self._write_loop(fd, [data[:limit]])
            raise OSError(errno.ENOSPC, "No space left on device (short_write failpoint)")
        self._write_loop(fd, list(bufs))

    def _write_loop(self, fd: int, bufs: list[bytes]) -> None:
        views = [memoryview(b) for b in bufs if b]
        while views:
            n = os.writev(fd, views[:1024])  # IOV_MAX is 1024 on Linux
            while views and n >= len(views[0]):
                n -= len(views[0])
                views.pop(0)
            if n:
                views[0] = views[0][n:]

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def truncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def read_small(self, path: str, max_bytes: int = 1 << 20) -> bytes:
        """Read a small whole file (metadata); refuses symlinks. Never allocates more than the
        file holds (os.pread sizes its buffer by the request, not by the file)."""
        fd = os.open(path, os.O_RDONLY | _BASE_FLAGS)
        try:
            size = os.fstat(fd).st_size
            if size > max_bytes:
                raise OSError(errno.EFBIG, f"{path} is larger than {max_bytes} bytes")
            return self.pread(fd, size, 0)
        finally:
            os.close(fd)

    def read_range(self, path: str, offset: int, n: int) -> bytes:
        fd = os.open(path, os.O_RDONLY | _BASE_FLAGS)
        try:
            return self.pread(fd, n, offset)
        finally:
            os.close(fd)

    def write_new(self, path: str, data: bytes, sync: bool) -> None:
        """Create ``path`` (must not exist) holding ``data``, fsynced when ``sync``."""
        fd = self.create_new(path)
        try:
            self.write_all(fd, [data])
            if sync:
                self.fsync(fd)
        finally:
            self.close(fd)

    def create_new(self, path: str) -> int:
        """Create ``path`` (must not exist) for writing, mode 0600 whatever the umask."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _BASE_FLAGS, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def write_atomic(self, path: str, data: bytes, sync: bool = True) -> None:
        """Replace ``path`` with ``data`` atomically: temp file, fsync, rename, fsync dir. A crash
        leaves either the old or the new version, never a torn one."""
        tmp = f"{path}.tmp"
        self.remove_if_exists(tmp)
        try:
            self.write_new(tmp, data, sync)
            self.hit("meta.before_replace")
            self.replace(tmp, path)
        except BaseException:
            self.remove_if_exists(tmp)
            raise
        if sync:
            self.fsync_dir(os.path.dirname(path))

    # -- directories -------------------------------------------------------------------------

    def mkdir(self, path: str) -> None:
        """Create a 0700 directory (exact mode whatever the umask, set through an O_NOFOLLOW
        descriptor so a symlink swapped in meanwhile is refused rather than chmodded)."""
        os.mkdir(path, DIR_MODE)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | _BASE_FLAGS)
        try:
            os.fchmod(fd, DIR_MODE)
        finally:
            os.close(fd)

    def ensure_dir(self, path: str) -> None:
        """Make sure directory ``path`` exists; missing parents are created 0700 (the data
        directory itself may be reached through a symlink the user configured), but ``path``
        itself must be a real directory, never a symlink planted in its place."""
        path = os.path.abspath(path)
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            self.ensure_dir(parent)
        try:
            self.mkdir(path)
        except FileExistsError:
            if not self.is_dir(path):
                msg = f"{path} is not a directory (symlinks are refused)"
                raise NotADirectoryError(msg) from None
            return
        self.fsync_dir(parent)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | _BASE_FLAGS)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def is_dir(self, path: str) -> bool:
        try:
            return stat.S_ISDIR(os.lstat(path).st_mode)
        except FileNotFoundError:
            return False

    def mtime(self, path: str) -> float:
        return os.lstat(path).st_mtime

    def file_size(self, path: str) -> int:
        return os.lstat(path).st_size

    def rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def remove_if_exists(self, path: str) -> None:
        try:
            self.unlink(path)
        except FileNotFoundError:
            pass

    def rmtree(self, path: str) -> None:
        """Remove a directory tree without following symlinks (shutil's safe variant)."""
        shutil.rmtree(path, ignore_errors=True)
