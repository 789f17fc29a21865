"""The README's library example runs as printed (against a real daemon)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from daemonkit import DaemonProcess, TestEnv

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_library_example_runs(daemon: DaemonProcess, tenv: TestEnv) -> None:
    section = README.read_text().split("## Python library", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python example in the README's library section"
    run = subprocess.run(
        [sys.executable, "-c", match.group(1)],
        env=tenv.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "999 message line 998",
        "1000 message line 999",
        "['line 0', 'line 1']",
    ]
