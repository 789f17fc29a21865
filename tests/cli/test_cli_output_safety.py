"""What reaches a terminal or a file: `--raw` is byte-exact (binary, invalid UTF-8), every other
mode neutralises control characters (B7: terminal and log injection), and on a terminal
messages are pretty-printed with a live marker on stderr."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess

from clikit import Chanctl, read_until

NASTY = [
    "clear\x1b[2Jscreen",
    "clip\x1b]52;c;ZXZpbA==\x07board",
    "carriage\rreturn",
    "nul\x00byte",
    "c1\x9b31mcsi",
    "bidi\u202etxt.exe",
    "bell\x07",
    "tab\tkept",
]
C0_C1 = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]")


def test_raw_is_byte_exact_for_binary_and_invalid_utf8(ch: Chanctl) -> None:
    payload = b"".join(
        [
            b"plain\n",
            b"\xff\xfe invalid utf-8\n",
            b"\x00\x01\x02 binary\n",
            b"caf\xc3\xa9\n",
            b"\x1b[31mred\n",
            b"\r\n",
            b"\n",
            b"last line without newline",
        ]
    )
    ch.ok("pub", "bin", input=payload)
    expected = payload + b"\n"  # each message is printed followed by a newline
    assert ch.ok("replay", "bin", "--raw").out == expected
    assert ch.ok("tail", "bin", "-n", "all", "--no-follow", "--raw").out == expected
    records = [json.loads(line) for line in ch.ok("replay", "bin", "--json").lines]
    assert "data_b64" in records[1] and "data" not in records[1]
    assert records[3]["data"] == "café"


def test_plain_and_json_output_carry_no_control_bytes(ch: Chanctl) -> None:
    ch.ok(
        "pub",
        "evil",
        "--type",
        "stderr\x1b[5m",
        "-H",
        "k=\x1b]0;title\x07",
        input="".join(line + "\n" for line in NASTY),
    )
    for args in (
        ["tail", "evil", "--no-follow"],
        ["tail", "evil", "--no-follow", "-t"],
        ["replay", "evil", "--json"],
        ["ls"],
        ["info", "evil"],
    ):
        out = ch.ok(*args).out
        assert not C0_C1.search(out), (args, out)
        assert "\u202e".encode() not in out
    plain = ch.ok("tail", "evil", "--no-follow").text
    assert "clear\\x1b[2Jscreen" in plain and "tab\tkept" in plain
    raw = ch.ok("tail", "evil", "--no-follow", "--raw").out
    assert b"\x1b[2J" in raw  # --raw is the explicit opt-out


def test_terminal_output_is_pretty_with_a_live_marker(ch: Chanctl) -> None:
    ch.ok("pub", "tty", "hello")
    ch.ok("pub", "tty", "--type", "stderr", "bad\x1b[2J")
    out_master, out_slave = pty.openpty()
    err_master, err_slave = pty.openpty()
    proc = ch.popen(
        "tail", "tty", stdout=out_slave, stderr=err_slave, env={"TERM": "xterm", "NO_COLOR": ""}
    )
    os.close(out_slave)
    os.close(err_slave)
    with open(out_master, "rb", buffering=0) as out, open(err_master, "rb", buffering=0) as err:
        screen = read_until(out, b"bad")
        marker = read_until(err, b"live")
        Chanctl(ch.tenv).ok("close", "tty")
        assert proc.wait(30) == 0
    assert re.search(
        rb"\d\d:\d\d:\d\d\.\d{3}\x1b\[0m \x1b\[36mmessage\x1b\[0m \xe2\x94\x82 hello", screen
    )
    assert b"\x1b[31mbad\\x1b[2J" in screen  # stderr lines red, their escapes neutralised
    assert "── live ──".encode() in marker


def test_no_color_on_a_terminal(ch: Chanctl) -> None:
    ch.ok("pub", "nc", "hello")
    out_master, out_slave = pty.openpty()
    proc = ch.popen(
        "tail",
        "nc",
        "--no-follow",
        stdout=out_slave,
        stderr=subprocess.DEVNULL,
        env={"NO_COLOR": "1"},
    )
    os.close(out_slave)
    with open(out_master, "rb", buffering=0) as out:
        screen = read_until(out, b"hello")
    assert proc.wait(30) == 0
    assert b"\x1b" not in screen and re.search(rb"\d\d:\d\d:\d\d\.\d{3} message", screen)
