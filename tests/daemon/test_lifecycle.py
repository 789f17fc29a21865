"""Daemon lifecycle as users and service managers see it: start, status, stop, refusals.

Guards the socket-lifecycle rules (style rule 7): one daemon per socket and per data directory,
stale sockets replaced, foreign files at the socket path never touched, and a clean exit 0 on
SIGTERM that leaves no socket or pid file behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys

import pytest
from daemonkit import DaemonProcess, StartDaemon, TestEnv, cli, http_unix, wait_for


def test_cli_start_status_stop(tenv: TestEnv) -> None:
    started = cli(tenv, "daemon", "start", "--store", "memory")
    assert started.returncode == 0, started.stderr
    assert "started daemon (pid " in started.stderr
    assert http_unix(tenv.socket, "GET", "/v1/health").status == 200

    status = cli(tenv, "daemon", "status")
    assert status.returncode == 0, status.stderr
    holder = json.loads((tenv.runtime_dir / "chanctl.lock").read_text())
    for expected in (f"pid {holder['pid']}", str(tenv.socket), str(tenv.data_dir), "fsync"):
        assert expected in status.stdout
    assert str(tenv.log_file) in status.stdout

    as_json = json.loads(cli(tenv, "daemon", "status", "--json").stdout)
    assert as_json["pid"] == holder["pid"]
    assert as_json["data_dir"] == str(tenv.data_dir)
    assert as_json["listen"] is None

    stopped = cli(tenv, "daemon", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped daemon (pid {holder['pid']})" in stopped.stderr
    assert not tenv.socket.exists()
    assert not tenv.pid_file.exists()
    assert cli(tenv, "daemon", "status").returncode == 3


def test_status_exits_3_when_no_daemon(tenv: TestEnv) -> None:
    result = cli(tenv, "daemon", "status")
    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr.startswith("error: no chanctl daemon is running")
    assert "hint: start one with `chanctl daemon start`" in result.stderr
    assert not tenv.runtime_dir.exists(), "status must not create directories"


def test_stop_without_daemon_is_a_no_op(tenv: TestEnv) -> None:
    result = cli(tenv, "daemon", "stop")
    assert result.returncode == 0
    assert "no daemon was running" in result.stderr


def test_cli_start_refuses_when_running(tenv: TestEnv, daemon: DaemonProcess) -> None:
    result = cli(tenv, "daemon", "start", "--store", "memory")
    assert result.returncode == 1
    assert f"already running (pid {daemon.pid}" in result.stderr
    assert "chanctl daemon stop" in result.stderr


def test_cli_start_foreground_exits_0_on_sigint(tenv: TestEnv) -> None:
    argv = [sys.executable, "-m", "chanctl.cli", "daemon", "start", "--foreground"]
    with open(tenv.root / "fg.stderr", "wb") as err:
        proc = subprocess.Popen(
            [*argv, "--store", "memory"],
            env=tenv.env,
            stdin=subprocess.DEVNULL,
            stderr=err,
            cwd=tenv.root,
        )
    try:
        wait_for(lambda: _healthy(tenv), 15, "the foreground daemon to answer")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
        assert "received SIGINT" in (tenv.root / "fg.stderr").read_text()
        assert not tenv.socket.exists()
    finally:
        proc.kill()
        proc.wait()


def _healthy(tenv: TestEnv) -> bool:
    try:
        return http_unix(tenv.socket, "GET", "/v1/health", timeout=1).status == 200
    except OSError:
        return False


def test_second_daemon_on_same_socket_refused(
    tenv: TestEnv, daemon: DaemonProcess, start_daemon: StartDaemon
) -> None:
    second = start_daemon(wait=False)
    assert second.wait_exit() == 1
    assert f"already running for this socket (pid {daemon.pid}" in second.stderr
    assert "chanctl daemon stop" in second.stderr
    assert daemon.healthy(), "the first daemon must keep its socket"


def test_second_daemon_on_same_data_dir_refused(
    tenv: TestEnv, daemon: DaemonProcess, start_daemon: StartDaemon
) -> None:
    other = tenv.root / "other"
    other.mkdir(mode=0o700)
    second = start_daemon("--socket", str(other / "x.sock"), wait=False)
    assert second.wait_exit() == 1
    assert f"already running for this data directory (pid {daemon.pid}" in second.stderr
    assert not (other / "x.sock").exists()


def test_stale_socket_is_replaced(tenv: TestEnv, start_daemon: StartDaemon) -> None:
    tenv.runtime_dir.mkdir(mode=0o700)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(tenv.socket))  # bound, never listened: connect gets ECONNREFUSED
    assert stat.S_ISSOCK(os.lstat(tenv.socket).st_mode)
    daemon = start_daemon()
    assert daemon.healthy()


@pytest.mark.parametrize("kind", ["regular file", "symlink"])
def test_foreign_file_at_socket_path_is_left_alone(
    tenv: TestEnv, start_daemon: StartDaemon, kind: str
) -> None:
    tenv.runtime_dir.mkdir(mode=0o700)
    target = tenv.root / "precious.txt"
    target.write_text("do not touch\n")
    if kind == "symlink":
        tenv.socket.symlink_to(target)
    else:
        tenv.socket.write_text("do not touch\n")
    daemon = start_daemon(wait=False)
    assert daemon.wait_exit() != 0
    assert "refusing to touch it" in daemon.stderr
    assert os.path.islink(tenv.socket) == (kind == "symlink")
    assert tenv.socket.read_text() == "do not touch\n"
    assert target.read_text() == "do not touch\n"


def test_cli_start_failure_names_the_log(tenv: TestEnv) -> None:
    tenv.runtime_dir.mkdir(mode=0o700)
    tenv.socket.write_text("not a socket\n")
    result = cli(tenv, "daemon", "start", "--store", "memory")
    assert result.returncode == 1
    assert "the daemon exited with status 1 while starting" in result.stderr
    assert "refusing to touch it" in result.stderr
    assert f"hint: the full log is {tenv.log_file}" in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_0_and_cleans_up(daemon: DaemonProcess, tenv: TestEnv, signum: int) -> None:
    assert tenv.socket.exists() and tenv.pid_file.exists()
    assert tenv.pid_file.read_text().strip() == str(daemon.pid)
    daemon.signal(signum)
    assert daemon.wait_exit() == 0
    assert not tenv.socket.exists()
    assert not tenv.pid_file.exists()
    assert f"received {signal.Signals(signum).name}: shutting down" in daemon.stderr


def test_restart_after_sigterm(tenv: TestEnv, start_daemon: StartDaemon) -> None:
    first = start_daemon()
    first.signal(signal.SIGTERM)
    assert first.wait_exit() == 0
    assert start_daemon().healthy()


def test_restart_after_kill_9(tenv: TestEnv, start_daemon: StartDaemon) -> None:
    first = start_daemon()
    first.signal(signal.SIGKILL)
    first.wait_exit()
    assert tenv.socket.exists(), "a crash leaves the socket behind"
    assert start_daemon().healthy(), "the next start must replace the stale socket"


def test_logs_go_to_the_state_dir(tenv: TestEnv, start_daemon: StartDaemon) -> None:
    daemon = start_daemon(foreground=False)
    log = tenv.log_file.read_text()
    assert f"ready: pid {daemon.pid}" in log
    assert stat.S_IMODE(os.stat(tenv.log_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tenv.log_file.parent).st_mode) == 0o700
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0
    assert "daemon stopped" in tenv.log_file.read_text()
    assert daemon.stderr == "", "without --foreground nothing goes to stderr"
