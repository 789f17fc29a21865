"""Show an answer as it is generated; resume from where this reader left off.

    python examples/llm_tokens/reader.py answer-1 --offset-file /tmp/a1.offset --max 20
    python examples/llm_tokens/reader.py answer-1 --offset-file /tmp/a1.offset   # the rest

The reader remembers the offset after the last token it printed (``--offset-file``), so
a reader that disconnects mid-answer (``--max N`` simulates that; so does a lost network)
continues with the very next token: nothing is shown twice and nothing is missed. Without a
file it starts at the beginning, so a reader that joins late catches up on the whole answer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import chanctl


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("channel")
    ap.add_argument("--offset-file", type=Path)
    ap.add_argument("--max", type=int, default=0, help="disconnect after N tokens")
    args = ap.parse_args()

    saved = (
        args.offset_file.read_text().strip()
        if args.offset_file and args.offset_file.exists()
        else ""
    )
    shown = 0
    with chanctl.Client() as c:
        for msg in c.tail(args.channel, start=saved or "start", last=None):
            if msg.type == "token":
                sys.stdout.write(msg.text or "")
                sys.stdout.flush()
                shown += 1
            elif msg.type == "cancelled":
                print(f"\n[cancelled after {msg.text} tokens]", file=sys.stderr)
            if args.offset_file:
                args.offset_file.write_text(msg.next_offset)  # after it was shown
            if args.max and shown >= args.max:
                print(f"\n[disconnected at {msg.next_offset}]", file=sys.stderr)
                return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
