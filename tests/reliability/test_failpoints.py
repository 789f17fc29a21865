"""C7 and C9 of reliability.md: crashes at exact steps of the append and close paths.

Guards against an idempotent retry duplicating a batch whose fsync finished just before the
crash, a fenced (zombie) producer getting back in after a restart, and a close that survives a
crash without its final message (or a final message that survives as half of a close).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .daemonproc import DaemonProc, request
from .test_kill9 import JSON, read_all


def _post(
    d: DaemonProc, name: str, msgs: list[str], extra: dict[str, str] | None = None
) -> tuple[int, dict[str, str]]:
    status, headers, _ = request(
        str(d.sock),
        "POST",
        f"/v1/stream/{name}",
        json.dumps(msgs).encode(),
        {**JSON, **(extra or {})},
    )
    return status, headers


def _producer(pid: str, epoch: int, seq: int) -> dict[str, str]:
    return {"Producer-Id": pid, "Producer-Epoch": str(epoch), "Producer-Seq": str(seq)}


def _daemon(tmp_path: Path) -> DaemonProc:
    return DaemonProc(tmp_path / "data", tmp_path / "s.sock", tmp_path / "daemon.log")


def _crash_on_next(d: DaemonProc, failpoint: str) -> None:
    """Restart the daemon armed to panic (exit 137) the first time ``failpoint`` is reached."""
    assert d.stop() == 0
    d.start(env={"CHANCTL_FAILPOINTS": f"{failpoint}=panic@1"})


def test_c7_idempotent_producer_across_crash(tmp_path: Path) -> None:
    d = _daemon(tmp_path)
    d.start()
    request(str(d.sock), "PUT", "/v1/stream/c7", headers=JSON)
    for seq in range(2):
        assert _post(d, "c7", [f"m{seq}"], _producer("p", 0, seq))[0] == 200
    _crash_on_next(d, "append.after_fsync_before_ack")
    with pytest.raises(OSError):
        _post(d, "c7", ["m2"], _producer("p", 0, 2))
    assert d.wait_exit() == 137
    d.start()
    status, headers = _post(d, "c7", ["m2"], _producer("p", 0, 2))
    assert (status, headers["producer-seq"]) == (204, "2")
    assert read_all(d, "c7") == ["m0", "m1", "m2"]
    assert _post(d, "c7", ["e1"], _producer("p", 1, 0))[0] == 200
    d.stop()
    d.start()  # fencing must hold across a restart too
    status, headers = _post(d, "c7", ["zombie"], _producer("p", 0, 3))
    assert (status, headers["producer-epoch"]) == (403, "1")
    assert read_all(d, "c7") == ["m0", "m1", "m2", "e1"]
    assert d.stop() == 0


CLOSE_PATH = [
    "append.before_write",
    "append.after_write",
    "append.before_fsync",
    "close.before_fsync",
    "append.after_fsync_before_ack",
]


@pytest.mark.parametrize("failpoint", CLOSE_PATH)
def test_c9_close_is_atomic_with_its_final_append(tmp_path: Path, failpoint: str) -> None:
    d = _daemon(tmp_path)
    d.start()
    request(str(d.sock), "PUT", "/v1/stream/c9", headers=JSON)
    assert _post(d, "c9", ["first"], _producer("p", 0, 0))[0] == 200
    _crash_on_next(d, failpoint)
    closing = {**_producer("p", 0, 1), "Stream-Closed": "true"}
    with pytest.raises(OSError):
        _post(d, "c9", ["final"], closing)
    assert d.wait_exit() == 137, f"failpoint {failpoint} was never reached"
    d.start()
    log = read_all(d, "c9")
    _, head, _ = request(str(d.sock), "HEAD", "/v1/stream/c9")
    closed = head.get("stream-closed") == "true"
    assert (closed, log) in ((False, ["first"]), (True, ["first", "final"])), failpoint
    if failpoint == "append.after_fsync_before_ack":
        assert closed, "the close was durable before the crash"
    # The producer retries its close; afterwards the channel is closed exactly once.
    status, headers = _post(d, "c9", ["final"], closing)
    assert status == (204 if closed else 200)
    assert headers["stream-closed"] == "true"
    assert read_all(d, "c9") == ["first", "final"]
    status, headers = _post(d, "c9", ["late"])
    assert (status, headers["stream-closed"]) == (409, "true")
    assert d.stop() == 0
