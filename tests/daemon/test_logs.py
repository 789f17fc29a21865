"""Daemon log records stay one per line whatever an attacker puts in a name or header (B7).

Guards ``chanctl.daemon.logs``: control characters, ANSI escapes and bidi overrides are escaped,
so a channel name cannot forge a log line or repaint the terminal of whoever tails the log.
"""

from __future__ import annotations

import logging

from chanctl.daemon.logs import OneLineFormatter, escape

NASTY = "a\nb\r\x1b[2J\x1b]52;c;ZXZpbA==\x07\x00\x85\u202eevil\t."


def test_escape_leaves_no_control_characters() -> None:
    out = escape(NASTY)
    assert out.isprintable()
    assert out == "a\\nb\\r\\x1b[2J\\x1b]52;c;ZXZpbA==\\x07\\x00\\x85\\u202eevil\\t."


def test_escape_keeps_ordinary_text() -> None:
    assert escape("channel jobs/build-42 café ✓") == "channel jobs/build-42 café ✓"


def test_formatter_one_line_with_traceback() -> None:
    try:
        raise ValueError(NASTY)
    except ValueError:
        record = logging.LogRecord(
            "chanctl.x", logging.ERROR, __file__, 1, "bad %s", (NASTY,), None
        )
        import sys

        record.exc_info = sys.exc_info()
    line = OneLineFormatter().format(record)
    assert "\n" not in line and "\x1b" not in line
    assert line.endswith(
        " ERROR chanctl.x: bad " + escape(NASTY) + line[line.index("\\nTraceback") :]
    )
    assert line[:24].endswith("Z") and line[10] == "T"
