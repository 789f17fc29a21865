"""JSON bombs sent to a running `chanctl run` as steering messages (reliability contract B3,
the wrapper's side of B6).

A steer message's data is a string, so the daemon stores any text in it: a 100,000-deep
``{"cmd": [[[...]]]}`` reached the wrapper intact, and ``json.loads`` raised RecursionError
there, which killed the steering thread (the job could no longer be stopped). A lone
surrogate in ``cmd`` did the same with UnicodeEncodeError. Each bomb must now be one warning
and one refusing ack; the job is never signalled, and steering still works afterwards.
"""

from __future__ import annotations

import json

import psutil
from clikit import Chanctl
from daemonkit import TestEnv, http_unix, wait_for
from runkit import acks, helper, of_type, start_run, wait_record

from chanctl import protocol as p
from chanctl._steering import Ack

DEEP = 100_000
JSON = {"Content-Type": "application/json"}

STEER_BOMBS = [
    '{"cmd":' + "[" * DEEP + "]" * DEEP + "}",
    '{"cmd":"stop","arg":' + '{"a":' * DEEP + "1" + "}" * DEEP + "}",
    "{" * DEEP,
    '{"cmd":"stop","cmd":"kill"}',  # duplicate keys: which one would a reader obey?
    '{"cmd":"signal","arg":"USR1","arg":"KILL"}',
    '{"cmd":"stop","arg":NaN}',
    '{"cmd":"signal","arg":Infinity}',
    '{"cmd":"\\ud800"}',  # lone surrogates
    '{"cmd":"stdin","arg":"\\udfff"}',
    '{"cmd":"stop"} trailing garbage',
    '{"cmd":"stop","run_id":"' + "r" * (1 << 19) + '"}',  # huge field
]


def test_steering_bombs_are_one_warning_each(ch: Chanctl, tenv: TestEnv) -> None:
    log = tenv.root / "b3.log"
    wrapper = start_run(ch, "b3", *helper("signals.py", log), opts=("-q",))
    wait_record("b3", lambda r: r["type"] == "stdout" and r["data"] == "ready")
    job = psutil.Process(json.loads(of_type("b3", "start")[0]["data"])["pid"])
    for data in STEER_BOMBS:
        body = json.dumps({"type": "steer", "data": data}).encode()
        posted = http_unix(tenv.socket, "POST", "/v1/control/b3", body, JSON)
        assert posted.status == 204, posted.body
    wait_for(lambda: len(acks("b3")) == len(STEER_BOMBS), 20, "one ack per bomb")
    assert [a["ok"] for a in acks("b3")] == [False] * len(STEER_BOMBS)
    assert wrapper.stderr.count("ignoring steering") == len(STEER_BOMBS), wrapper.stderr[-2000:]
    assert wrapper.stderr.count("\n") == len(STEER_BOMBS), "one line per bomb, no traceback"
    assert not log.exists(), "the job must not have been signalled"
    assert job.is_running() and job.status() != psutil.STATUS_STOPPED
    # The steering thread survived: a valid command is still obeyed.
    assert ch("send", "b3", "kill", "--wait").code == 0
    assert wrapper.wait() == 137


def test_an_ack_bomb_is_not_an_answer() -> None:
    """`send --wait` reads acks from the output lane, which anyone can append to."""
    for data in ("[" * DEEP + "]" * DEEP, '{"steer":"0","steer":"1"}', '{"steer":NaN}'):
        msg = p.Message.from_wire("c", 0, {"type": p.TYPE_ACK, "data": data})
        assert Ack.from_message(msg) is None
