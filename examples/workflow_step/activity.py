"""A durable workflow step in the style of a Temporal activity, addressed by its workflow id.

    python examples/workflow_step/activity.py order-1042 --steps 50 &
    chanctl tail wf/order-1042                          # progress, live
    chanctl send wf/order-1042 pause                    # also: resume, stop, set delay=0.1

The step writes its progress into the channel ``wf/<workflow id>``, so whoever knows the
workflow can follow and steer it; nothing else needs a registry of workers. It may be killed
at any point (``kill -9``, a lost machine) and started again with the same workflow id:

* **Progress** resumes after the last ``progress`` step in the channel (like Temporal's
  heartbeat details), so finished steps are not repeated.
* **Steering** resumes at the channel's producer position, which the daemon keeps for the
  control lane (``/v1/cursors/NAME?lane=control&name=producer``): messages handled before the
  kill are not read again, messages sent while no worker ran are read now.
* **No message is handled twice.** Handling a message first appends a ``handled`` record
  (the offset of the steering message and its command) to the output lane, then applies it,
  then moves the producer position past it. A kill between the first and the last step leaves
  the position one message behind; the restarted worker finds that message's ``handled``
  record and skips it. The same records rebuild the step's state (paused, delay) on restart.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from dataclasses import dataclass, field

import chanctl
from chanctl.errors import ChannelNotFound
from chanctl.protocol import LANE_CONTROL, PRODUCER_CURSOR


@dataclass
class State:
    """What steering changes; rebuilt from the ``handled`` records after a restart."""

    delay: float
    running: threading.Event = field(default_factory=threading.Event)
    stopped: threading.Event = field(default_factory=threading.Event)

    def check(self, cmd: str) -> str:
        """``ok``, or why ``cmd`` is ignored (recorded with it); changes nothing."""
        verb, _, arg = cmd.strip().partition(" ")
        if verb in ("pause", "resume", "stop") and not arg:
            return "ok"
        if verb == "set" and arg.startswith("delay="):
            try:
                float(arg.removeprefix("delay="))
            except ValueError:
                return "ignored: delay must be a number of seconds"
            return "ok"
        return "ignored: use pause, resume, stop or set delay=SECONDS"

    def apply(self, cmd: str) -> None:
        """Obey ``cmd`` if it is valid."""
        if self.check(cmd) != "ok":
            return
        verb, _, arg = cmd.strip().partition(" ")
        if verb == "pause":
            self.running.clear()
        elif verb == "resume":
            self.running.set()
        elif verb == "stop":
            self.stopped.set()
            self.running.set()  # wake the step loop so that it sees the stop
        else:
            self.delay = max(0.0, float(arg.removeprefix("delay=")))


def recover(c: chanctl.Client, channel: str, state: State) -> tuple[int, set[str]]:
    """From the channel's history: the next step to run and the steering offsets handled."""
    next_step, handled = 0, set()
    for msg in c.replay(channel):
        if msg.type == "progress":
            next_step = int(json.loads(msg.text or "{}")["step"])
        elif msg.type == "handled":
            rec = json.loads(msg.text or "{}")
            handled.add(rec["steer"])
            if rec["result"] == "ok":
                state.apply(rec["cmd"])  # the same commands give the same state
    return next_step, handled


def handle(
    c: chanctl.Client, channel: str, msg: chanctl.Message, state: State, handled: set[str]
) -> None:
    """Record, obey, then move the producer position past ``msg`` (see the module doc)."""
    if msg.offset not in handled:  # else: handled just before a crash
        cmd = msg.text or ""
        result = state.check(cmd) if msg.type == "steer" else "ignored: not steer"
        rec = {"steer": msg.offset, "cmd": cmd, "result": result}
        c.publish(channel, json.dumps(rec), type="handled")  # the record first, then the act
        handled.add(msg.offset)
        if result == "ok":
            state.apply(cmd)
    c.set_cursor(channel, PRODUCER_CURSOR, msg.next_offset, lane=LANE_CONTROL)


def catch_up(c: chanctl.Client, channel: str, state: State, handled: set[str]) -> str:
    """Handle what was sent while no worker ran (before any work: a `pause` holds); returns
    where the live follow starts."""
    start = c.get_cursor(channel, PRODUCER_CURSOR, lane=LANE_CONTROL) or "-1"
    print(f"steering from {start}", file=sys.stderr, flush=True)
    backlog = c.recv(channel, start=start)
    try:
        for msg in backlog:
            handle(c, channel, msg, state, handled)
    except ChannelNotFound:  # nobody has steered this workflow yet
        return start
    return backlog.offset or start


def follow(channel: str, start: str, state: State, handled: set[str]) -> None:
    """Steering from now on, as it arrives (a long-poll, not a polling loop)."""
    with chanctl.Client() as c:
        for msg in c.recv(channel, follow=True, start=start):
            handle(c, channel, msg, state, handled)
            if state.stopped.is_set():
                return


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workflow_id")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--delay", type=float, default=0.1, help="seconds per step")
    args = ap.parse_args()
    channel = f"wf/{args.workflow_id}"

    state = State(args.delay)
    state.running.set()
    with chanctl.Client() as c:
        c.create(channel)
        step, handled = recover(c, channel, state)
        start = catch_up(c, channel, state, handled)
        threading.Thread(target=follow, args=(channel, start, state, handled), daemon=True).start()
        while step < args.steps:
            state.running.wait()  # paused: sleeps until resume or stop
            if state.stopped.is_set() or state.stopped.wait(state.delay):
                break
            step += 1  # the work of one step would go here
            c.publish(channel, json.dumps({"step": step, "of": args.steps}), type="progress")
        outcome = "cancelled" if state.stopped.is_set() else "done"
        c.publish(channel, json.dumps({"step": step, "of": args.steps}), type=outcome)
        c.close(channel)
    print(f"{outcome} at step {step}/{args.steps}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
