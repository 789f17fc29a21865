"""Public names of the sync client's result types, importable without the client itself."""

from __future__ import annotations

from ._info import ChannelInfo, Published
from ._sync_read import Tail, TailOptions
from .protocol import Message
from .reading import Batch

__all__ = ["Batch", "ChannelInfo", "Message", "Published", "Tail", "TailOptions"]
