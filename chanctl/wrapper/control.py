"""The steering thread of ``run``: follow the control lane, obey, acknowledge, remember.

It reads the control lane from the channel's producer position (the ``producer`` cursor of the
control lane, kept by the daemon), so a message sent before this run started is obeyed now, and
one an earlier run already handled is not obeyed again (S5). After each message it moves that
position past it, durably. Once the job has exited it stops handling (``close``): a message that
arrives later is left for the next run, which is what "sent while no producer runs" means.

The read is a long-poll that the daemon answers the moment a message is durable, and it
reconnects by itself, from its offset, when the daemon restarts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .. import errors as ce
from .. import protocol as p
from .._steering import Ack
from ..client import Client
from . import commands
from .job import Job

Warn = Callable[[str], None]


class Steering(threading.Thread):
    def __init__(
        self, client: Client, channel: str, start: str, run_id: str, job: Job, warn: Warn
    ) -> None:
        super().__init__(name="chanctl-run-steering", daemon=True)
        self.client = client
        self.channel = channel
        self.start_offset = start
        self.run_id = run_id
        self.job = job
        self.warn = warn
        self._closed = threading.Event()
        self._busy = threading.Lock()  # held while a message is handled
        self._saving = threading.Lock()  # held while the position after it is saved

    def close(self, save_timeout: float = 5.0) -> None:
        """Stop handling messages. Waits for one being handled right now, and (a bounded
        time) for its position to be saved: a `stop` that ended the job must be on record as
        handled, or the next run would obey it again."""
        self._closed.set()
        with self._busy:
            pass
        if self._saving.acquire(timeout=save_timeout):
            self._saving.release()

    def run(self) -> None:
        try:
            for msg in self.client.recv(self.channel, follow=True, start=self.start_offset):
                with self._busy:
                    if self._closed.is_set():
                        return
                    self._handle(msg)
                    self._saving.acquire()
                try:
                    self.client.set_cursor(
                        self.channel, p.PRODUCER_CURSOR, msg.next_offset, p.LANE_CONTROL
                    )
                finally:
                    self._saving.release()
        except ce.ChanctlError as exc:
            if not self._closed.is_set():
                self.warn(f"steering stopped: {exc.message}")

    def _handle(self, msg: p.Message) -> None:
        try:
            cmd = commands.parse(msg, self.run_id)
        except commands.Malformed as exc:
            # B6: one warning, an answer for `send --wait`, and nothing else happens.
            self.warn(f"ignoring steering message {msg.seq}: {exc}")
            self.job.post_ack(Ack(msg.offset, "", False, str(exc)))
            return
        if cmd is not None:
            self.job.obey(cmd, msg.offset)
