"""``Client.fsck``: verify channels on the running daemon, a few per request.

Small batches keep every request short (a channel of a gigabyte takes the daemon seconds) and
let a caller show progress; the daemon does the checking (``daemon/http/fsck.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from . import _core as core
from . import errors as ce
from . import protocol as p

if TYPE_CHECKING:
    from .client import Client

BATCH = 16


def check_online(
    client: Client, channels: Iterable[str] | None, on_progress: Callable[[int, int], None] | None
) -> Iterator[p.FsckResult]:
    known = _all_names(client)  # asked even for named channels: tells an older daemon apart
    names = known if channels is None else list(dict.fromkeys(channels))
    for i in range(0, len(names), BATCH):
        if on_progress is not None:
            on_progress(i, len(names))
        yield from _check(client, names[i : i + BATCH])
    if on_progress is not None:
        on_progress(len(names), len(names))


def _all_names(client: Client) -> list[str]:
    with client._lock:
        resp = client._send_locked(core.Request("GET", p.FSCK_PATH))
    if resp.status in (404, 405):
        raise ce.RequestFailed(
            "the running daemon predates online fsck",
            hint="restart it with `chanctl daemon stop` (the next command starts the new one), "
            "or check its files offline after stopping it: `chanctl fsck --data-dir DIR`",
        )
    core.check(resp, "", "list channels to check")
    doc = json.loads(resp.body or b"{}")
    names = doc.get("channels") if isinstance(doc, dict) else None
    if not isinstance(names, list):
        raise ce.RequestFailed("the daemon sent no channel list for fsck")
    return [str(n) for n in names]


def _check(client: Client, names: list[str]) -> list[p.FsckResult]:
    body = json.dumps({"channels": names}).encode()
    req = core.Request("POST", p.FSCK_PATH, {"Content-Type": "application/json"}, body)
    with client._lock:
        resp = client._send_locked(req, timeout=None)  # a big channel takes a while
    if resp.status == 404:
        name = core._error_detail(resp)  # the daemon names the missing channel
        raise ce.ChannelNotFound(f"no channel named {name!r}", hint="`chanctl ls` lists channels")
    core.check(resp, "", "check channels")
    try:
        results = json.loads(resp.body)["results"]
        return [p.FsckResult.from_json(r) for r in results]
    except (ValueError, KeyError, TypeError) as exc:
        raise ce.RequestFailed(f"the daemon sent a malformed fsck answer: {exc}") from None
