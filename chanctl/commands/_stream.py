"""The render loop `tail` and `replay` share: batches in, rendered lines out."""

from __future__ import annotations

import sys

from ..errors import ChanctlError
from ..reading import Batch
from ..render import Renderer, choose_mode
from ..sync_types import Tail
from ._common import streaming_output


def pump(stream: Tail, *, json_out: bool, raw: bool, timestamps: bool, marker: bool) -> None:
    """Render every batch of ``stream``; a Ctrl-C still saves the cursor, then exits 130."""
    renderer = Renderer(choose_mode(json_out, raw, sys.stdout.buffer), timestamps=timestamps)
    marker = marker and sys.stderr.isatty()
    printed: Batch | None = None
    with streaming_output():
        try:
            for batch in stream.batches():
                renderer.write(batch)
                # Buffered bytes still reach stdout at exit, so the batch counts as printed
                # before the flush that a Ctrl-C may interrupt.
                printed = batch
                renderer.flush()
                if marker and batch.up_to_date:
                    renderer.live_marker()
        except KeyboardInterrupt:
            try:
                stream.commit(printed)
            except ChanctlError:
                pass  # the daemon is gone too; the cursor keeps its last saved value
            raise
