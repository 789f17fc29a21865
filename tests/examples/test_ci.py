"""examples/ci: a CI step wrapped in `chanctl run` streams to a daemon on a "shared host"
(TCP + token), a developer's tail on another "machine" follows it live by name, the step exits
with the build's status, and the job log has the CI's fold markers and no ANSI escapes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from daemonkit import DaemonProcess, StartDaemon, TestEnv, cli, free_port
from examplekit import EXAMPLES

STEP = EXAMPLES / "ci" / "chanctl-step.sh"
# Waits (on a FIFO, no polling) until the test has seen the first line on the laptop.
BUILD = 'echo "compiling app"; read -r _ < "$GATE"; echo "tests: 12 passed"; exit "$BUILD_EXIT"'


class Host:
    """The shared host: a daemon listening on TCP with a bearer token."""

    def __init__(self, tenv: TestEnv, start_daemon: StartDaemon) -> None:
        self.port = free_port()
        start_daemon("--listen", f"127.0.0.1:{self.port}")
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = tenv.token_file.read_text().strip()


def _machine(base: dict[str, str], root: Path, **env: str) -> dict[str, str]:
    """Another machine: its own (empty) chanctl dirs, so the daemon is only reachable by TCP."""
    home = Path(tempfile.mkdtemp(prefix="m", dir=root))
    for d in ("run", "data", "state", "config"):
        (home / d).mkdir(mode=0o700)
    bindir = os.path.dirname(sys.executable)
    return {
        **{k: v for k, v in base.items() if not k.startswith(("CHANCTL_", "CI", "GIT"))},
        "XDG_RUNTIME_DIR": str(home / "run"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_STATE_HOME": str(home / "state"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "PATH": f"{bindir}:{base['PATH']}",
        "CHANCTL_NO_AUTOSTART": "1",
        **env,
    }


@pytest.fixture
def host(tenv: TestEnv, start_daemon: StartDaemon) -> Host:
    return Host(tenv, start_daemon)


def _lines(stream: object) -> Iterator[str]:
    yield from iter(stream.readline, "")  # type: ignore[attr-defined]


CASES = {
    "github": (
        {
            "GITHUB_ACTIONS": "true",
            "GITHUB_REPOSITORY": "acme/app",
            "GITHUB_RUN_ID": "4711",
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_JOB": "build",
        },
        "ci/acme/app/4711.1/build",
    ),
    "gitlab": (
        {
            "GITLAB_CI": "true",
            "CI_PROJECT_PATH": "acme/app",
            "CI_PIPELINE_ID": "88",
            "CI_JOB_NAME_SLUG": "build",
            "CI_JOB_ID": "9001",
        },
        "ci/acme/app/88/build.9001",
    ),
}


@pytest.mark.parametrize(("ci", "code"), [("github", 0), ("gitlab", 3)])
def test_ci_step_streams_to_a_laptop(tenv: TestEnv, host: Host, ci: str, code: int) -> None:
    ci_env, name = CASES[ci]
    gate = tenv.root / f"gate-{ci}"
    os.mkfifo(gate)
    runner = _machine(
        tenv.env,
        tenv.root,
        CI="true",
        CHANCTL_URL=host.url,
        CHANCTL_TOKEN=host.token,
        GATE=str(gate),
        BUILD_EXIT=str(code),
        **ci_env,
    )
    laptop = _machine(tenv.env, tenv.root, CHANCTL_URL=host.url, CHANCTL_TOKEN=host.token)

    # The developer starts following before the job has even started: by name only.
    tail = subprocess.Popen(
        ["chanctl", "tail", name, "-n", "all", "--type", "stdout", "--exit-status"],
        env=laptop,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tenv.root,
    )
    step = subprocess.Popen(
        ["bash", str(STEP), "sh", "-c", BUILD],
        env=runner,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tenv.root,
    )
    try:
        assert tail.stdout is not None
        seen = next(_lines(tail.stdout))  # live: the build is blocked until we have seen it
        assert seen == "compiling app\n"
        with open(gate, "w") as g:
            g.write("go\n")
        out, err = step.communicate(timeout=60)
        rest, tail_err = tail.communicate(timeout=30)
    finally:
        for proc in (tail, step):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert step.returncode == code, err  # the CI step's status is the build's
    assert tail.returncode == code, tail_err  # and the laptop learns it too
    assert rest == "tests: 12 passed\n"
    assert f"streaming to channel {name!r}".encode() in err

    log = out.decode()
    body = "compiling app\ntests: 12 passed\n"
    if ci == "github":
        assert log == f"::group::chanctl run {name} -- sh -c {_quoted(BUILD)}\n{body}::endgroup::\n"
        assert "\x1b" not in log
    else:
        section = "chanctl_" + re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        start = rf"section_start:\d+:{re.escape(section)}\[collapsed=true\]\r\x1b\[0K"
        pattern = rf"{start}chanctl run {re.escape(name)} -- .*\n{re.escape(body)}"
        pattern += rf"section_end:\d+:{re.escape(section)}\r\x1b\[0K\n"
        assert re.fullmatch(pattern, log), repr(log)
        assert log.count("\x1b") == 2  # only GitLab's own marker escapes
    assert "\x1b" not in err.decode()


def _quoted(cmd: str) -> str:
    import shlex

    return shlex.quote(cmd)


def test_ci_files_parse_and_use_the_step() -> None:
    gh = yaml.safe_load((EXAMPLES / "ci" / "github-actions.yml").read_text())
    steps = gh["jobs"]["build"]["steps"]
    assert any("examples/ci/chanctl-step.sh" in s.get("run", "") for s in steps)
    assert set(gh["jobs"]["build"]["env"]) == {"CHANCTL_URL", "CHANCTL_TOKEN"}
    assert (gh.get("on") or gh.get(True)) is not None  # YAML 1.1 reads `on` as True
    gl = yaml.safe_load((EXAMPLES / "ci" / "gitlab-ci.yml").read_text())
    assert any("examples/ci/chanctl-step.sh" in line for line in gl["build"]["script"])


@pytest.mark.parametrize(
    ("env", "flags"),
    [
        ({"CI": "true"}, []),  # a CI without known markers: plain output
        ({"GITHUB_ACTIONS": "true"}, []),  # not CI=true: not CI mode
        ({"CI": "true", "GITLAB_CI": "true"}, ["-q"]),  # nothing echoed: nothing to fold
    ],
)
def test_no_markers_outside_ci_mode(
    tenv: TestEnv, daemon: DaemonProcess, env: dict[str, str], flags: list[str]
) -> None:
    unset = {"CI": "", "GITHUB_ACTIONS": "", "GITLAB_CI": ""}  # whatever CI runs this test
    argv = ("run", "plain", *flags, "--", "sh", "-c", "printf 'a\\nb'")
    done = cli(tenv, *argv, env={**unset, **env})
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("" if flags else "a\nb")
    assert ("streaming to channel" in done.stderr) == (not flags and "CI" in env)
