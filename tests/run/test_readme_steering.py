"""The README's steering example runs as printed (against a real daemon), so the documented
library calls cannot drift from the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from daemonkit import DaemonProcess, TestEnv

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_steering_example_runs(daemon: DaemonProcess, tenv: TestEnv) -> None:
    section = README.read_text().split("## Steering and wrapping jobs", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python example in the README's steering section"
    run = subprocess.run(
        [sys.executable, "-c", match.group(1)],
        env=tenv.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["['signal USR1']", "0", "none"]
