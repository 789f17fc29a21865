"""The CLI must start fast: agents call chanctl in loops and every shell Tab re-runs it.

Guards the lazy-import rule (cli.md 3.3): importing ``chanctl.cli`` must not pull in rich,
aiohttp, httpx, pydantic or the daemon package, and ``chanctl --help`` must stay inside a
start-up budget. The budget here is loose (shared CI machines are noisy); the numbers measured
on an idle machine are in the README.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import pytest
from daemonkit import TestEnv

HEAVY = ("rich", "aiohttp", "httpx", "pydantic", "chanctl.daemon")
BUDGET_S = 0.5


def _imported_modules(code: str, tenv: TestEnv) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=tenv.env,
        cwd=tenv.root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode in (0, 3), result.stderr
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


@pytest.mark.parametrize(
    "code",
    [
        "import chanctl.cli",
        "import sys; sys.argv = ['chanctl', '--help']\nfrom chanctl.cli import main\nmain()",
        "import sys; sys.argv = ['chanctl', 'daemon', 'status']\nfrom chanctl.cli import main\n"
        "main()",
    ],
    ids=["import", "help", "status"],
)
def test_no_heavy_imports(tenv: TestEnv, code: str) -> None:
    names = _imported_modules(code, tenv)
    assert "chanctl.cli" in names
    heavy = sorted(n for n in names if any(n == h or n.startswith(h + ".") for h in HEAVY))
    assert heavy == [], f"the CLI imported heavy modules at start-up: {heavy}"


def test_help_within_budget(tenv: TestEnv) -> None:
    argv = [sys.executable, "-c", "from chanctl.cli import main; main()", "--help"]
    samples = []
    for _ in range(7):
        began = time.perf_counter()
        done = subprocess.run(argv, env=tenv.env, cwd=tenv.root, capture_output=True, timeout=60)
        samples.append(time.perf_counter() - began)
        assert done.returncode == 0
    assert statistics.median(samples) < BUDGET_S, f"chanctl --help took {samples}"
