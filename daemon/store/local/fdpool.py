"""A bounded pool of open segment file descriptors shared by every channel.

10,000 channels must not need 10,000 fds (reliability.md R5: fds ≤ pool + connections). The
pool keeps at most ``cap`` idle descriptors, closing the least recently used first; a descriptor
handed out with ``acquire`` is never closed until its user calls ``release``, so an executor
thread can keep writing or reading while the loop evicts others. The pool is only touched on the
event loop; the threads just use the integers they were given.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from .disk import Disk

DEFAULT_MAX_FDS = 256


@dataclass
class _Entry:
    fd: int
    refs: int = 0


class FdPool:
    def __init__(self, disk: Disk, cap: int = DEFAULT_MAX_FDS) -> None:
        self._disk = disk
        self._cap = max(1, cap)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._doomed: dict[int, _Entry] = {}  # forgotten while pinned: close on last release

    def __len__(self) -> int:
        return len(self._entries)

    def acquire(self, path: str) -> int:
        """An fd for ``path`` (read + append), pinned until ``release(path, fd)``."""
        entry = self._entries.get(path)
        if entry is None:
            entry = _Entry(self._disk.open_append(path), refs=1)  # pinned before evicting
            self._entries[path] = entry
            self._evict()
        else:
            self._entries.move_to_end(path)
            entry.refs += 1
        return entry.fd

    def adopt(self, path: str, fd: int, pinned: bool = False) -> None:
        """Take ownership of an fd opened elsewhere (a segment the writer just created);
        ``pinned``: the writer goes on using it, so it stays open until ``release``."""
        self.forget(path)
        self._entries[path] = _Entry(fd, refs=int(pinned))
        self._evict()

    def release(self, path: str, fd: int) -> None:
        doomed = self._doomed.get(fd)
        if doomed is not None:
            doomed.refs -= 1
            if doomed.refs == 0:
                del self._doomed[fd]
                self._disk.close(fd)
            return
        entry = self._entries.get(path)
        if entry is not None and entry.fd == fd:
            entry.refs -= 1
            self._evict()

    def forget(self, path: str) -> None:
        """The file is gone or the channel closed: close now, or when the last user releases."""
        entry = self._entries.pop(path, None)
        if entry is None:
            return
        if entry.refs:
            self._doomed[entry.fd] = entry
        else:
            self._disk.close(entry.fd)

    def close_all(self) -> None:
        """Close everything (at stop, once no thread uses any descriptor)."""
        for entry in [*self._entries.values(), *self._doomed.values()]:
            self._disk.close(entry.fd)
        self._entries.clear()
        self._doomed.clear()

    def _evict(self) -> None:
        if len(self._entries) <= self._cap:
            return
        for path in [p for p, e in self._entries.items() if e.refs == 0]:
            if len(self._entries) <= self._cap:
                return
            self._disk.close(self._entries.pop(path).fd)
