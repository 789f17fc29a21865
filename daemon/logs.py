"""Daemon logging: one record per line, untrusted text escaped, never a message body.

Channel names, header values and peer data are attacker-controlled (PROTOCOL 12.3): a name with
``\\n`` or an ANSI escape must not forge a second log line or repaint a terminal that tails the
log. So the formatter escapes every control and bidi character in the finished record, traceback
included, which keeps the file greppable one record per line.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from pathlib import Path

from chanctl import paths

# C0 controls (tab and newline too), DEL, C1 controls, and the bidi overrides/isolates that can
# reorder what a terminal shows (Trojan Source).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def escape(text: str) -> str:
    """Make ``text`` printable on one line: ``\\n`` -> ``\\\\n``, ESC -> ``\\\\x1b`` and so on."""
    return _UNSAFE.sub(_escape_char, text)


def _escape_char(m: re.Match[str]) -> str:
    ch = m.group(0)
    special = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if ch in special:
        return special[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


class OneLineFormatter(logging.Formatter):
    """``2026-01-02T13:23:37.123Z LEVEL logger: message`` with everything escaped."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        return escape(super().format(record))


def setup_logging(log_file: Path | None, level: int = logging.INFO) -> None:
    """Send every ``chanctl`` and ``aiohttp`` record to ``log_file`` (0600), or stderr if None.

    The daemon's umask is 077 by the time this runs, so a new log file is created 0600; an
    existing one is tightened in case an older version or the user left it wider.
    """
    handler: logging.Handler
    if log_file is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        paths.ensure_private_dir(log_file.parent)
        fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)
        os.close(fd)
        handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
    handler.setFormatter(OneLineFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # The access log would record every channel name and query; keep it off by default.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
