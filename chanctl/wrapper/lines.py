"""Turning the job's output bytes into chanctl messages, one per line, byte-exact.

Each stream keeps the unfinished tail of its last chunk (``carry``) until its newline arrives.
Three things end a message without a newline, and each such message carries the header
``partial: 1`` so that ``--raw`` replays print no newline after it and the bytes come back
exactly: a line longer than ``MAX_PIECE`` (split, so that even data that JSON escapes six-fold
stays under the daemon's 1 MiB message limit), an unfinished line the job left alone for
``PARTIAL_DELAY`` seconds (a prompt, a progress bar), and the last bytes before the stream ends.

Encoding is the wrapper's hot path (``seq 200000`` under ``run``): a chunk of complete lines
that is valid UTF-8 and has no long line is decoded and escaped with one C call per line.
"""

from __future__ import annotations

import json

from .. import protocol as p

MAX_PIECE = 128 * 1024
PARTIAL_DELAY = 0.2
_PARTIAL = {p.HEADER_PARTIAL: "1"}
_escape = json.encoder.encode_basestring


class LineSplitter:
    """One output stream (``stdout`` or ``stderr``) of the job."""

    def __init__(self, type_: str) -> None:
        self.type = type_
        self.carry = b""
        self.carry_time = 0.0  # when the carried bytes arrived

    def feed(self, data: bytes, when: float, out: list[str]) -> None:
        """Append the messages for every line ``data`` completes to ``out``."""
        lines = (self.carry + data).split(b"\n") if self.carry else data.split(b"\n")
        rest = lines.pop()
        if lines:
            self._encode_lines(lines, when, out)
        if rest and (not self.carry or lines):
            self.carry_time = when
        self.carry = rest
        while len(self.carry) > MAX_PIECE:
            cut = _piece_end(self.carry)
            out.append(p.encode_message(self.type, self.carry[:cut], when, _PARTIAL))
            self.carry = self.carry[cut:]

    def flush(self, out: list[str]) -> None:
        """Emit the unfinished line as it is (the stream ended, or went quiet)."""
        if self.carry:
            out.append(p.encode_message(self.type, self.carry, self.carry_time, _PARTIAL))
            self.carry = b""

    def _encode_lines(self, lines: list[bytes], when: float, out: list[str]) -> None:
        prefix = '{"type":"' + self.type + '","time":"' + p.format_time(when) + '","data":'
        blob = b"\n".join(lines)
        if len(blob) <= MAX_PIECE or max(map(len, lines)) <= MAX_PIECE:
            try:
                texts = blob.decode().split("\n")
            except UnicodeDecodeError:
                pass
            else:
                out.extend([prefix + _escape(t) + "}" for t in texts])
                return
        for line in lines:  # slow path: invalid UTF-8 somewhere, or a line to split
            while len(line) > MAX_PIECE:
                cut = _piece_end(line)
                out.append(p.encode_message(self.type, line[:cut], when, _PARTIAL))
                line = line[cut:]
            out.append(p.encode_message(self.type, line, when))


def _piece_end(data: bytes) -> int:
    """Where to cut a piece of at most MAX_PIECE bytes: before a UTF-8 continuation byte if
    one is near, so that text stays text in both pieces."""
    cut = MAX_PIECE
    while cut > MAX_PIECE - 4 and data[cut] & 0xC0 == 0x80:
        cut -= 1
    return cut if cut > MAX_PIECE - 4 else MAX_PIECE
