"""The durable transport of ``run``: spool in, idempotent appends out, exactly once.

One thread takes what the job wrote (and the wrapper's own messages) from the spool, encodes
it and appends it to the output lane in bodies of up to ~1 MiB. Every body is sent with the
run's producer tuple (``RUN_PRODUCER_ID``, the epoch the daemon gave this run, the next
sequence) and, if the daemon goes away, re-sent with *the same tuple* until it answers: the
daemon's idempotent-producer check makes a body that did arrive before the failure count once.
Meanwhile the spool absorbs the job's output, so the job never waits.

While the job writes in a burst, the publisher holds its output back for a moment (until the
job pauses for ``HOLD_QUIET`` seconds, ``HOLD_BYTES`` are waiting, or the oldest line has
waited ``HOLD_MAX``): encoding and the daemon's parsing would otherwise compete with the job
for the CPU while it runs (issue 4: a job printing 200,000 lines must not be slowed down by
more than half). Less than ``HOLD_MIN`` bytes (a line now and then, an ack) is never held.

A 403 on the epoch means a newer run took the channel over (``--takeover``): this run is
fenced, stops publishing and says so. Any other refusal also stops publishing; the run then
exits 125 once its job has finished.
"""

from __future__ import annotations

import math
import threading
import time

from .. import _core as core
from .. import errors as ce
from .. import protocol as p
from ..client import Client
from ..transport import Transport
from .lines import PARTIAL_DELAY, LineSplitter
from .spool import EVENT, STDERR, STDOUT, Record, Spool

TAKE_BYTES = 1 << 20
HOLD_QUIET = 0.01
HOLD_MAX = 0.25
HOLD_BYTES = 4 << 20
HOLD_MIN = 4096


class Publisher(threading.Thread):
    def __init__(self, client: Client, channel: str, epoch: int, spool: Spool) -> None:
        super().__init__(name="chanctl-run-publisher", daemon=True)
        self.client = client
        self.channel = channel
        self.spool = spool
        self.producer = core.Producer(p.RUN_PRODUCER_ID, epoch)
        self.transport = Transport(client.endpoint)
        self.splitters = {STDOUT: LineSplitter(p.TYPE_STDOUT), STDERR: LineSplitter(p.TYPE_STDERR)}
        self.close_channel = True
        self.sent_messages = 0
        self.error: ce.ChanctlError | None = None  # why publishing stopped, if it did
        self.fenced = False
        self._give_up_at = math.inf

    def post(self, type_: str, data: str | bytes, headers: dict[str, str] | None = None) -> None:
        """Queue one message of the wrapper's own (start, ack, exit), in order with the output."""
        text = p.encode_message(type_, data, time.time(), headers)
        self.spool.put(EVENT, text.encode())

    def finish(self, timeout: float) -> bool:
        """After the spool is closed: wait for everything to be sent (and the channel closed),
        for up to ``timeout`` seconds of the daemon being unreachable. True if all arrived."""
        self._give_up_at = time.monotonic() + timeout
        self.join()
        return self.error is None

    def run(self) -> None:
        try:
            self._pump()
            if self.close_channel and self.error is None:
                self._deliver(None)
        except ce.ChanctlError as exc:
            self._stop_publishing(exc)
        except Exception as exc:  # a bug must not take the job down with it
            self._stop_publishing(ce.ChanctlError(f"publishing failed: {exc!r}"))

    def _pump(self) -> None:
        while True:
            wait = self._partial_wait()
            records = self.spool.take(TAKE_BYTES, wait)
            if records is None:
                out: list[str] = []
                for splitter in self.splitters.values():
                    splitter.flush(out)
                self._send(out)
                return
            if sum(len(r.data) for r in records) >= HOLD_MIN:  # a burst, not a line or an ack
                records += self._more_after_burst()
            self._send(self._encode(records))

    def _more_after_burst(self) -> list[Record]:
        """Hold back while the job is mid-burst, then take what it wrote meanwhile."""
        self.spool.wait_quiet(HOLD_QUIET, time.monotonic() + HOLD_MAX, HOLD_BYTES)
        more: list[Record] = []
        size = 0
        while size < HOLD_BYTES and self.spool.pending_bytes:
            taken = self.spool.take(TAKE_BYTES, 0)
            if not taken:
                break
            more += taken
            size += sum(len(r.data) for r in taken)
        return more

    def _partial_wait(self) -> float | None:
        """How long until an unfinished line is due to be flushed (None: nothing pending)."""
        due = [s.carry_time + PARTIAL_DELAY for s in self.splitters.values() if s.carry]
        return max(0.0, min(due) - time.time()) if due else None

    def _encode(self, records: list[Record]) -> list[str]:
        out: list[str] = []
        for record in records:
            if record.kind == EVENT:
                out.append(record.data.decode())
                continue
            splitter = self.splitters[record.kind]
            if record.data:
                splitter.feed(record.data, record.time, out)
            else:
                splitter.flush(out)  # the stream ended
        if not self.spool.pending_bytes:  # only when caught up: a backlog is not "quiet"
            now = time.time()
            for splitter in self.splitters.values():
                if splitter.carry and now - splitter.carry_time >= PARTIAL_DELAY:
                    splitter.flush(out)
        return out

    def _send(self, messages: list[str]) -> None:
        if self.error is not None:
            return
        for body, count in _bodies(messages):
            self._deliver(body)
            self.sent_messages += count

    def _deliver(self, body: bytes | None) -> None:
        """Append ``body`` (None: close the channel) until the daemon has it, exactly once."""
        if body is None:
            req = core.close_request(self.channel)
        else:
            req = core.append_request(self.channel, body, self.producer.take(self.channel))
        while True:
            try:
                resp = self.client.send_via(self.transport, req)
            except ce.ConnectionLost:
                if time.monotonic() >= self._give_up_at:
                    raise
                continue  # the daemon is away: the spool holds the job's output meanwhile
            if resp.status == 404 and body is not None:  # deleted mid-run: make it again
                created = self.client.send_via(self.transport, core.create_request(self.channel))
                core.check(created, self.channel, "create")
                continue
            if resp.status == 403 and resp.header(p.H_PRODUCER_EPOCH) is not None:
                self.fenced = True  # a newer run took over (--takeover)
            core.check(resp, self.channel, "publish to")
            return

    def _stop_publishing(self, exc: ce.ChanctlError) -> None:
        self.error = exc
        while self.spool.take(TAKE_BYTES, None) is not None:
            pass  # keep draining so memory stays bounded until the run ends


def _bodies(messages: list[str]) -> list[tuple[bytes, int]]:
    """JSON-array bodies of at most ``BATCH_BYTES``, in order."""
    out: list[tuple[bytes, int]] = []
    parts: list[str] = []
    size = 2
    for text in messages:
        n = len(text) if text.isascii() else len(text.encode())
        if parts and size + n + 1 > core.BATCH_BYTES:
            out.append((("[" + ",".join(parts) + "]").encode(), len(parts)))
            parts, size = [], 2
        parts.append(text)
        size += n + 1
    if parts:
        out.append((("[" + ",".join(parts) + "]").encode(), len(parts)))
    return out
