"""The parts of the `run` wrapper that need no processes: output framing (any bytes, cut
anywhere, replay exactly), the spool (order across the spill file, counted drops) and the
steering schema (B6: what is malformed). Property tests where the input space is bytes."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chanctl import protocol as p
from chanctl.wrapper import commands
from chanctl.wrapper.lines import MAX_PIECE, LineSplitter
from chanctl.wrapper.spool import EVENT, STDOUT, Spool


def _replay(chunks: list[bytes]) -> bytes:
    """Frame ``chunks`` like the publisher, then print them like `replay --raw`."""
    splitter, out = LineSplitter(p.TYPE_STDOUT), []
    for chunk in chunks:
        splitter.feed(chunk, 1_700_000_000.0, out)
    splitter.flush(out)
    msgs = [p.Message.from_wire("c", i, json.loads(text)) for i, text in enumerate(out)]
    assert all(len(m.data) <= MAX_PIECE for m in msgs)
    return b"".join(m.data + (b"" if (m.headers or {}).get("partial") else b"\n") for m in msgs)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=12))
def test_any_bytes_cut_anywhere_replay_exactly(chunks: list[bytes]) -> None:
    assert _replay(chunks) == b"".join(chunks)


def test_long_lines_split_at_character_boundaries() -> None:
    text = ("é" * MAX_PIECE).encode() + b"\nshort\n"
    splitter, out = LineSplitter(p.TYPE_STDERR), []
    splitter.feed(text, 0.0, out)
    values = [json.loads(t) for t in out]
    assert all("data" in v for v in values), "pieces of text stay text (no base64)"
    assert [v.get("headers") for v in values[-2:]] == [None, None]
    assert _replay([text]) == text


def test_spool_keeps_order_across_the_spill_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path, mem_limit=100, file_limit=10_000)
    sent = [bytes([i]) * 30 for i in range(40)]
    taken: list[bytes] = []

    def reader() -> None:
        while (records := spool.take(64, 5.0)) is not None:
            taken.extend(r.data for r in records)

    thread = threading.Thread(target=reader)
    thread.start()
    for data in sent:
        spool.put(STDOUT, data)
    spool.put(EVENT, b"last")
    spool.close()
    thread.join(10)
    assert taken == [*sent, b"last"]
    assert list(tmp_path.iterdir()) == [], "the spill file is unlinked at once"


def test_spool_counts_what_it_drops(tmp_path: Path) -> None:
    spool = Spool(tmp_path, mem_limit=10, file_limit=100)
    for _ in range(10):
        spool.put(STDOUT, b"x" * 40)
    assert (spool.dropped_records, spool.dropped_bytes) == (8, 320)
    spool.close()
    kept = []
    while (records := spool.take(1000, 0)) is not None:
        kept += records
    assert len(kept) == 2


def _steer(data: str, **headers: str) -> p.Message:
    return p.Message("c", 0, "", p.TYPE_STEER, data, None, headers or None)


@pytest.mark.parametrize(
    ("data", "want"),
    [
        ("stop", commands.Command("stop")),
        ("kill\n", commands.Command("kill")),
        ("signal USR1", commands.Command("signal", signum=signal.SIGUSR1)),
        ("signal sighup", commands.Command("signal", signum=signal.SIGHUP)),
        ("signal 15", commands.Command("signal", signum=signal.SIGTERM)),
        ("stdin a b  c", commands.Command("stdin", payload=b"a b  c")),
        ("stdin ", commands.Command("stdin", payload=b"")),
        ('{"cmd": "signal", "arg": "WINCH"}', commands.Command("signal", signum=28)),
        ('{"cmd": "stop", "run_id": "me"}', commands.Command("stop")),
    ],
)
def test_valid_steering(data: str, want: commands.Command) -> None:
    assert commands.parse(_steer(data), "me") == want


@pytest.mark.parametrize(
    "data",
    [
        "frobnicate",
        "signal",
        "signal NOPE",
        "stop now",
        "stdin",
        "stdin " + "x" * (commands.MAX_STDIN_BYTES + 1),
        "signal " + "1" * 300,
        '{"cmd": "stop", "run_id": "other"}',
        '{"cmd": 1}',
        '{"cmd": "stdin", "arg": 5}',
        "{oops",
        "$(reboot)",
    ],
)
def test_malformed_steering(data: str) -> None:
    with pytest.raises(commands.Malformed):
        commands.parse(_steer(data), "me")


def test_other_types_are_left_to_the_job_and_run_ids_are_checked() -> None:
    note = p.Message("c", 0, "", "note", "stop", None)
    assert commands.parse(note, "me") is None
    with pytest.raises(commands.Malformed):
        commands.parse(_steer("stop", run_id="other"), "me")
    with pytest.raises(commands.Malformed):
        commands.parse(p.Message.from_wire("c", 0, 42), "me")
