"""`chanctl pub` and `chanctl tail` end to end: arguments, stdin, flags, output shapes and exit
codes, through the real console entry point against a real daemon."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

from clikit import Chanctl, read_until
from daemonkit import TestEnv

from chanctl.protocol import format_offset

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def test_pub_arguments_then_tail_history(ch: Chanctl) -> None:
    ch.ok("pub", "demo", "hello", "world")
    run = ch.ok("tail", "demo", "--no-follow")
    assert run.lines == ["hello", "world"]


def test_pub_prints_last_offset_only_with_verbose(ch: Chanctl) -> None:
    assert ch.ok("pub", "v", "a").out == b""
    run = ch.ok("pub", "v", "b", "c", "-v")
    assert run.lines == [format_offset(2)]
    assert ch.ok("tail", "v", "--no-follow", "--from", run.lines[0]).lines == ["c"]


def test_pub_stdin_lines_and_count(ch: Chanctl) -> None:
    lines = "".join(f"{i}\n" for i in range(1, 100_001))
    ch.ok("pub", "x", input=lines)
    run = ch.ok("tail", "x", "-n", "all", "--no-follow")
    assert run.out.count(b"\n") == 100_000
    assert run.text == lines


def test_json_records_have_the_documented_shape(ch: Chanctl) -> None:
    ch.ok("pub", "j", "--type", "stdout", "-H", "host=a", "-H", "k=v=w", "one")
    ch.ok("pub", "j", "two")
    run = ch.ok("tail", "j", "--no-follow", "--json")
    first, second = (json.loads(line) for line in run.lines)
    assert set(first) == {"channel", "offset", "seq", "time", "type", "data", "headers"}
    assert set(second) == {"channel", "offset", "seq", "time", "type", "data"}
    assert (first["channel"], first["seq"], first["offset"]) == ("j", 0, format_offset(0))
    assert (first["type"], first["data"], first["headers"]) == (
        "stdout",
        "one",
        {"host": "a", "k": "v=w"},
    )
    assert second["seq"] == 1 and second["type"] == "message"
    assert RFC3339_UTC.match(first["time"])


def test_pub_json_validates_values(ch: Chanctl) -> None:
    ch.ok("pub", "jv", "--json", '{"a": 1}', "[1,2]", '"s"')
    assert ch.ok("tail", "jv", "--no-follow", "--raw").lines == ['{"a": 1}', "[1,2]", '"s"']
    bad = ch("pub", "jv", "--json", "{nope")
    assert bad.code == 2 and "not valid JSON" in bad.err
    bad_stdin = ch("pub", "jv", "--json", input='{"ok": 1}\nnope\n')
    assert bad_stdin.code == 1 and "line 2" in bad_stdin.err


def test_lines_from_and_type_filters(ch: Chanctl) -> None:
    ch.ok("pub", "f", *[str(i) for i in range(20)])
    ch.ok("pub", "f", "--type", "stderr", "oops")
    assert ch.ok("tail", "f", "--no-follow").lines == [*map(str, range(11, 20)), "oops"]
    assert ch.ok("tail", "f", "--no-follow", "-n", "3").lines == ["18", "19", "oops"]
    assert ch.ok("tail", "f", "--no-follow", "-n", "0").lines == []
    assert len(ch.ok("tail", "f", "--no-follow", "-n", "all").lines) == 21
    assert ch.ok("tail", "f", "--no-follow", "--from", "18").lines == ["18", "19", "oops"]
    assert ch.ok("tail", "f", "--no-follow", "--from", "start", "-n", "1").lines[0] == "0"
    assert ch.ok("tail", "f", "--no-follow", "--from", "now").lines == []
    assert ch.ok("tail", "f", "--no-follow", "-n", "all", "--type", "stderr").lines == ["oops"]
    both = ch.ok("tail", "f", "--no-follow", "-n", "2", "--type", "stderr", "--type", "message")
    assert both.lines == ["19", "oops"]


def test_since_and_timestamps(ch: Chanctl) -> None:
    ch.ok("pub", "s", "old")
    assert ch.ok("tail", "s", "--no-follow", "--since", "1h").lines == ["old"]
    assert ch.ok("tail", "s", "--no-follow", "--since", "2999-01-01T00:00:00Z").lines == []
    stamped = ch.ok("tail", "s", "--no-follow", "-t").lines[0]
    stamp, _, text = stamped.partition(" ")
    assert RFC3339_UTC.match(stamp) and text == "old"


def test_usage_errors_exit_2_without_traceback(ch: Chanctl) -> None:
    for args in (
        ["tail", "x", "--since", "yesterday-ish"],
        ["tail", "x", "-n", "ten"],
        ["tail", "x", "--from", "abc"],
        ["tail", "x", "--json", "--raw"],
        ["pub", "bad name", "x"],
        ["tail", "x", "--timeout", "soon"],
    ):
        run = ch(*args)
        assert run.code == 2, (args, run.err)
        assert "Traceback" not in run.err


def test_missing_channel_no_follow_exits_4(ch: Chanctl) -> None:
    run = ch("tail", "nope", "--no-follow")
    assert run.code == 4
    assert run.err.startswith("error: no channel 'nope'")


def test_tail_waits_for_channel_follows_live_and_exits_0_on_close(ch: Chanctl) -> None:
    proc = ch.popen("tail", "later")
    assert proc.stdout is not None
    ch.ok("pub", "later", "first")
    assert read_until(proc.stdout, b"first\n") == b"first\n"
    ch.ok("pub", "later", "second")
    assert read_until(proc.stdout, b"second\n") == b"second\n"
    ch.ok("close", "later")
    assert proc.wait(30) == 0


def test_exit_status_reports_the_wrapped_job(ch: Chanctl) -> None:
    ch.ok("pub", "job", "--type", "start", "make")
    ch.ok("pub", "job", "--type", "exit", "3")
    ch.ok("close", "job")
    assert ch("tail", "job", "--exit-status").code == 3
    assert ch("tail", "job", "--exit-status", "--from", "now").code == 3
    assert ch("tail", "job").code == 0


def test_timeout_exits_124(ch: Chanctl) -> None:
    ch.ok("pub", "slow", "x")
    run = ch("tail", "slow", "--timeout", "0.5s")
    assert run.code == 124 and run.out == b"x\n"
    assert ch("tail", "never-made", "--timeout", "300ms").code == 124


def test_ctrl_c_exits_130(ch: Chanctl) -> None:
    ch.ok("pub", "int", "x")
    proc = ch.popen("tail", "int")
    assert proc.stdout is not None
    read_until(proc.stdout, b"x\n")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130


def test_cursor_resumes_after_what_it_printed(ch: Chanctl) -> None:
    ch.ok("pub", "cur", "a", "b")
    assert ch.ok("tail", "cur", "--cursor", "me", "--no-follow").lines == ["a", "b"]
    assert ch.ok("tail", "cur", "--cursor", "me", "--no-follow").lines == []
    ch.ok("pub", "cur", "c")
    assert ch.ok("tail", "cur", "--cursor", "me", "--no-follow").lines == ["c"]
    # another cursor name is independent; a bad name is a usage error
    assert ch.ok("tail", "cur", "--cursor", "other", "--no-follow", "-n", "1").lines == ["c"]
    assert ch("tail", "cur", "--cursor", "a/b", "--no-follow").code == 2


def test_cursor_saved_on_ctrl_c(ch: Chanctl) -> None:
    ch.ok("pub", "cc", "a", "b")
    proc = ch.popen("tail", "cc", "--cursor", "k")
    assert proc.stdout is not None
    read_until(proc.stdout, b"b\n")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130
    ch.ok("pub", "cc", "c")
    assert ch.ok("tail", "cc", "--cursor", "k", "--no-follow").lines == ["c"]


def test_broken_pipe_is_quiet(ch: Chanctl) -> None:
    ch.ok("pub", "bp", *[str(i) for i in range(5000)])
    proc = ch.popen("tail", "bp", "-n", "all", "--no-follow")
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(10)
    proc.stdout.close()
    assert proc.wait(30) == 0
    assert b"Traceback" not in proc.stderr.read()


def test_global_flags_before_the_verb(ch: Chanctl, tenv: TestEnv) -> None:
    ch.ok("--url", f"unix://{tenv.socket}", "pub", "g", "hi")
    assert ch.ok("--url", f"unix://{tenv.socket}", "tail", "g", "--no-follow").lines == ["hi"]
    assert ch.ok("-v", "pub", "g", "again").lines == [format_offset(1)]


def test_help_lists_every_command(ch: Chanctl) -> None:
    run = ch.ok("--help")
    for verb in ("pub", "tail", "replay", "ls", "info", "close", "rm", "daemon"):
        assert verb in run.text
    assert "--cursor" in ch.ok("tail", "--help").text


def test_pub_fast_path_and_typer_path_agree(ch: Chanctl) -> None:
    """`pub` is parsed without typer for speed; any form typer handles must behave the same."""
    fast = ch.ok("pub", "same", "--type", "stdout", "-H", "a=1", "-v", "x")
    full = ch.ok("--debug", "pub", "same", "--type", "stdout", "-H", "a=1", "-v", "x")
    assert (fast.lines, full.lines) == ([format_offset(0)], [format_offset(1)])
    records = [json.loads(line) for line in ch.ok("replay", "same", "--json").lines]
    for record in records:
        record.pop("seq"), record.pop("offset"), record.pop("time")
    assert records[0] == records[1]
    assert "Publish messages" in ch.ok("pub", "--help").text


def test_pub_sends_a_burst_while_its_input_stays_open(ch: Chanctl) -> None:
    """A burst of lines followed by silence is published during the silence, not at EOF."""
    pub = subprocess.Popen(ch.argv("pub", "burst"), stdin=subprocess.PIPE, env=ch.env())
    assert pub.stdin is not None
    try:
        for round_ in range(3):
            pub.stdin.write(b"".join(b"r%d-%d\n" % (round_, i) for i in range(20)))
            pub.stdin.flush()
            want = 20 * (round_ + 1)
            deadline = time.monotonic() + 10
            got: list[str] = []
            while time.monotonic() < deadline:
                run = ch("tail", "burst", "-n", "all", "--no-follow")
                got = run.lines if run.code == 0 else []
                if len(got) >= want:
                    break
            assert len(got) == want, f"round {round_}: {len(got)} of {want} lines published"
    finally:
        pub.stdin.close()
        assert pub.wait(20) == 0
