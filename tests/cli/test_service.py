"""``chanctl daemon install|uninstall`` (issue 9): systemd user units with socket activation,
a launchd agent on macOS.

The units are checked three ways: line by line, by ``systemd-analyze verify`` (systemd's own
parser, which also checks that ExecStart's program exists), and by running them: the test binds
the socket the way the socket unit says and starts the service's ExecStart the way systemd does
(``sdkit``), then the CLI must reach that daemon on its default socket. No user systemd runs in
containers, so talking to the manager is checked against a recording ``systemctl`` stand-in
placed first on PATH (and the real one is never called: it could touch a developer's session).
"""

from __future__ import annotations

import json
import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

from clikit import Chanctl
from daemonkit import TestEnv
from sdkit import activated, listening_socket

from chanctl import units

RECORDING_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$(dirname "$0")/calls"
if [ "$1 $2" = "--user show-environment" ] && [ -n "$NO_USER_BUS" ]; then
  echo "Failed to connect to bus: No medium found" >&2
  exit 1
fi
exit 0
"""


def stub_path(tenv: TestEnv) -> tuple[dict[str, str], Path]:
    """An environment whose ``systemctl`` records its arguments in the returned file."""
    folder = tenv.root / "bin"
    folder.mkdir(exist_ok=True)
    script = folder / "systemctl"
    script.write_text(RECORDING_SYSTEMCTL)
    script.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}, folder / "calls"


UNITS = ("chanctl.socket", "chanctl.service")


def unit_dir(tenv: TestEnv) -> Path:
    return tenv.root / "config" / "systemd" / "user"


def test_units_are_exact_and_systemd_accepts_them(tenv: TestEnv) -> None:
    ch = Chanctl(tenv)
    env, _ = stub_path(tenv)
    done = ch("daemon", "install", "--no-enable", "--fsync", "interval:100", "--max-age", "7d",
              env=env)  # fmt: skip
    assert done.code == 0, done.err
    assert "not enabled" in done.err and "--no-enable" in done.err
    assert "systemctl --user enable --now chanctl.socket" in done.err
    sock_unit = units.parse_unit((unit_dir(tenv) / "chanctl.socket").read_text())
    assert sock_unit["Socket.ListenStream"] == [str(tenv.socket)]
    assert sock_unit["Socket.SocketMode"] == ["0600"]
    assert sock_unit["Socket.DirectoryMode"] == ["0700"]
    assert sock_unit["Install.WantedBy"] == ["sockets.target"]
    service = units.parse_unit((unit_dir(tenv) / "chanctl.service").read_text())
    assert service["Unit.Requires"] == ["chanctl.socket"]
    assert service["Service.Restart"] == ["on-failure"]
    argv = units.split_exec(service["Service.ExecStart"][0])
    assert argv[:4] == [sys.executable, "-m", "chanctl.daemon", "--foreground"]
    flags = dict(zip(argv[4::2], argv[5::2], strict=True))
    assert flags == {
        "--socket": str(tenv.socket),
        "--data-dir": str(tenv.data_dir),
        "--fsync": "interval:100",
        "--max-age": "7d",
    }
    # What install wrote is what it printed first.
    assert f"# {unit_dir(tenv) / 'chanctl.service'}" in done.text
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed (Debian: apt-get install systemd)"
    verify = subprocess.run(
        [analyze, "--user", "verify", *(str(unit_dir(tenv) / n) for n in UNITS)],
        env=tenv.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")


def test_the_installed_service_serves_the_cli(tenv: TestEnv) -> None:
    """Run what the units say, as systemd would: the CLI finds the daemon on its own socket."""
    ch = Chanctl(tenv)
    assert ch("daemon", "install", "--no-enable", "-q").code == 0
    sock_unit = units.parse_unit((unit_dir(tenv) / "chanctl.socket").read_text())
    service = units.parse_unit((unit_dir(tenv) / "chanctl.service").read_text())
    listener = listening_socket(Path(sock_unit["Socket.ListenStream"][0]))
    exec_start = units.split_exec(service["Service.ExecStart"][0])
    with activated(tenv, listener, exec_start=exec_start) as proc:
        assert ch("pub", "svc", "hello").code == 0  # the first request starts nothing: it is up
        assert ch("tail", "svc", "--no-follow").lines == ["hello"]
        status = ch("daemon", "status", "--json")
        assert status.code == 0 and f'"pid": {proc.pid}' in status.text
        # Under systemd the log is the journal: `daemon logs` hands over to journalctl.
        logs = ch("daemon", "logs", "-n", "5")
        assert logs.code == 0, logs.err  # journalctl's status (no journal here: no entries)
        assert "journalctl --user -u chanctl.service --no-pager --lines=5" in logs.err
        doctor = ch("doctor")
        assert doctor.code == 0, doctor.text
        assert "ok   service" in doctor.text and "run by systemd" in doctor.text
    listener.close()


def test_install_twice_then_update_then_uninstall_keeps_data(tenv: TestEnv) -> None:
    ch = Chanctl(tenv)
    env, calls = stub_path(tenv)
    first = ch("daemon", "install", env=env)
    assert first.code == 0, first.err
    assert "installed chanctl.socket and chanctl.service" in first.err
    assert "enabled: the daemon starts on the first connection" in first.err
    assert calls.read_text().splitlines() == [
        "--user show-environment",
        "--user daemon-reload",
        "--user enable --now chanctl.socket",
    ]
    again = ch("daemon", "install", env=env)
    assert again.code == 0 and "already installed, unchanged" in again.err
    assert again.out == b""  # nothing to show: nothing is rewritten
    changed = ch("daemon", "install", "--fsync", "never", env=env)
    assert changed.code == 0 and "already installed; updated" in changed.err
    assert "--user try-restart chanctl.service" in calls.read_text().splitlines()
    assert "--fsync never" in (unit_dir(tenv) / "chanctl.service").read_text()
    tenv.data_dir.mkdir(parents=True)
    (tenv.data_dir / "keep").write_text("channel data")
    calls.unlink()
    gone = ch("daemon", "uninstall", env=env)
    assert gone.code == 0, gone.err
    assert calls.read_text().splitlines() == [
        "--user show-environment",
        "--user disable --now chanctl.socket chanctl.service",
        "--user daemon-reload",
    ]
    assert f"channel data kept in {tenv.data_dir}" in gone.err
    assert not any(unit_dir(tenv).iterdir())
    assert (tenv.data_dir / "keep").read_text() == "channel data"
    twice = ch("daemon", "uninstall", env=env)
    assert twice.code == 0 and "not installed" in twice.err


def test_no_user_manager_writes_the_files_and_says_what_to_run(tenv: TestEnv) -> None:
    ch = Chanctl(tenv)
    env, calls = stub_path(tenv)
    done = ch("daemon", "install", env={**env, "NO_USER_BUS": "1"})
    assert done.code == 0, done.err
    assert "no user systemd is reachable here (Failed to connect to bus" in done.err
    assert "  systemctl --user daemon-reload\n  systemctl --user enable --now chanctl.socket\n" in (
        done.err
    )
    assert calls.read_text().splitlines() == ["--user show-environment"]  # nothing else tried
    assert (unit_dir(tenv) / "chanctl.socket").exists()


def test_install_takes_over_from_a_daemon_started_by_hand(tenv: TestEnv) -> None:
    ch = Chanctl(tenv)
    env, _ = stub_path(tenv)
    assert ch("daemon", "start").code == 0
    pid = json.loads(ch("daemon", "status", "--json").text)["pid"]
    done = ch("daemon", "install", env=env)
    assert done.code == 0, done.err
    assert f"stopped the daemon started by hand (pid {pid})" in done.err
    assert ch("daemon", "status").code == 3  # free for systemd's socket


def test_launchd_agent_has_the_socket_and_the_same_command(tenv: TestEnv) -> None:
    spec = units.ServiceSpec(
        python="/opt/py/bin/python3",
        daemon_flags=("--socket", "/tmp/x/chanctl.sock", "--data-dir", "/d", "--fsync", "always"),
        socket=Path("/tmp/x/chanctl.sock"),
        data_dir=Path("/d"),
        log_file=Path("/l/daemon.log"),
    )
    files = units.service_files(spec, platform="darwin")
    ((path, data),) = files.items()
    assert path == Path.home() / "Library" / "LaunchAgents" / "chanctl.daemon.plist"
    agent = plistlib.loads(data)
    assert agent["Label"] == "chanctl.daemon"
    assert agent["ProgramArguments"] == spec.argv
    assert agent["ProgramArguments"][3] == "--foreground"
    assert agent["Sockets"] == {
        "Listeners": {
            "SockPathName": "/tmp/x/chanctl.sock",
            "SockPathMode": 0o600,
            "SockType": "stream",
            "SockFamily": "Unix",
        }
    }
    assert agent["EnvironmentVariables"] == {"CHANCTL_LAUNCHD_SOCKET": "Listeners"}
    assert agent["KeepAlive"] == {"SuccessfulExit": False}
    assert agent["StandardErrorPath"] == "/l/daemon.log"
    assert plistlib.dumps(agent, sort_keys=True) == data  # a plain, stable plist


def test_exec_start_quoting_round_trips() -> None:
    odd = ["/opt/my py/bin/python", "--data-dir", "/d/100%/$HOME", 'a"b\\c']
    line = " ".join(units.exec_quote(a) for a in odd)
    assert "%%" in line and "$$HOME" in line
    assert units.split_exec(line) == odd
