"""B4 of reliability.md against the real daemon and the local-disk engine.

Guards against a channel name reaching outside the data directory (traversal, encodings,
control characters), an attacker-placed symlink inside the data directory being followed, and
two distinct names sharing storage (case variants, NFC/NFD).
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.parse
from pathlib import Path

from .daemonproc import DaemonProc, request

JSON = {"Content-Type": "application/json"}
CORPUS = [
    "../../etc/passwd",
    "..%2f..%2f",
    "%2e%2e",
    "/etc",
    "a/../../b",
    "a\x00b",
    "\\..\\",
    ".",
    "..",
    "CON",
    "trailing.",
    "trailing ",
    "x" * 4096,
    "ctl\x1b[2J",
    "caf\u00e9",
    "cafe\u0301",
    "\u202eevil",
    "a//b",
    "a/./b",
]
ACCEPTED_DISTINCT = ["Ab", "aB", "CON", "trailing.", "a/b", "a_b", "a-b", "a.b", "a:b"]


def _snapshot(root: Path, skip: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` except the data directory itself."""
    out: dict[str, str] = {}
    for dirpath, dirnames, files in os.walk(root):
        if Path(dirpath) == skip:
            dirnames.clear()
            continue
        for f in files:
            p = Path(dirpath, f)
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "?"
    return out


def test_b4_traversal_corpus_never_leaves_the_data_dir(tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"
    (sandbox / "etc").mkdir(parents=True)
    (sandbox / "etc" / "passwd").write_text("root:x:0:0\n")
    data = sandbox / "data"
    d = DaemonProc(data, tmp_path / "s.sock", tmp_path / "daemon.log")
    d.start()
    before = _snapshot(sandbox, data)
    for name in CORPUS:
        target = "/v1/stream/" + urllib.parse.quote(name, safe="/%")
        for method in ("PUT", "POST", "GET", "DELETE"):
            body = b'["x"]' if method in ("PUT", "POST") else None
            status, _, resp = request(str(d.sock), method, target, body, JSON)
            assert status in (400, 404, 201, 200, 204), (name, method, status)
            if status == 400:
                assert json.loads(resp)["error"], name
    assert _snapshot(sandbox, data) == before
    for p in data.rglob("*"):
        assert p.resolve().is_relative_to(data.resolve()), p
    assert d.stop() == 0


def test_b4_distinct_names_never_share_storage(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path / "data", tmp_path / "s.sock", tmp_path / "daemon.log")
    d.start()
    for name in ACCEPTED_DISTINCT:
        status, _, _ = request(
            str(d.sock), "PUT", f"/v1/stream/{name}", json.dumps([name]).encode(), JSON
        )
        assert status == 201, name
    d.stop()
    d.start()  # read back from disk, not from memory
    for name in ACCEPTED_DISTINCT:
        status, _, body = request(str(d.sock), "GET", f"/v1/stream/{name}?offset=-1")
        assert (status, json.loads(body)) == (200, [name])
    channel_dirs = [p for p in (tmp_path / "data").rglob("meta.json")]
    assert len(channel_dirs) == len(ACCEPTED_DISTINCT)
    assert d.stop() == 0


def test_b4_planted_symlink_is_not_followed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    d = DaemonProc(data, tmp_path / "s.sock", tmp_path / "daemon.log")
    d.start()
    request(str(d.sock), "PUT", "/v1/stream/victim", b'["v"]', JSON)
    d.stop()
    outside = tmp_path / "outside.log"
    outside.write_bytes(b"do not touch")
    segment = next((data).rglob("*.log"))
    segment.unlink()
    segment.symlink_to(outside)
    d.start()
    status, _, _ = request(str(d.sock), "POST", "/v1/stream/victim", b'["w"]', JSON)
    assert status >= 400, "a symlinked segment must be refused, not written through"
    assert outside.read_bytes() == b"do not touch"
    status, _, _ = request(str(d.sock), "PUT", "/v1/stream/other", b'["o"]', JSON)
    assert status == 201, "other channels are unaffected"
    assert d.stop() == 0
