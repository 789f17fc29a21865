"""What every part of the NATS engine shares: the API, the record cache, the settings."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from ...config import NatsSettings
from .conn import Api
from .index import RecordCache

HEADROOM = 64 * 1024  # the record header and NATS framing, kept below the server's max_payload


@dataclass
class Shared:
    api: Api
    ns: NatsSettings
    cache: RecordCache = field(default_factory=RecordCache)
    on_commit: Callable[[str], None] = lambda name: None  # checkpoint scheduling hook
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _daemon: str = field(default_factory=lambda: os.urandom(8).hex())

    @property
    def max_record(self) -> int:
        """The largest record payload this NATS server accepts."""
        return max(self.api.nc.max_payload - HEADROOM, 1024)

    def new_rid(self) -> str:
        """A record id unique across daemons and restarts (random daemon id + counter)."""
        return f"{self._daemon}-{next(self._ids)}"
