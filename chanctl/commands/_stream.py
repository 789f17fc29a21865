"""The render loop `tail` and `replay` share: batches in, rendered lines out."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from types import FrameType

from ..errors import ChanctlError
from ..reading import Batch
from ..render import Renderer, choose_mode
from ..sync_types import Tail
from ._common import streaming_output


class _CtrlC:
    """Ctrl-C interrupts at once, except between writing a batch and noting it as printed.

    That one step decides what `--cursor` saves on Ctrl-C: interrupted there, the cursor would
    point before lines the user already saw. A second Ctrl-C still interrupts immediately
    (e.g. when a stalled pipe blocks the write).
    """

    def __init__(self) -> None:
        self.critical = False
        self.pending = False

    def handler(self, signum: int, frame: FrameType | None) -> None:
        if self.critical and not self.pending:
            self.pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self.critical = True
        try:
            yield
        finally:
            self.critical = False
        if self.pending:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = signal.signal(signal.SIGINT, self.handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def pump(stream: Tail, *, json_out: bool, raw: bool, timestamps: bool, marker: bool) -> None:
    """Render every batch of ``stream``; a Ctrl-C still saves the cursor, then exits 130."""
    renderer = Renderer(choose_mode(json_out, raw, sys.stdout.buffer), timestamps=timestamps)
    marker = marker and sys.stderr.isatty()
    ctrl_c = _CtrlC()
    printed: Batch | None = None
    with streaming_output(), ctrl_c.installed():
        try:
            for batch in stream.batches():
                with ctrl_c.deferred():
                    renderer.write(batch)
                    renderer.flush()
                    printed = batch
                if marker and batch.up_to_date:
                    renderer.live_marker()
        except KeyboardInterrupt:
            try:
                stream.commit(printed)
            except ChanctlError:
                pass  # the daemon is gone too; the cursor keeps its last saved value
            raise
