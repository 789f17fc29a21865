"""Steering end to end: `send`, `recv`, `wait` and the product card. Malformed steering is
ignored with one warning (B6); an old `stop` in history does not stop a new run, while one sent
before the run stops it at once (S5). Guards README "Steering and wrapping jobs"."""

from __future__ import annotations

import json
import os
import stat

import psutil
from clikit import Chanctl, read_all, read_until
from daemonkit import TestEnv, http_unix, wait_for
from runkit import PY, acks, helper, of_type, records, start_run, wait_record


def _ready(name: str) -> None:
    wait_record(name, lambda r: r["type"] == "stdout" and r["data"] in ("ready", "up"))


def test_the_product_card(ch: Chanctl, tenv: TestEnv) -> None:
    script = tenv.root / "long-job.sh"
    script.write_text('#!/bin/sh\ni=0\nwhile :; do echo "step $i"; i=$((i+1)); sleep 0.05; done\n')
    script.chmod(stat.S_IRWXU)
    wrapper = start_run(ch, "workflow-42", str(script))
    tail = ch.popen("tail", "workflow-42")
    read_until(tail.stdout, b"step 3\n")  # live
    job_pid = json.loads(of_type("workflow-42", "start")[0]["data"])["pid"]
    assert ch("send", "workflow-42", "stop", "--wait").code == 0
    assert not psutil.pid_exists(job_pid), "send --wait returns once the job has stopped"
    read_all(tail.stdout)
    assert tail.wait(20) == 0, "tail ends when the run closes the channel"
    waited = ch("wait", "workflow-42", "--for", "exit", "--exit-status")
    assert waited.code == 143 == wrapper.wait()
    assert b"step 3\n" in wrapper.stdout, "the job's output is shown where it runs too"


def test_malformed_steering_is_ignored_with_one_warning(ch: Chanctl, tenv: TestEnv) -> None:
    log = tenv.root / "b6.log"
    wrapper = start_run(ch, "b6", *helper("signals.py", log), opts=("-q",))
    _ready("b6")
    job = psutil.Process(json.loads(of_type("b6", "start")[0]["data"])["pid"])
    bad: list[tuple[tuple[str, ...], str | None]] = [
        (("frobnicate",), None),  # unknown command
        (("signal",), None),  # a missing field
        (("stop", "now"), None),  # an extra one
        (("signal", "NOPE"), None),
        (("--json", '{"cmd": "stop", "run_id": "another-run"}'), None),  # not for this run
        (("--json", '{"cmd": 7}'), None),
        (("{not json",), None),
        ((), "stdin " + "x" * ((1 << 20) - 2048) + "\n"),  # a 1 MiB steer payload
    ]
    for args, stdin in bad:
        sent = ch("send", "b6", *args, "--wait", input=stdin)
        assert sent.code == 1 and "refused" in sent.err, (args, sent.err)
    # Not a chanctl message at all, from a plain Durable Streams client:
    posted = http_unix(
        tenv.socket, "POST", "/v1/control/b6", b"[42]", {"Content-Type": "application/json"}
    )
    assert posted.status in (200, 204)
    expected = len(bad) + 1
    wait_for(lambda: wrapper.stderr.count("ignoring steering") == expected, 10, "the warnings")
    assert wrapper.stderr.count("\n") == expected, "exactly one line per malformed message"
    assert not log.exists(), "the job must not have been signalled"
    assert job.is_running()
    assert ch("send", "b6", "kill", "--wait").code == 0
    assert wrapper.wait() == 137


def test_old_stop_spares_a_new_run_and_an_early_stop_stops_it(ch: Chanctl) -> None:
    early = ch.ok("send", "s5", "stop").text.strip()  # no producer yet
    first = start_run(ch, "s5", "sleep", "1000", opts=("-q", "--no-close"))
    assert first.wait(20) == 143, "a stop sent before the run stops it at once"
    assert [(a["steer"], a["ok"]) for a in acks("s5")] == [(early, True)]
    second = start_run(ch, "s5", "sh", "-c", "echo up; exec sleep 1000", opts=("-q",))
    _ready("s5")
    # Acknowledged, so the run has read past the old stop, which it must not have obeyed.
    assert ch("send", "s5", "signal", "CONT", "--wait").code == 0
    assert second.proc.poll() is None
    assert [a["cmd"] for a in acks("s5")] == ["stop", "signal"]
    assert ch("send", "s5", "stop", "--wait").code == 0
    assert second.wait() == 143
    history = ch.ok("recv", "s5", "--from", "start").lines
    assert history == ["stop", "signal CONT", "stop"]


def test_the_job_reads_its_own_messages_with_recv(ch: Chanctl) -> None:
    job = (
        f'{PY} -m chanctl.entry recv "$CHANCTL_CHANNEL" --follow --type note |'
        ' while read -r line; do echo "got: $line"; done'
    )
    ch.ok("send", "rv", "--type", "note", "before the run")  # waits for the run
    wrapper = start_run(ch, "rv", "sh", "-c", job, opts=("-q",))
    ch.ok("send", "rv", "--type", "note", "hello there")
    wait_record("rv", lambda r: r["data"] == "got: hello there")
    got = [r["data"] for r in records("rv") if r["type"] == "stdout"]
    assert got == ["got: before the run", "got: hello there"]
    assert ch("send", "rv", "stop", "--wait").code == 0
    assert wrapper.wait() == 143


def test_recv_outside_a_run(ch: Chanctl) -> None:
    assert ch.ok("recv", "nothing-sent").out == b""
    first = ch.ok("send", "rx", "--type", "note", "one").text.strip()
    ch.ok("send", "rx", "two")
    assert ch.ok("recv", "rx").lines == ["one", "two"]
    record = json.loads(ch.ok("recv", "rx", "--json").lines[0])
    assert (record["offset"], record["type"], record["data"]) == (first, "note", "one")
    assert ch.ok("recv", "rx", "--cursor", "mine").lines == ["one", "two"]
    assert ch.ok("recv", "rx", "--cursor", "mine").lines == []
    assert ch.ok("tail", "rx", "--control", "--no-follow").lines == ["one", "two"]
    assert ch.ok("ls").text == "", "a control lane is part of its channel, not one of its own"
    ch.ok("pub", "rx", "output")
    assert [line.split("\t")[0] for line in ch.ok("ls").lines] == ["rx"]


def test_wait_conditions(ch: Chanctl) -> None:
    ch.ok("pub", "wt", "--type", "stdout", "building", "ready to serve")
    assert ch("wait", "wt", "--for", "match=^ready").code == 0  # history counts
    found = ch.ok("wait", "wt", "--for", "type=stdout", "--json")
    assert json.loads(found.text)["data"] == "building"
    assert ch("wait", "wt", "--for", "exit", "--timeout", "0.3s").code == 124
    assert ch("wait", "wt", "--for", "bogus").code == 2
    ch.ok("close", "wt")
    assert ch("wait", "wt", "--for", "closed").code == 0
    missed = ch("wait", "wt", "--for", "exit")
    assert missed.code == 1 and "closed before" in missed.err


def test_send_prints_the_offset_and_the_channel_goes_with_rm(ch: Chanctl, tenv: TestEnv) -> None:
    offsets = ch.ok("send", "gone", input="stop\nsignal HUP\n").lines
    assert len(offsets) == 2 and offsets[0] < offsets[1]
    ch.ok("rm", "-f", "gone")
    assert http_unix(tenv.socket, "HEAD", "/v1/control/gone").status == 404
    assert os.environ.get("CHANCTL_CHANNEL") is None


def test_stdin_steering_reaches_the_job_byte_for_byte(ch: Chanctl) -> None:
    """S6: a steer payload reaches the job only through its stdin, exactly, never a shell."""
    wrapper = start_run(ch, "in", "cat", opts=("-q",))
    payload = "a $(touch /tmp/chanctl-pwned) `id` ; 'q' \"é\"  end"
    assert ch("send", "in", "stdin", payload, "--wait").code == 0
    assert ch("send", "in", "eof", "--wait").code == 0
    assert wrapper.wait() == 0, "cat ends at the end of its input"
    assert [r["data"] for r in records("in") if r["type"] == "stdout"] == [payload]
    assert not os.path.exists("/tmp/chanctl-pwned")


def test_send_starts_without_typer(ch: Chanctl, tenv: TestEnv) -> None:
    """`send` is a hot verb (cli.md 3.3): like `pub`, its common forms skip typer entirely."""
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "chanctl.entry", "send", "fast", "hi"],
        env=ch.env(),
        cwd=tenv.root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    loaded = {line.rsplit("|", 1)[1].strip() for line in run.stderr.splitlines() if "|" in line}
    assert not {"typer", "rich", "aiohttp", "chanctl.cli"} & loaded
