"""``chanctl daemon install|uninstall``: hand the daemon to the user's service manager.

Installing writes the files (``units.py``) and, where a user systemd (or launchd) answers, loads
them and enables the socket, so the daemon starts on the first connection and again after a
failure or a reboot. Containers, CI runners and ``ssh`` sessions without a user bus have no
manager to talk to: the files are written anyway and the report says what to run, since a
missing manager is a fact about this session, not an error in the installation.

Nothing here prints: the CLI turns the returned report into lines.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import daemonctl, units
from .errors import ChanctlError

MANAGER_TIMEOUT_S = 20.0


@dataclass
class Report:
    """What install or uninstall did, for the CLI to say."""

    files: list[Path]
    state: str  # install: new | updated | unchanged; uninstall: removed | absent
    ran: list[list[str]] = field(default_factory=list)  # manager commands run, in order
    todo: list[str] = field(default_factory=list)  # commands left for the user to run
    note: str | None = None  # why ``todo`` is not empty
    stopped_pid: int | None = None  # a hand-started daemon stopped to free the socket


def _manager(platform: str) -> tuple[str | None, str | None]:
    """(the manager's command, None) when it answers, else (None, why not)."""
    if platform == "darwin":
        exe = shutil.which("launchctl")
        return (exe, None) if exe else (None, "launchctl is not available")
    exe = shutil.which("systemctl")
    if exe is None:
        return None, "systemctl is not installed"
    probe = _run([exe, "--user", "show-environment"])
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"])[-1]
        return None, f"no user systemd is reachable here ({why})"
    return exe, None


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=MANAGER_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"{argv[0]} did not answer in time")


def _enable_commands(platform: str, files: list[Path], restart: bool) -> list[list[str]]:
    if platform == "darwin":
        domain = f"gui/{os.getuid()}"
        return [
            ["launchctl", "bootout", f"{domain}/{units.LAUNCHD_LABEL}"],
            ["launchctl", "bootstrap", domain, str(files[0])],
        ]
    cmds = [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "--now", units.SOCKET_UNIT],
    ]
    if restart:  # a daemon already running under the old unit picks the new options up
        cmds.append(["systemctl", "--user", "try-restart", units.SERVICE_UNIT])
    return cmds


def _disable_commands(platform: str) -> list[list[str]]:
    if platform == "darwin":
        return [["launchctl", "bootout", f"gui/{os.getuid()}/{units.LAUNCHD_LABEL}"]]
    return [
        ["systemctl", "--user", "disable", "--now", units.SOCKET_UNIT, units.SERVICE_UNIT],
        ["systemctl", "--user", "daemon-reload"],
    ]


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def is_current(files: dict[Path, bytes]) -> bool:
    """True if every file already holds exactly these bytes."""
    return all(_read(path) == data for path, data in files.items())


def install(spec: units.ServiceSpec, enable: bool, platform: str = sys.platform) -> Report:
    """Write the service files (atomically; identical files are left alone) and enable them."""
    files = units.service_files(spec, platform)
    old = {path: _read(path) for path in files}
    if is_current(files):
        state = "unchanged"
    else:
        state = "new" if all(v is None for v in old.values()) else "updated"
    if platform == "darwin":  # launchd does not create the socket's directory
        from . import paths

        paths.ensure_private_dir(spec.socket.parent)
    for path, data in files.items():
        if old[path] != data:
            _write(path, data)
    report = Report(list(files), state)
    commands = _enable_commands(platform, list(files), restart=state == "updated")
    exe, why = _manager(platform) if enable else (None, "--no-enable was given")
    hand_started = _hand_started_daemon(spec.socket)
    if exe is None:
        stop = ["chanctl daemon stop"] if hand_started else []
        report.todo = stop + [" ".join(c) for c in commands]
        report.note = why
        return report
    if hand_started:  # the manager is about to own this socket path: free it first
        daemonctl.stop(spec.socket)
        report.stopped_pid = hand_started
    for argv in commands:
        result = _run([exe, *argv[1:]])
        if result.returncode != 0 and argv[1] != "bootout":  # bootout: "not loaded" is fine
            raise ChanctlError(
                f"`{' '.join(argv)}` failed: {result.stderr.strip() or result.returncode}",
                hint="the files are written; fix the error and run `chanctl daemon install` again",
            )
        report.ran.append(argv)
    return report


def _hand_started_daemon(sock: Path) -> int | None:
    """The pid of a daemon on ``sock`` that no service manager runs (``daemon start``)."""
    if not daemonctl.is_running(sock):
        return None
    holder = daemonctl.read_holder(sock)
    if holder.get("service_manager"):
        return None
    pid = holder.get("pid")
    return pid if isinstance(pid, int) else None


def uninstall(platform: str = sys.platform) -> Report:
    """Stop and disable the service if the manager answers, then remove the files.
    Channel data is never touched."""
    files = [p for p in units.installed_files(platform) if p.exists()]
    report = Report(files, "removed" if files else "absent")
    if not files:
        return report
    exe, why = _manager(platform)
    commands = _disable_commands(platform)
    if exe is None:
        report.note = why
        report.todo = [" ".join(c) for c in commands]
    else:
        for argv in commands[:1]:  # stop and disable while the files still exist
            report.ran.append(argv)
            _run([exe, *argv[1:]])  # "not loaded" or "not enabled" are fine here
    for path in files:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    if exe is not None:
        for argv in commands[1:]:
            report.ran.append(argv)
            _run([exe, *argv[1:]])
    return report


def installed_data_dir(platform: str = sys.platform) -> str | None:
    """The ``--data-dir`` the installed service runs with (what uninstall leaves in place)."""
    argv = installed_argv(platform)
    return units.flag_value(argv, "--data-dir") if argv else None


def installed_argv(platform: str = sys.platform) -> list[str] | None:
    """The daemon command line of the installed service, or None when none is installed."""
    path = units.installed_files(platform)[-1]
    data = _read(path)
    if data is None:
        return None
    if platform == "darwin":
        import plistlib

        try:
            args = plistlib.loads(data).get("ProgramArguments")
        except Exception:  # noqa: BLE001 - a damaged plist is reported as "no command line"
            return []
        return [str(a) for a in args] if isinstance(args, list) else []
    lines = units.parse_unit(data.decode(errors="replace")).get("Service.ExecStart", [])
    try:
        return units.split_exec(lines[-1]) if lines else []
    except ValueError:
        return []
