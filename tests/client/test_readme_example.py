"""The README's library example runs as printed (against a real daemon)."""

from __future__ import annotations

from daemonkit import DaemonProcess, TestEnv, readme_python_blocks, run_python


def test_readme_library_example_runs(daemon: DaemonProcess, tenv: TestEnv) -> None:
    blocks = readme_python_blocks("Python library")
    assert blocks, "no python example in the README's library section"
    run = run_python(tenv, blocks[0])
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "999 message line 998",
        "1000 message line 999",
        "['line 0', 'line 1']",
    ]
