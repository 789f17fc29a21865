"""The output pump of ``run``: drain the job's pipes as fast as it fills them.

This thread does as little as possible per read (one ``readv`` into a reused buffer, the echo
to the terminal, one ``Spool.put``), because a pipe the wrapper does not drain is a job that
blocks; and after a small read it waits ``COALESCE_S`` before it looks again, so a job writing
in small pieces is not interrupted for each one. Splitting lines and encoding happen on the
publisher thread. Both pipes are polled together, so a job that writes 50 MiB to stderr before
it touches stdout cannot deadlock us (W6). The pump ends when both pipes report end-of-file,
i.e. when the job *and every descendant holding them* are done writing.
"""

from __future__ import annotations

import os
import select
import threading
import time

from .spawn import Child
from .spool import STDERR, STDOUT, Spool

READ_BYTES = 1 << 20
COALESCE_BYTES = 64 << 10
COALESCE_S = 0.005


class Pump(threading.Thread):
    def __init__(self, child: Child, spool: Spool, echo: bool) -> None:
        super().__init__(name="chanctl-run-pump", daemon=True)
        self.spool = spool
        # pipe fd -> (spool kind, the wrapper's own fd to echo to, or -1)
        self.streams = {
            child.stdout: (STDOUT, 1 if echo else -1),
            child.stderr: (STDERR, 2 if echo else -1),
        }
        self.done = threading.Event()
        # Whether the last bytes echoed here left a line unfinished, so that what the wrapper
        # writes after the job (a CI fold marker) starts on a line of its own.
        self.line_open = False

    def run(self) -> None:
        try:
            self._drain()
        finally:
            self.done.set()

    def _drain(self) -> None:
        poller = select.poll()
        for fd in self.streams:
            poller.register(fd, select.POLLIN)
        buf = bytearray(READ_BYTES)
        open_fds = set(self.streams)
        while open_fds:
            got = 0
            for fd, _ in poller.poll():
                kind, echo = self.streams[fd]
                try:
                    n = os.readv(fd, [buf])
                except OSError:
                    n = 0
                if n == 0:  # end of this stream: tell the publisher, stop polling it
                    poller.unregister(fd)
                    open_fds.discard(fd)
                    os.close(fd)
                    self.spool.put(kind, b"")
                    continue
                data = bytes(buf[:n])
                if echo >= 0:
                    self.line_open = not data.endswith(b"\n")
                    if not _echo(echo, data):
                        self.streams[fd] = (kind, -1)
                self.spool.put(kind, data)
                got += n
            if 0 < got < COALESCE_BYTES:
                # A trickle: let the (1 MiB) pipe gather more before the next wake-up. A job
                # writing 8 KiB at a time otherwise wakes us for every write, and on a busy
                # machine each wake-up costs the job CPU time. What was read is already sent on.
                time.sleep(COALESCE_S)


def _echo(fd: int, data: bytes) -> bool:
    """Show the output on the wrapper's own stdout/stderr; False once that is gone (EPIPE)."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        return False
    return True
