"""``chanctl daemon logs [-f] [-n N]`` (issue 9) against the log of a real detached daemon.

Following must behave like ``tail -F`` through what logrotate does: a log renamed away (the
lines still written to it before the daemon restarts are shown, then the new file), and a log
truncated in place (read again from its start). Ctrl-C ends a follow with status 0. The
journal case (a daemon under systemd) is covered in test_service.py.
"""

from __future__ import annotations

import os
import signal

from clikit import Chanctl, read_all, read_until
from daemonkit import TestEnv


def test_last_lines_and_all(tenv: TestEnv) -> None:
    ch = Chanctl(tenv)
    ch.ok("daemon", "start")
    ch.ok("daemon", "stop")
    ch.ok("daemon", "start")
    whole = tenv.log_file.read_bytes()
    assert whole.count(b" ready: pid ") == 2
    assert ch.ok("daemon", "logs", "-n", "3").out == b"".join(whole.splitlines(True)[-3:])
    assert ch.ok("daemon", "logs", "-n", "all").out == whole
    assert ch.ok("daemon", "logs", "-n", "0").out == b""
    bad = ch("daemon", "logs", "-n", "many")
    assert bad.code == 2 and "invalid -n 'many'" in bad.err


def test_no_log_yet_is_an_error_with_a_hint(tenv: TestEnv) -> None:
    done = Chanctl(tenv)("daemon", "logs")
    assert done.code == 1
    assert f"error: no daemon log at {tenv.log_file} yet" in done.err


def test_follow_survives_rotation_and_truncation(tenv: TestEnv) -> None:
    ch = Chanctl(tenv)
    ch.ok("daemon", "start")
    follow = ch.popen("daemon", "logs", "-f", "-n", "1")
    try:
        assert follow.stdout is not None
        seen = read_until(follow.stdout, b" ready: pid ")
        # logrotate's default: rename, and the next daemon writes a new file at the same path.
        os.rename(tenv.log_file, tenv.log_file.with_suffix(".log.1"))
        ch.ok("daemon", "stop")  # these lines still go to the renamed file
        ch.ok("daemon", "start")
        seen += read_until(follow.stdout, b" ready: pid ")
        assert b"received SIGTERM: shutting down" in seen  # the old file, read to its end
        assert seen.count(b" ready: pid ") == 2
        # copytruncate: the same file emptied in place; the next lines must still show.
        os.truncate(tenv.log_file, 0)
        ch.ok("daemon", "stop")
        seen = read_until(follow.stdout, b"daemon stopped (pid ")
        assert b"received SIGTERM: shutting down" in seen
        follow.send_signal(signal.SIGINT)
        assert follow.wait(10) == 0
        assert follow.stderr is not None
        err = read_all(follow.stderr)
        assert b"was truncated" in err and b"Traceback" not in err
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
