"""`chanctl replay`, `ls`, `info`, `close` and `rm` end to end: flags, output shapes, prompts
and exit codes."""

from __future__ import annotations

import json
import time

from clikit import Chanctl

from chanctl.protocol import format_offset, format_time


def test_replay_prints_history_from_the_start(ch: Chanctl) -> None:
    ch.ok("pub", "r", *[str(i) for i in range(30)])
    assert ch.ok("replay", "r").lines == [str(i) for i in range(30)]
    assert ch.ok("replay", "r", "--from", "27").lines == ["27", "28", "29"]
    assert ch.ok("replay", "r", "--from", format_offset(29)).lines == ["29"]
    records = [json.loads(line) for line in ch.ok("replay", "r", "--json").lines]
    assert [r["seq"] for r in records] == list(range(30))
    assert ch("replay", "missing").code == 4


def test_replay_since_until_window(ch: Chanctl) -> None:
    ch.ok("pub", "w", "before")
    mid = time.time()
    ch.ok("pub", "w", "inside")
    end = time.time()
    ch.ok("pub", "w", "after")
    since, until = format_time(mid), format_time(end)
    assert ch.ok("replay", "w", "--since", since, "--until", until).lines == ["inside"]
    assert ch.ok("replay", "w", "--since", since).lines == ["inside", "after"]
    assert ch.ok("replay", "w", "--until", until).lines == ["before", "inside"]


def test_replay_speed_keeps_the_original_gaps(ch: Chanctl) -> None:
    ch.ok("pub", "sp", "a")
    gap_start = time.monotonic()
    while time.monotonic() - gap_start < 0.6:  # a measured gap between two publishes
        pass
    ch.ok("pub", "sp", "b")
    started = time.monotonic()
    assert ch.ok("replay", "sp", "--speed", "2").lines == ["a", "b"]
    paced = time.monotonic() - started
    started = time.monotonic()
    ch.ok("replay", "sp", "--speed", "1000")
    fast = time.monotonic() - started
    assert paced - fast >= 0.25  # ~0.3 s of the 0.6 s gap at 2x
    assert ch.ok("replay", "sp", "--realtime", "--from", "1").lines == ["b"]
    assert ch("replay", "sp", "--speed", "0").code == 2


def test_ls_plain_and_json(ch: Chanctl) -> None:
    ch.ok("pub", "alpha", "1", "2")
    ch.ok("pub", "beta/one", "x")
    ch.ok("close", "beta/one")
    rows = [line.split("\t") for line in ch.ok("ls").lines]
    assert [r[0] for r in rows] == ["alpha", "beta/one"]
    assert rows[0][1] == "2" and rows[0][5] == "open" and rows[1][5] == "closed"
    doc = json.loads(ch.ok("ls", "--json").text)
    assert [d["name"] for d in doc] == ["alpha", "beta/one"]
    assert doc[0]["messages"] == 2 and doc[1]["closed"] is True


def test_info_reports_offsets_and_settings(ch: Chanctl) -> None:
    ch.ok("pub", "i", "a", "b", "c")
    doc = json.loads(ch.ok("info", "i", "--json").text)
    assert doc["name"] == "i" and doc["messages"] == 3
    assert doc["next_offset"] == format_offset(3)
    assert doc["content_type"].startswith("application/json")
    assert doc["closed"] is False and doc["fsync"]
    text = ch.ok("info", "i").text
    assert "messages" in text and "next_offset" in text
    assert ch("info", "nope").code == 4


def test_close_makes_the_channel_read_only(ch: Chanctl) -> None:
    ch.ok("pub", "c", "x")
    ch.ok("close", "c")
    ch.ok("close", "c")  # idempotent
    run = ch("pub", "c", "y")
    assert run.code == 1 and "closed" in run.err
    assert ch.ok("tail", "c").lines == ["x"]  # a closed channel ends the tail at once
    assert ch("close", "missing").code == 4


def test_rm_needs_force_without_a_terminal(ch: Chanctl) -> None:
    ch.ok("pub", "gone", "x")
    ch.ok("pub", "gone2", "x")
    refused = ch("rm", "gone")
    assert refused.code == 2 and "-f" in refused.err
    ch.ok("rm", "-f", "gone", "gone2")
    assert ch("tail", "gone", "--no-follow").code == 4
    assert ch.ok("ls").lines == []
    missing = ch("rm", "-f", "gone")
    assert missing.code == 4 and missing.err.startswith("error: no channel 'gone'")


def test_errors_are_one_line_and_name_the_problem(ch: Chanctl) -> None:
    run = ch("pub", "x", "-H", "novalue", "m")
    assert run.code == 2
    assert run.err.splitlines()[0] == "error: invalid header 'novalue'"
    assert "Traceback" not in run.err


def _complete(ch: Chanctl, words: str) -> tuple[int, list[str]]:
    env = {
        "_CHANCTL_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }
    run = ch(env=env)
    return run.code, [line for line in run.lines if line]


def test_channel_names_complete_from_the_daemon(ch: Chanctl) -> None:
    ch.ok("pub", "build-1", "x")
    ch.ok("pub", "build-2", "x")
    ch.ok("pub", "other", "x")
    assert _complete(ch, "chanctl tail bu") == (0, ["build-1", "build-2"])
    assert _complete(ch, "chanctl info o") == (0, ["other"])


def test_completion_is_silent_and_never_starts_a_daemon(ch_nodaemon: Chanctl) -> None:
    assert _complete(ch_nodaemon, "chanctl tail bu") == (0, [])
    assert not list(ch_nodaemon.tenv.root.rglob("chanctl.sock"))
