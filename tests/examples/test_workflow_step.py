"""examples/workflow_step: a step killed with SIGKILL and started again resumes its progress
and its steering position (kept by the daemon), and handles every steering message exactly
once: those sent before the kill, while it was down, and after its restart."""

from __future__ import annotations

import json
import signal
import time

from daemonkit import TestEnv, cli, wait_for
from examplekit import Procs

import chanctl
from chanctl.errors import ChannelNotFound
from chanctl.protocol import LANE_CONTROL, PRODUCER_CURSOR, format_offset

WF = "order-1042"
NAME = f"wf/{WF}"


def _records(c: chanctl.Client, type_: str) -> list[dict[str, object]]:
    return [json.loads(m.text or "{}") for m in c.replay(NAME) if m.type == type_]


def _send(tenv: TestEnv, env: dict[str, str], cmd: str) -> str:
    sent = cli(tenv, "send", NAME, cmd, env=env)
    assert sent.returncode == 0, sent.stderr
    return sent.stdout.strip()  # the message's offset


def _steps(c: chanctl.Client) -> int:
    try:
        return len(_records(c, "progress"))
    except ChannelNotFound:  # the worker has not created it yet
        return 0


def _stalled(c: chanctl.Client) -> bool:
    """No progress for a while: a pause takes effect once the step in flight has ended."""
    time.sleep(0.15)
    before = _steps(c)
    time.sleep(0.4)
    return _steps(c) == before


def test_kill_restart_handles_each_steering_message_once(
    tenv: TestEnv, ex_env: dict[str, str], procs: Procs
) -> None:
    argv = ("workflow_step/activity.py", WF, "--steps", "400", "--delay", "0.03")
    c = chanctl.Client(ex_env["CHANCTL_URL"], autostart=False)
    handled = lambda: len(_records(c, "handled"))  # noqa: E731

    worker = procs.python(ex_env, *argv)
    wait_for(lambda: _steps(c) >= 5, 20, "first progress")
    sent = [_send(tenv, ex_env, "pause")]
    wait_for(lambda: handled() == 1, 20, "pause handled")
    assert _stalled(c), "paused: no progress"
    sent += [_send(tenv, ex_env, "set delay=0.01"), _send(tenv, ex_env, "resume")]
    wait_for(lambda: handled() == 3, 20, "resume handled")
    steps_before = _steps(c)
    wait_for(lambda: _steps(c) > steps_before + 3, 20, "progress after resume")

    position = lambda: c.get_cursor(NAME, PRODUCER_CURSOR, lane=LANE_CONTROL)  # noqa: E731
    wait_for(lambda: position() == format_offset(3), 20, "the position past the three")
    worker.send_signal(signal.SIGKILL)
    worker.communicate(timeout=10)
    assert position() == format_offset(3), "the daemon keeps the steering position"
    sent += [_send(tenv, ex_env, "pause"), _send(tenv, ex_env, "set delay=0.005")]
    sent += [_send(tenv, ex_env, "warp 9")]  # not a verb: handled (as ignored) once too
    # As if the kill had hit between handling `resume` and saving the position past it.
    c.set_cursor(NAME, PRODUCER_CURSOR, sent[2], lane=LANE_CONTROL)
    steps_at_kill = _steps(c)

    restarted = procs.python(ex_env, *argv)
    wait_for(lambda: handled() == 6, 20, "the messages sent while it was down")
    assert _stalled(c), "the `pause` sent while it was down holds"
    sent.append(_send(tenv, ex_env, "stop"))
    _, err = restarted.communicate(timeout=20)
    assert restarted.returncode == 0, err
    assert f"steering from {sent[2]}" in err  # started at the daemon's position, not at 0

    records = _records(c, "handled")
    assert [r["steer"] for r in records] == sent  # each exactly once, in order
    cmds = [r["cmd"] for r in records]
    assert cmds == [
        "pause",
        "set delay=0.01",
        "resume",
        "pause",
        "set delay=0.005",
        "warp 9",
        "stop",
    ]
    assert [r["result"] for r in records][5].startswith("ignored")
    steps = [r["step"] for r in _records(c, "progress")]
    assert steps == list(range(1, len(steps) + 1)), "no step repeated or skipped across the kill"
    assert len(steps) == steps_at_kill < 400
    assert [m.type for m in c.replay(NAME)][-1] == "cancelled"
    assert c.get_cursor(NAME, PRODUCER_CURSOR, lane=LANE_CONTROL) == format_offset(7)
    c.disconnect()
