"""How `tail` and `replay` put messages on the screen or into a pipe (cli.md 1.5, 3.2).

Four modes, chosen once per command: ``pretty`` (stdout is a terminal: local time, type,
colour), ``plain`` (piped: one message per line, undecorated), ``json`` (NDJSON records) and
``raw`` (data bytes exactly). Everything except ``raw`` goes through ``sanitize``: message data
is untrusted, and escape sequences in it could rewrite the screen, the clipboard (OSC 52) or
the reading order (bidi overrides) of whoever watches a tail (B7 in reliability.md). Lines are
written with plain ``write`` + ``flush`` per answer, not rich: it is faster and byte-exact.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import BinaryIO, TextIO

from .protocol import TYPE_EXIT, TYPE_START, TYPE_STDERR, Message, parse_time
from .reading import Batch

# C0 except \t and \n, DEL, C1, and the Unicode format characters that reorder or hide text.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069]")
_RESET, _DIM, _RED, _CYAN = "\x1b[0m", "\x1b[2m", "\x1b[31m", "\x1b[36m"


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def sanitize(text: str) -> str:
    """Make control characters visible (``\\x1b``) instead of letting the terminal act on them."""
    return _UNSAFE.sub(_escape, text) if _UNSAFE.search(text) else text


def color_enabled(stream: TextIO | BinaryIO) -> bool:
    """Colour only on a terminal, never with NO_COLOR / CHANCTL_NO_COLOR / TERM=dumb;
    FORCE_COLOR turns it on (clig.dev, cli.md 1.1)."""
    env = os.environ
    if env.get("NO_COLOR") or env.get("CHANCTL_NO_COLOR"):
        return False
    if env.get("FORCE_COLOR"):
        return True
    return env.get("TERM") != "dumb" and stream.isatty()


def choose_mode(json_out: bool, raw: bool, stdout: BinaryIO) -> str:
    if json_out:
        return "json"
    if raw:
        return "raw"
    return "pretty" if stdout.isatty() else "plain"


class Renderer:
    """Writes batches to ``out`` in one mode; status lines (the live marker) go to ``err``."""

    def __init__(
        self,
        mode: str,
        *,
        timestamps: bool = False,
        out: BinaryIO | None = None,
        err: TextIO | None = None,
        color: bool | None = None,
    ) -> None:
        self.mode = mode
        self.timestamps = timestamps
        self.out = out or sys.stdout.buffer
        self.err = err or sys.stderr
        self.color = color_enabled(self.out) if color is None else color
        self._json = json.JSONEncoder(separators=(",", ":")).encode  # ASCII: no raw C1 bytes
        self._marked = False

    def write(self, batch: Batch) -> None:
        """Render every selected message of ``batch`` into the output buffer (call ``flush``
        next: followers must see each answer at once)."""
        if not len(batch):
            return
        if self.mode == "json":
            chunk = batch.ndjson().encode()
        elif self.mode == "plain" and not self.timestamps and (texts := batch.texts()):
            chunk = (sanitize("\n".join(texts)) + "\n").encode()  # sanitize keeps \n
        elif self.mode == "raw":
            chunk = (
                batch.raw_lines()
                if not self.timestamps
                else b"".join([m.time.encode() + b" " + m.data + b"\n" for m in batch.messages()])
            )
        else:
            line = getattr(self, "_line_" + self.mode)
            chunk = "".join([line(m) for m in batch.messages()]).encode(errors="replace")
        self.out.write(chunk)

    def flush(self) -> None:
        self.out.flush()

    def live_marker(self) -> None:
        """Say once, on stderr, where history ends and live messages begin."""
        if self._marked:
            return
        self._marked = True
        text = "── live ──"
        if color_enabled(self.err):
            text = _DIM + text + _RESET
        self.err.write(text + "\n")
        self.err.flush()

    def _line_json(self, m: Message) -> str:
        return self._json(m.to_record()) + "\n"

    def _line_plain(self, m: Message) -> str:
        text = sanitize(_text_of(m))
        return f"{sanitize(m.time)} {text}\n" if self.timestamps else text + "\n"

    def _line_pretty(self, m: Message) -> str:
        stamp = sanitize(m.time) if self.timestamps else _local_clock(m.time)
        kind, text = sanitize(m.type), sanitize(_text_of(m))
        if not self.color:
            return f"{stamp} {kind} │ {text}\n"
        tint = _RED if m.type == TYPE_STDERR else _DIM if m.type in (TYPE_START, TYPE_EXIT) else ""
        body = f"{tint}{text}{_RESET}" if tint else text
        return f"{_DIM}{stamp}{_RESET} {_CYAN}{kind}{_RESET} │ {body}\n"


def _text_of(m: Message) -> str:
    return m.text if m.text is not None else m.data.decode(errors="replace")


def _local_clock(stamp: str) -> str:
    """``HH:MM:SS.mmm`` in local time, as people read a log on their terminal."""
    try:
        from datetime import datetime

        return datetime.fromtimestamp(parse_time(stamp)).strftime("%H:%M:%S.%f")[:-3]
    except ValueError:
        return sanitize(stamp)[:12] or "--:--:--.---"
