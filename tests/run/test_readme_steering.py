"""The README's steering example runs as printed (against a real daemon), so the documented
library calls cannot drift from the code."""

from __future__ import annotations

from daemonkit import DaemonProcess, TestEnv, readme_python_blocks, run_python


def test_readme_steering_example_runs(daemon: DaemonProcess, tenv: TestEnv) -> None:
    blocks = readme_python_blocks("Steering and wrapping jobs")
    assert blocks, "no python example in the README's steering section"
    run = run_python(tenv, blocks[0])
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["['signal USR1']", "0", "none"]
