"""The local-disk engine: segmented, checksummed, group-committed logs.

Module map, one concern each: ``disk`` (the only file-I/O seam, plus failpoints), ``records``
(framing), ``segment`` (one segment file: sparse index, reads), ``tail`` (tail state and its
checkpoint), ``recovery`` (tail replay and truncation), ``staging`` (what ``submit`` does
synchronously, and its undo), ``writer`` (the blocking half of group commit), ``pipeline``
(the writer threads that pipeline it), ``channel_log`` (one channel: single writer, waiters,
retention), ``reader`` (reads across segments, quarantine), ``tailcache`` (the newest durable
records, for live readers), ``meta`` / ``layout`` (what lives where on disk), ``fdpool``,
``producers``, ``shared`` and ``engine`` (``LocalStore``, the ChannelStore implementation).
"""

from .engine import LocalStore

__all__ = ["LocalStore"]
