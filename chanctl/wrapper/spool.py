"""The buffer between the job's pipes and the daemon: bounded memory, then a file, never a block.

The job must never wait for the daemon (W7: a daemon restart mid-run must not stall it), so
``put`` never blocks: records go to memory up to ``mem_limit`` bytes, then to a spill file in
the state directory up to ``file_limit`` bytes, and beyond that they are dropped *and counted*
(the run reports the exact number). Once spilling, every new record goes to the file until the
reader has caught up with it, so records always come out in the order they went in. The file is
unlinked as soon as it is created: it holds job output, and nothing must be left behind by a
crash (after which nobody could send it anyway).
"""

from __future__ import annotations

import collections
import os
import struct
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# Record kinds: the job's two output streams (empty data marks the stream's end) and finished
# messages (one encoded JSON message: start, ack, exit, ...).
STDOUT, STDERR, EVENT = 1, 2, 3
_HEADER = struct.Struct("<BdI")  # kind, read time, length


@dataclass(frozen=True, slots=True)
class Record:
    kind: int
    time: float
    data: bytes


class Spool:
    """Many writers, one reader; thread-safe."""

    def __init__(self, spill_dir: Path, mem_limit: int = 8 << 20, file_limit: int = 1 << 30):
        self.spill_dir = spill_dir
        self.mem_limit = mem_limit
        self.file_limit = file_limit
        self.dropped_records = 0
        self.dropped_bytes = 0
        self._mem: collections.deque[Record] = collections.deque()
        self._mem_bytes = 0
        self._fd: int | None = None
        self._write_at = self._read_at = 0
        self._closed = False
        self._cond = threading.Condition()
        self.last_put = 0.0  # monotonic time of the latest record
        self._timer = threading.Event()  # never set: a sleep that is visibly a timer

    def put(self, kind: int, data: bytes, when: float | None = None) -> None:
        record = Record(kind, time.time() if when is None else when, data)
        with self._cond:
            if self._closed:
                return
            self.last_put = time.monotonic()
            if self._write_at == self._read_at and self._mem_bytes + len(data) <= self.mem_limit:
                self._mem.append(record)
                self._mem_bytes += len(data)
            else:
                self._spill_locked(record)
            self._cond.notify()

    def close(self) -> None:
        """No more records will come; ``take`` returns what is left, then None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self, max_bytes: int, timeout: float | None) -> list[Record] | None:
        """Up to ``max_bytes`` (at least one record), in order; [] after ``timeout`` seconds
        without data; None once closed and empty."""
        with self._cond:
            if not self._ready_locked():
                if self._closed:
                    return None
                self._cond.wait(timeout)
            out: list[Record] = []
            size = 0
            while self._ready_locked() and (not out or size < max_bytes):
                record = self._pop_locked()
                out.append(record)
                size += len(record.data)
            if not out and self._closed:
                return None
            return out

    @property
    def pending_bytes(self) -> int:
        with self._cond:
            return self._mem_bytes + self._write_at - self._read_at

    def wait_quiet(self, quiet: float, until: float, max_bytes: int) -> None:
        """Return once nothing was put for ``quiet`` seconds, ``max_bytes`` are waiting, the
        spool is closed, or the monotonic clock reaches ``until``. Checks on a timer rather
        than on every put: a job writing 8 KiB at a time must not wake us 1,000 times."""
        while True:
            now = time.monotonic()
            with self._cond:
                if self._closed or now - self.last_put >= quiet or now >= until:
                    return
                if self._mem_bytes + self._write_at - self._read_at >= max_bytes:
                    return
            self._timer.wait(min(quiet, until - now))

    def discard(self) -> None:
        """Drop everything buffered (publishing became impossible)."""
        with self._cond:
            self._mem.clear()
            self._mem_bytes = 0
            self._write_at = self._read_at = 0

    # -- internals; the caller holds the condition's lock -----------------------------------

    def _ready_locked(self) -> bool:
        return bool(self._mem) or self._read_at < self._write_at

    def _pop_locked(self) -> Record:
        if self._mem:  # memory holds the oldest records: spilling starts only when it is full
            record = self._mem.popleft()
            self._mem_bytes -= len(record.data)
            return record
        assert self._fd is not None
        kind, when, size = _HEADER.unpack(os.pread(self._fd, _HEADER.size, self._read_at))
        data = os.pread(self._fd, size, self._read_at + _HEADER.size)
        self._read_at += _HEADER.size + size
        if self._read_at == self._write_at:  # caught up: back to memory, and reuse the file
            self._read_at = self._write_at = 0
            os.ftruncate(self._fd, 0)
        return Record(kind, when, data)

    def _spill_locked(self, record: Record) -> None:
        if self._write_at + len(record.data) > self.file_limit:
            self.dropped_records += 1
            self.dropped_bytes += len(record.data)
            return
        if self._fd is None:
            self.spill_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, path = tempfile.mkstemp(prefix="run-spool-", dir=self.spill_dir)
            os.unlink(path)
            self._fd = fd
        blob = _HEADER.pack(record.kind, record.time, len(record.data)) + record.data
        os.pwrite(self._fd, blob, self._write_at)
        self._write_at += len(blob)
