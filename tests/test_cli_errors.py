"""Errors reach the user once, as ``error:`` and ``hint:`` lines, with the documented exit code.

Guards style rule 8: typed errors are converted in one place, usage mistakes exit 2, tracebacks
appear only with ``--debug``.
"""

from __future__ import annotations

from daemonkit import TestEnv, cli


def test_bad_listen_address_is_a_usage_error(tenv: TestEnv) -> None:
    result = cli(tenv, "daemon", "start", "--listen", "nowhere")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: invalid --listen address 'nowhere': expected HOST:PORT",
        "hint: for example --listen 127.0.0.1:4437 (port 0 picks a free port)",
    ]


def test_listen_host_names_refused(tenv: TestEnv) -> None:
    result = cli(tenv, "daemon", "start", "--listen", "example.com:80")
    assert result.returncode == 2
    assert "use an IP address" in result.stderr


def test_bad_fsync_policy(tenv: TestEnv) -> None:
    result = cli(tenv, "daemon", "start", "--fsync", "sometimes")
    assert result.returncode == 2
    assert result.stderr.startswith("error: invalid fsync policy 'sometimes'")
    assert not (tenv.root / "state" / "chanctl").exists(), "nothing may be spawned or created"


def test_socket_path_too_long(tenv: TestEnv) -> None:
    long_path = "/tmp/" + "x" * 120 + "/chanctl.sock"
    result = cli(tenv, "daemon", "status", "--socket", long_path)
    assert result.returncode == 1
    assert "more than the 100 a unix socket allows" in result.stderr
    assert "hint: set CHANCTL_SOCKET (or --socket) to a shorter path" in result.stderr


def test_traceback_only_with_debug(tenv: TestEnv) -> None:
    plain = cli(tenv, "daemon", "status")
    assert "Traceback" not in plain.stderr
    debug = cli(tenv, "--debug", "daemon", "status")
    assert debug.returncode == 3
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.rstrip().endswith("hint: start one with `chanctl daemon start`")


def test_unknown_option_exits_2(tenv: TestEnv) -> None:
    assert cli(tenv, "daemon", "start", "--frobnicate").returncode == 2


def test_version(tenv: TestEnv) -> None:
    import chanctl

    result = cli(tenv, "--version")
    assert (result.returncode, result.stdout) == (0, f"chanctl {chanctl.__version__}\n")


def test_env_socket_is_used(tenv: TestEnv) -> None:
    sock = tenv.root / "elsewhere.sock"
    result = cli(tenv, "daemon", "status", env={"CHANCTL_SOCKET": str(sock)})
    assert result.returncode == 3
    assert str(sock) in result.stderr
