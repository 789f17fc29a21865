"""Daemon logging: one record per line, untrusted text escaped, never a message body.

Channel names, header values and peer data are attacker-controlled (PROTOCOL 12.3): a name with
``\\n`` or an ANSI escape must not forge a second log line or repaint a terminal that tails the
log. So the formatter escapes every control and bidi character in the finished record, traceback
included, which keeps the file greppable one record per line. The one exception is a
faulthandler stack dump (a fatal signal, or SIGUSR1), which holds only code locations.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

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
    stream: TextIO
    if log_file is None:
        handler, stream = logging.StreamHandler(sys.stderr), sys.stderr
    else:
        paths.ensure_private_dir(log_file.parent)
        fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)
        os.close(fd)
        file_handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        assert file_handler.stream is not None  # opened at once (no ``delay``)
        handler, stream = file_handler, file_handler.stream
    handler.setFormatter(OneLineFormatter())
    _enable_crash_dumps(stream)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # The access log would record every channel name and query; keep it off by default.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(_bad_http_in_one_line)
    logging.getLogger("asyncio").addFilter(AcceptStarved())


def _bad_http_in_one_line(record: logging.LogRecord) -> bool:
    """aiohttp logs a malformed request as an ERROR with a traceback that quotes the offending
    line verbatim: an ``Authorization`` header, or message data read as a chunk-size line.
    It is the client's fault, not ours: keep one WARNING with the parser's reason, and none of
    the request's bytes."""
    from aiohttp.http_exceptions import HttpProcessingError

    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError):
        reason = str(exc.message).split("\n", 1)[0].split(":", 1)[0][:100]
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg, record.args = "bad HTTP request from %s: %s", (peer, reason)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = None
    return True


class AcceptStarved(logging.Filter):
    """asyncio logs an ERROR with a traceback for *each* failed ``accept()`` when the process
    is out of descriptors (EMFILE): up to the listen backlog, 128, every second while it lasts,
    since it retries each second. One line a minute, with a count, says the same."""

    EVERY_S = 60.0

    def __init__(self) -> None:
        super().__init__()
        self._last = -self.EVERY_S
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("socket.accept() out of system resource"):
            return True
        now = time.monotonic()
        if now - self._last < self.EVERY_S:
            self._dropped += 1
            return False
        exc = record.exc_info[1] if record.exc_info else None
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        record.msg = "cannot accept connections: %s (%d more failures since the last report)"
        record.args = (reason, self._dropped)
        record.exc_info = record.exc_text = None
        self._last, self._dropped = now, 0
        return True


def _enable_crash_dumps(stream: TextIO) -> None:
    """Stack dumps into the log: every thread's on a fatal signal (SIGSEGV, SIGABRT...), and on
    demand with ``kill -USR1 <pid>`` for a daemon that hangs (it keeps running).

    faulthandler writes straight to the file descriptor, from the signal handler, so a dump is
    the raw multi-line text, not a log record. It holds only file names, line numbers and
    function names: no argument values, hence no token and no message data.
    """
    faulthandler.enable(file=stream, all_threads=True)
    faulthandler.register(signal.SIGUSR1, file=stream, all_threads=True, chain=False)
