"""Stream a model's answer into a channel, token by token; stop when told to.

    python examples/llm_tokens/worker.py answer-1 "why durable streams?"
    chanctl send answer-1 stop          # cancels the generation

The channel gets a ``prompt`` message, one ``token`` message per token, then ``done`` (the
token count) or ``cancelled`` (how many tokens were sent before the stop), and is closed, so
every reader knows the answer is over. Steering is read through the library from the
channel's control lane, starting at its producer position, which the worker moves past each
message it handles: a ``stop`` meant for this answer is never obeyed twice.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

import chanctl
from chanctl.protocol import LANE_CONTROL, PRODUCER_CURSOR

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import generate  # noqa: E402


def watch_steering(channel: str, stop: threading.Event) -> None:
    """Follow the control lane (a long-poll, no polling loop) until a ``stop`` arrives."""
    with chanctl.Client() as c:
        for msg in c.recv(channel, follow=True):
            # Move the producer position first: this message is now handled, even if the
            # worker stops right after.
            c.set_cursor(channel, PRODUCER_CURSOR, msg.next_offset, lane=LANE_CONTROL)
            if msg.type == "steer" and (msg.text or "").strip() == "stop":
                stop.set()
                return


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("channel")
    ap.add_argument("prompt")
    ap.add_argument("--tokens", type=int, default=120)
    ap.add_argument("--delay", type=float, default=0.02, help="seconds per token")
    args = ap.parse_args()

    stop = threading.Event()
    with chanctl.Client() as c:
        c.publish(args.channel, args.prompt, type="prompt")
        threading.Thread(target=watch_steering, args=(args.channel, stop), daemon=True).start()
        sent = 0
        for token in generate(args.prompt, args.tokens, args.delay):
            if stop.is_set():
                break
            c.publish(args.channel, token, type="token")
            sent += 1
        if stop.is_set():
            c.publish(args.channel, str(sent), type="cancelled")
            print(f"cancelled after {sent} tokens", file=sys.stderr)
        else:
            c.publish(args.channel, str(sent), type="done")
        c.close(args.channel)  # readers following the answer end here
    return 0


if __name__ == "__main__":
    sys.exit(main())
