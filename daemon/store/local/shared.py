"""What every channel log of one store shares: the I/O seam, the fd pool, threads and knobs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .disk import Disk
from .fdpool import FdPool
from .pipeline import WriterPool
from .tailcache import TailBudget

T = TypeVar("T")


@dataclass
class Shared:
    """What every channel log of one store shares: I/O seam, fd pool, threads, knobs. The
    executor runs reads and metadata I/O; appends go through the writer threads."""

    disk: Disk
    pool: FdPool
    executor: ThreadPoolExecutor
    segment_bytes: int
    max_record: int
    mode: str  # always | interval | never
    interval_s: float
    producer_cap: int
    writers: WriterPool = field(default_factory=WriterPool)  # group commit (pipeline.py)
    tail_budget: TailBudget = field(default_factory=TailBudget)  # tailcache.py

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking file I/O in the store's threads, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
