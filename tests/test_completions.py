"""The checked-in completion shims must be exactly what ``chanctl completions SHELL`` prints.

Packagers copy ``completions/`` into the standard directories, so a drift between the files and
the generator would ship stale scripts (pueue regenerates and compares in the same way).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from daemonkit import TestEnv, cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_checked_in_file_matches_generator(tenv: TestEnv, shell: str) -> None:
    result = cli(tenv, "completions", shell)
    assert result.returncode == 0, result.stderr
    checked_in = (ROOT / "completions" / f"chanctl.{shell}").read_text()
    assert result.stdout == checked_in, (
        f"completions/chanctl.{shell} is stale: regenerate it with "
        f"`chanctl completions {shell} > completions/chanctl.{shell}`"
    )
    assert "_CHANCTL_COMPLETE" in checked_in


def test_unknown_shell_is_a_usage_error(tenv: TestEnv) -> None:
    result = cli(tenv, "completions", "tcsh")
    assert result.returncode == 2
    assert "error: unsupported shell 'tcsh'" in result.stderr


def test_the_shim_protocol_completes_commands(tenv: TestEnv) -> None:
    env = {
        "_CHANCTL_COMPLETE": "complete_bash",
        "COMP_WORDS": "chanctl daemon st",
        "COMP_CWORD": "2",
    }
    result = cli(tenv, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["start", "stop", "status"]


def test_completions_is_hidden_from_help(tenv: TestEnv) -> None:
    assert "completions" not in cli(tenv, "--help").stdout


def test_service_commands_complete(tenv: TestEnv) -> None:
    def complete(words: str, cword: str) -> list[str]:
        env = {"_CHANCTL_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": cword}
        result = cli(tenv, env=env)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert complete("chanctl daemon ", "2") == [
        "start",
        "stop",
        "status",
        "install",
        "uninstall",
        "logs",
    ]
    assert complete("chanctl do", "1") == ["doctor"]
    assert "--no-enable" in complete("chanctl daemon install --no", "3")
