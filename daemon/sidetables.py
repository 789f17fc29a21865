"""Side tables: small mutable JSON documents kept beside the channels (cursors, run producers).

They are not channels: a cursor save or a producer heartbeat would otherwise grow a log and show
up in ``chanctl ls``. Two engines, chosen by the store kind (``server.open_side_tables``):

* ``JsonFileTable``: one JSON file ``{key: doc}`` in the data directory, rewritten atomically
  (tmp, fsync, rename, fsync dir), concurrent changes coalesced into one write. The local and
  memory stores use it; it is what ``cursors.json`` and ``producers.json`` always were.
* ``store.nats.sidetable.KvTable``: one key per document in a JetStream KV bucket of the
  namespace, so every daemon of the cluster shares them (``shared``); changes made through
  other daemons arrive through ``on_change``.

The users (``http.cursors.CursorBook``, ``liveness.Registry``) keep every document in memory:
``snapshot`` at start, then they write through ``put``/``delete``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("chanctl.daemon.sidetables")

Doc = dict[str, Any]
ChangeHook = Callable[[str, "Doc | None"], None]  # key, new doc (None: deleted)

CURSORS_FILE = "cursors.json"
PRODUCERS_FILE = "producers.json"


class SideTable(Protocol):
    """JSON documents by key. ``get``/``snapshot`` read what this daemon knows, at once."""

    shared: bool  # other daemons write it too: their changes arrive through ``on_change``
    on_change: ChangeHook

    def get(self, key: str) -> Doc | None: ...

    def snapshot(self) -> dict[str, Doc]: ...

    async def put(self, key: str, doc: Doc) -> None: ...

    async def delete(self, key: str) -> None: ...


@dataclass
class SideTables:
    cursors: SideTable
    producers: SideTable


def local_tables(data_dir: Path) -> SideTables:
    """The file-backed tables of one daemon's data directory."""
    return SideTables(
        JsonFileTable(data_dir / CURSORS_FILE), JsonFileTable(data_dir / PRODUCERS_FILE)
    )


class JsonFileTable:
    """Every document in memory, persisted to one file with group commit."""

    shared = False

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.on_change: ChangeHook = lambda key, doc: None  # never called: nobody else writes
        self._data: dict[str, Doc] = {}
        self._version = 0
        self._written = 0
        self._lock = asyncio.Lock()
        self._load()

    def _load(self) -> None:
        """Read the file if it exists; a damaged file is set aside, never fatal."""
        if self.path is None:
            return
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.error("setting aside unreadable %s: %s", self.path, exc)
            self.path.replace(self.path.with_suffix(f".corrupt-{int(time.time())}"))
            return
        if isinstance(doc, dict):
            self._data = {k: v for k, v in doc.items() if isinstance(v, dict)}

    def get(self, key: str) -> Doc | None:
        return self._data.get(key)

    def snapshot(self) -> dict[str, Doc]:
        return dict(self._data)

    async def put(self, key: str, doc: Doc) -> None:
        self._data[key] = doc
        await self._persist()

    async def delete(self, key: str) -> None:
        if self._data.pop(key, None) is not None:
            await self._persist()

    async def _persist(self) -> None:
        """Return once a write that includes every change made so far is on disk."""
        if self.path is None:
            return
        self._version += 1
        wanted = self._version
        async with self._lock:
            if self._written >= wanted:
                return  # a write started after our change already covered it
            version, text = self._version, json.dumps(self._data, separators=(",", ":"))
            await asyncio.get_running_loop().run_in_executor(None, write_atomic, self.path, text)
            self._written = version


def write_atomic(path: Path, text: str) -> None:
    """tmp, fsync, rename, fsync(dir): the file is always either the old or the new version."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
