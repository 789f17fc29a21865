"""W1: `chanctl run` exits as the job did: its code, 128+N when signal N killed it, 126/127
when the command cannot run or does not exist; and the channel ends with that `exit` record.

Guards the exit-status contract scripts and CI rely on (cli.md 1.6, reliability.md W1)."""

from __future__ import annotations

import os
import signal

from clikit import Chanctl
from runkit import HELPERS, client, of_type, records, start_run

from chanctl.wrapper.spawn import exit_code

CODES = (0, 1, 2, 42, 126, 127, 255)
SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGKILL, signal.SIGSEGV)


def test_exit_codes_and_deaths_by_signal(ch: Chanctl) -> None:
    jobs = {f"code-{n}": (n, ["sh", "-c", f"exit {n}"]) for n in CODES}
    for sig in SIGNALS:
        jobs[f"sig-{sig.name}"] = (128 + sig, ["sh", "-c", f"kill -{sig.name[3:]} $$"])
    jobs["not-found"] = (127, ["/nonexistent/command"])
    jobs["not-executable"] = (126, [str(HELPERS / "ticker.py")])  # mode 0644
    # All at once: each is a separate wrapper process, and the test stays fast.
    running = {name: start_run(ch, name, *argv, opts=("-q",)) for name, (_, argv) in jobs.items()}
    for name, wrapper in running.items():
        want = jobs[name][0]
        assert wrapper.wait(60) == want, f"{name}: {wrapper.stderr}"
        last = records(name)[-1]
        assert (last["type"], last["data"]) == ("exit", str(want)), name
        assert client().info(name).closed, f"{name} was left open"
    killed = of_type("sig-SIGTERM", "exit")[0]
    assert killed["headers"]["signal"] == "SIGTERM"
    assert float(killed["headers"]["duration_s"]) >= 0
    assert "command not found" in of_type("not-found", "stderr")[0]["data"]


def test_every_status_maps_like_a_shell() -> None:
    """The mapping the wrapper applies, over real wait statuses of all 256 exit codes."""
    for n in range(256):
        pid = os.posix_spawn("/bin/sh", ["sh", "-c", f"exit {n}"], os.environ)
        assert exit_code(os.waitpid(pid, 0)[1]) == n
    for sig in SIGNALS:
        pid = os.posix_spawn("/bin/sh", ["sh", "-c", f"kill -{int(sig)} $$"], os.environ)
        assert exit_code(os.waitpid(pid, 0)[1]) == 128 + sig


def test_no_close_keeps_the_channel_open_and_a_closed_channel_is_refused(ch: Chanctl) -> None:
    first = start_run(ch, "keep", "true", opts=("--no-close",))
    assert first.wait() == 0
    assert not client().info("keep").closed
    ch.ok("close", "keep")
    refused = start_run(ch, "keep", "true")
    assert refused.wait() == 125
    assert "is closed" in refused.stderr
