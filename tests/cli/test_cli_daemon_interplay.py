"""The CLI and the daemon process together: auto-start (and its races), CHANCTL_NO_AUTOSTART,
`--url`/CHANCTL_TOKEN over TCP, and a tail that survives a daemon restart without losing or
repeating a message."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable

from clikit import Chanctl, read_until
from daemonkit import DaemonProcess, TestEnv, wait_for

StartDaemon = Callable[..., DaemonProcess]


def test_first_command_starts_the_daemon(ch_nodaemon: Chanctl, tenv: TestEnv) -> None:
    run = ch_nodaemon.ok("pub", "demo", "hello")
    assert "started daemon" in run.err
    assert ch_nodaemon.ok("tail", "demo", "--no-follow").lines == ["hello"]
    quiet = ch_nodaemon.ok("-q", "tail", "demo", "--no-follow")
    assert quiet.err == ""


def test_five_racing_commands_start_one_daemon(ch_nodaemon: Chanctl, tenv: TestEnv) -> None:
    procs = [ch_nodaemon.popen("pub", "race", f"m{i}") for i in range(5)]
    results = [(p.wait(60), p.stderr.read().decode() if p.stderr else "") for p in procs]
    assert all(code == 0 for code, _ in results), results
    assert sum("started daemon" in err for _, err in results) == 1
    lines = ch_nodaemon.ok("tail", "race", "-n", "all", "--no-follow").lines
    assert sorted(lines) == [f"m{i}" for i in range(5)]
    holders = list(tenv.root.rglob("chanctl.lock"))
    assert len(holders) == 1


def test_no_autostart_exits_69(ch_nodaemon: Chanctl) -> None:
    run = ch_nodaemon("pub", "x", "hi", env={"CHANCTL_NO_AUTOSTART": "1"})
    assert run.code == 69
    assert run.err.startswith("error: no daemon at unix://")
    assert "chanctl daemon start" in run.err
    assert not list(ch_nodaemon.tenv.root.rglob("chanctl.sock"))


def test_tcp_url_with_token(start_daemon: StartDaemon, tenv: TestEnv) -> None:
    daemon = start_daemon("--listen", "127.0.0.1:0")
    host, port = daemon.tcp_address()
    url = f"http://{host}:{port}"
    token = tenv.token_file.read_text().strip()
    ch = Chanctl(tenv)
    env = {"CHANCTL_URL": url, "CHANCTL_TOKEN": token}
    ch.ok("pub", "tcp", "over tcp", env=env)
    assert ch.ok("tail", "tcp", "--no-follow", env=env).lines == ["over tcp"]
    refused = ch("pub", "tcp", "x", env={"CHANCTL_URL": url, "CHANCTL_TOKEN": "wrong"})
    assert refused.code == 1 and "CHANCTL_TOKEN" in refused.err


def test_tail_survives_daemon_restart_without_loss_or_duplicates(
    start_daemon: StartDaemon, tenv: TestEnv
) -> None:
    ch = Chanctl(tenv)
    first = start_daemon(store="local")
    ch.ok("pub", "r", *[f"a{i}" for i in range(100)])
    tail = ch.popen("tail", "r", "-n", "all", "--json")
    assert tail.stdout is not None
    seen = read_until(tail.stdout, b'"data":"a99"')
    os.kill(first.pid, signal.SIGKILL)  # a crash, not a clean stop
    first.wait_exit()
    assert ch("pub", "r", "x", env={"CHANCTL_NO_AUTOSTART": "1"}).code == 69  # no daemon
    start_daemon(store="local")
    ch.ok("pub", "r", *[f"b{i}" for i in range(100)])
    ch.ok("close", "r")
    assert tail.wait(60) == 0
    records = [json.loads(line) for line in (seen + tail.stdout.read()).splitlines()]
    assert [r["seq"] for r in records] == list(range(200))
    assert [r["data"] for r in records] == [f"a{i}" for i in range(100)] + [
        f"b{i}" for i in range(100)
    ]


def test_pub_from_stdin_survives_daemon_restart_exactly_once(
    start_daemon: StartDaemon, tenv: TestEnv
) -> None:
    """A producer keeps writing while the daemon is killed and restarted: every line lands
    exactly once (idempotent producer + retry from the same batch)."""
    ch = Chanctl(tenv)
    first = start_daemon(store="local")
    pub = ch.popen("pub", "p", stdin=-1)  # subprocess.PIPE
    assert pub.stdin is not None
    for i in range(2000):
        pub.stdin.write(f"{i}\n".encode())
    pub.stdin.flush()
    wait_for(lambda: _count(ch, "p") > 0, 30, "first lines to land")
    os.kill(first.pid, signal.SIGKILL)
    first.wait_exit()
    for i in range(2000, 4000):
        pub.stdin.write(f"{i}\n".encode())
    start_daemon(store="local")
    for i in range(4000, 6000):
        pub.stdin.write(f"{i}\n".encode())
    pub.stdin.close()
    assert pub.wait(90) == 0
    lines = ch.ok("tail", "p", "-n", "all", "--no-follow").lines
    assert lines == [str(i) for i in range(6000)]


def _count(ch: Chanctl, name: str) -> int:
    run = ch("info", name, "--json")
    return int(json.loads(run.text)["messages"]) if run.code == 0 else 0
