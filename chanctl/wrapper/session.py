"""A run's standing with the daemon: attach as the channel's producer, heartbeat, detach.

Attaching (``PUT /v1/producer/NAME``) is refused while another run's heartbeats are fresh,
unless ``--takeover``; it returns this run's producer epoch, which fences every older run.
Heartbeats repeat the claim every ``interval`` seconds; the daemon reports the producer
``lost`` once three have been missed, so a wrapper killed with SIGKILL is noticed within
``3 * interval`` seconds. A heartbeat that finds the daemon away is simply skipped.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable

from .. import _core as core
from .. import errors as ce
from .. import protocol as p
from ..client import Client
from ..transport import Transport

Warn = Callable[[str], None]
MISSED_BEATS = 3


class Session(threading.Thread):
    def __init__(
        self, client: Client, channel: str, run_id: str, interval: float, warn: Warn
    ) -> None:
        super().__init__(name="chanctl-run-heartbeat", daemon=True)
        self.client = client
        self.channel = channel
        self.run_id = run_id
        self.interval = interval
        self.warn = warn
        self.epoch = 0
        self.fenced = False
        self.transport = Transport(client.endpoint, timeout=max(1.0, interval))
        self._halt = threading.Event()

    def claim(self, takeover: bool = False, epoch: int | None = None) -> dict[str, object]:
        body: dict[str, object] = {
            "run_id": self.run_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "ttl": MISSED_BEATS * self.interval,
            "takeover": takeover,
        }
        if epoch is not None:
            body["epoch"] = epoch
        return body

    def attach(self, takeover: bool) -> int:
        """Become the channel's producer; returns this run's epoch."""
        req = core.producer_request("PUT", self.channel, self.claim(takeover))
        resp = self.client.send_via(self.transport, req)
        doc = _json(resp.body)
        if resp.status == 409 and isinstance(doc.get("producer"), dict):
            raise ce.ProducerBusy(
                f"channel {self.channel!r} already has a live producer: {_who(doc['producer'])}",
                hint=f"stop it (`chanctl send {self.channel} stop`) or add --takeover",
            )
        core.check(resp, self.channel, "attach to")
        epoch = doc.get("epoch")
        if not isinstance(epoch, int):
            raise ce.RequestFailed(f"attaching to {self.channel!r}: the daemon gave no epoch")
        self.epoch = epoch
        return epoch

    def run(self) -> None:
        while not self._halt.wait(self.interval):  # a timer, not a poll
            req = core.producer_request("PUT", self.channel, self.claim(epoch=self.epoch))
            try:
                resp = self.client.send_via(self.transport, req, timeout=self.interval)
            except (ce.ChanctlError, TimeoutError):
                continue  # the daemon is away; the next beat tries again
            if resp.status == 409 and _json(resp.body).get("fenced"):
                self.fenced = True
                self.warn("another run has taken over this channel (--takeover)")
                return

    def detach(self, exit_status: int | None) -> None:
        """Say the run is over (best effort: the daemon would call it lost anyway)."""
        self._halt.set()
        query = {"run_id": self.run_id}
        if exit_status is not None:
            query["exit_status"] = str(exit_status)
        req = core.producer_request("DELETE", self.channel, None, **query)
        try:
            self.client.send_via(self.transport, req)
        except ce.ChanctlError:
            pass


def _json(body: bytes) -> dict[str, object]:
    try:
        doc = p.loads_json(body or b"{}", unique_keys=False)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _who(doc: object) -> str:
    if not isinstance(doc, dict):
        return "unknown"
    since = doc.get("since")
    when = time.strftime("%H:%M:%S", time.localtime(since)) if isinstance(since, float) else "?"
    return f"pid {doc.get('pid')} on {doc.get('host')}, since {when}"
