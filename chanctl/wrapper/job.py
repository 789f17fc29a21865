"""What can be done to the running job, from any thread: signals, stop, stdin.

Every action goes to the job's whole process group (it has its own, see ``spawn``), so a job
that is a shell script with children is stopped, paused or signalled as a whole; through
``JobGroup``, which never signals a recycled pid (see ``jobgroup``). The main
thread owns the waiting and reaping; this object only acts and remembers what it promised:
``stop`` and ``kill`` are acknowledged once the job has exited (so ``send --wait stop`` returns
when the job is really gone), everything else as soon as it is done.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections.abc import Callable

from .._steering import Ack
from .commands import Command
from .spawn import Child

PostAck = Callable[[Ack], None]


class Job:
    def __init__(self, child: Child, post_ack: PostAck, stop_signal: int, stop_timeout: float):
        self.group = child.group
        self.post_ack = post_ack
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self.exited = threading.Event()
        self.kill_at: float | None = None  # monotonic deadline of the SIGKILL after a stop
        self._lock = threading.Lock()
        self._deferred: list[Ack] = []
        self.stdin = StdinWriter(child.stdin, post_ack)

    def obey(self, cmd: Command, offset: str) -> None:
        """Carry out one steering command (called by the steering thread)."""
        if cmd.verb in ("stop", "kill"):
            self.stop(signal.SIGKILL if cmd.verb == "kill" else None, Ack(offset, cmd.verb, True))
        elif cmd.verb == "stdin":
            self.stdin.send(cmd.payload + b"\n", offset)
        elif cmd.verb == "eof":
            self.stdin.send(None, offset)
        else:
            signum = {"pause": signal.SIGSTOP, "resume": signal.SIGCONT}.get(cmd.verb, cmd.signum)
            assert signum is not None
            ok = not self.exited.is_set() and self.group.signal(signum)
            detail = signal.Signals(signum).name if ok else "the job has already exited"
            self.post_ack(Ack(offset, cmd.verb, ok, detail))

    def stop(self, signum: int | None = None, ack: Ack | None = None) -> None:
        """Send the stop signal (or ``signum``) to the group and arm the SIGKILL deadline;
        ``ack`` is posted once the job has exited."""
        with self._lock:
            if ack is not None:
                if self.exited.is_set():
                    self.post_ack(Ack(ack.steer, ack.cmd, True, "the job had already exited"))
                    return
                self._deferred.append(ack)
            signum = self.stop_signal if signum is None else signum
            if signum != signal.SIGKILL and self.kill_at is None:
                self.kill_at = time.monotonic() + self.stop_timeout
        self.group.signal(signum)
        if signum != signal.SIGKILL:
            self.group.signal(signal.SIGCONT)  # a paused job must wake up to stop

    def forward(self, signum: int) -> None:
        """A signal the wrapper itself received, passed on exactly once."""
        self.group.signal(signum)

    def kill_if_due(self, now: float) -> None:
        if self.kill_at is not None and now >= self.kill_at:
            self.kill_at = None
            self.group.signal(signal.SIGKILL)

    def finished(self, status: str) -> None:
        """The job is gone: answer the stops and kills waiting for that."""
        with self._lock:
            self.exited.set()
            deferred, self._deferred = self._deferred, []
        for ack in deferred:
            self.post_ack(Ack(ack.steer, ack.cmd, True, status))
        self.stdin.close()


class StdinWriter(threading.Thread):
    """Feeds the job's stdin from its own thread: a job that does not read its stdin must
    not block the steering thread (and with it, ``stop``)."""

    def __init__(self, fd: int, post_ack: PostAck) -> None:
        super().__init__(name="chanctl-run-stdin", daemon=True)
        self.fd = fd
        self.post_ack = post_ack
        self.items: queue.Queue[tuple[bytes | None, str] | None] = queue.Queue()
        self.start()

    def send(self, data: bytes | None, offset: str) -> None:
        """Queue ``data`` for the job's stdin (None: close it)."""
        self.items.put((data, offset))

    def close(self) -> None:
        self.items.put(None)

    def run(self) -> None:
        open_ = True
        while (item := self.items.get()) is not None:
            data, offset = item
            verb = "eof" if data is None else "stdin"
            if not open_:
                self.post_ack(Ack(offset, verb, False, "the job's stdin is closed"))
                continue
            try:
                if data is None:
                    open_ = False
                    os.close(self.fd)
                else:
                    _write_all(self.fd, data)
                self.post_ack(Ack(offset, verb, True, f"{len(data or b'')} bytes"))
            except OSError as exc:
                open_ = False
                self.post_ack(Ack(offset, verb, False, f"the job's stdin: {exc.strerror}"))
        if open_:
            _close_quietly(self.fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
