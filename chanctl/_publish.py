"""The publishing pipeline behind ``Client.publish_many``.

Reading and encoding input is CPU work on the caller's thread; sending is mostly waiting for the
daemon's fsync. Overlapping the two on a sender thread (at most two batches queued) is what
lets ``seq 1000000 | chanctl pub x`` run at the daemon's batch rate rather than half of it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from . import _core as core
from . import protocol as p
from ._info import Published

if TYPE_CHECKING:
    from .client import Client

_Item = tuple[bytes, int] | None


class Pipeline:
    """One ``publish_many`` call; the caller holds the client's lock for its whole run."""

    def __init__(
        self,
        client: Client,
        channel: str,
        type_: str,
        headers: Mapping[str, str] | None,
        lane: str = p.LANE_OUTPUT,
    ) -> None:
        self.client = client
        self.channel = channel
        self.lane = lane
        self.type = type_
        self.headers = headers
        self.count = 0
        self.next_offset = ""
        self._error: BaseException | None = None

    def run(self, items: Iterable[str | bytes | core.Flush]) -> Published:
        if isinstance(items, (list, tuple)):  # known and finite: no thread needed
            for body, n in core.encode_bodies(items, self.type, self.headers, _never):
                self._send(body, n)
        else:
            self._run_threaded(items)
        return Published(self.channel, self.count, self.next_offset)

    def _run_threaded(self, items: Iterable[str | bytes | core.Flush]) -> None:
        jobs: queue.Queue[_Item] = queue.Queue(maxsize=2)
        sender = threading.Thread(target=self._sender, args=(jobs,), daemon=True)
        sender.start()
        try:
            # The sender is idle when nothing is queued or in flight: then cut a batch at once.
            idle = lambda: jobs.unfinished_tasks == 0  # noqa: E731
            for job in core.encode_bodies(items, self.type, self.headers, idle):
                if self._error is not None:
                    break
                jobs.put(job)
        finally:
            jobs.put(None)
            sender.join()
        if self._error is not None:
            raise self._error

    def _sender(self, jobs: queue.Queue[_Item]) -> None:
        """Send queued bodies in order; after a failure keep draining so the encoder never
        blocks on a full queue, and let ``run`` re-raise the error."""
        while (job := jobs.get()) is not None:
            try:
                if self._error is None:
                    self._send(*job)
            except BaseException as exc:  # handed to the caller's thread
                self._error = exc
            finally:
                jobs.task_done()

    def _send(self, body: bytes, count: int) -> None:
        resp = self.client.append_body_locked(self.channel, body, count, self.lane)
        self.count += count
        self.next_offset = resp.header("Stream-Next-Offset") or self.next_offset


def _never() -> bool:
    return False
