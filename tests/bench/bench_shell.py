"""Workload 7: what a publish costs from the shell, as a whole process.

A script that calls ``chanctl pub`` in a loop pays interpreter start-up, imports and a
connection on every call, which no in-process benchmark shows. Each system is measured with
its own command-line tool where it has one (``chanctl pub``, ``redis-cli XADD``; NATS ships
none in the server package) and with the same stdlib-only Python client (``stdlib_pub.py``),
plus a million-line pipe into the tool (``seq N | chanctl pub``, and for Redis the same lines
as inline ``XADD`` commands through ``redis-cli --pipe``).
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import bench_servers
from bench_common import Result, Run, filler

PAYLOAD = filler("s:", 100)
STDLIB_PUB = str(Path(__file__).with_name("stdlib_pub.py"))
PROCESS_TIMEOUT_S = 60.0
PIPE_TIMEOUT_S = 600.0


class ShellError(RuntimeError):
    """A command of the shell workload failed."""


def _run(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Run one command to completion; its wall time in ms. A failure is an error, never a
    fast figure."""
    start = time.perf_counter()
    done = subprocess.run(
        list(argv), env=env, capture_output=True, timeout=PROCESS_TIMEOUT_S, check=False
    )
    elapsed = (time.perf_counter() - start) * 1e3
    if done.returncode != 0:
        raise ShellError(f"{shlex.join(argv)} exited {done.returncode}: {done.stderr[-300:]!r}")
    return elapsed


def _median_ms(argv: Sequence[str], runs: int, env: dict[str, str] | None = None) -> float:
    return statistics.median(_run(argv, env) for _ in range(runs))


def _pipe(producer: Sequence[str], consumer: Sequence[str], env: dict[str, str] | None) -> float:
    """``producer | consumer`` (a shell pipeline, without a shell); wall seconds."""
    start = time.perf_counter()
    with subprocess.Popen(list(producer), stdout=subprocess.PIPE) as first:
        done = subprocess.run(
            list(consumer),
            stdin=first.stdout,
            env=env,
            capture_output=True,
            timeout=PIPE_TIMEOUT_S,
            check=False,
        )
        assert first.stdout is not None
        first.stdout.close()
    elapsed = time.perf_counter() - start
    if done.returncode != 0 or first.returncode != 0:
        raise ShellError(f"{shlex.join(consumer)} exited {done.returncode}: {done.stderr[-300:]!r}")
    return elapsed


def _python_start_ms(runs: int) -> float:
    """``python -c pass``: the floor under any Python command, for context."""
    return _median_ms([sys.executable, "-c", "pass"], runs)


def chanctl_cli(*args: str) -> list[str]:
    """The installed ``chanctl`` console script next to this Python, or its module."""
    script = shutil.which("chanctl", path=str(Path(sys.executable).parent))
    return [script, *args] if script else [sys.executable, "-m", "chanctl.entry", *args]


def _chanctl_env(workdir: Path, socket_path: Path) -> dict[str, str]:
    env = bench_servers.private_env(workdir)
    env["CHANCTL_URL"] = f"unix://{socket_path}"
    env["CHANCTL_NO_AUTOSTART"] = "1"
    return env


def _chanctl_stored(socket_path: Path, channel: str) -> int:
    import chanctl

    with chanctl.Client(f"unix://{socket_path}", autostart=False) as client:
        return client.info(channel).messages or 0


def _chanctl_sync(run: Run) -> Result:
    result = Result()
    sizes = run.sizes
    with bench_servers.chanctl(run.workdir, fsync="always") as server:
        sock = server.socket_path
        assert sock is not None
        env = _chanctl_env(run.workdir, sock)
        # Untimed warm-ups: create the two channels and bring the CLI's files into the cache.
        _run(chanctl_cli("pub", "stdlib", "warm-up"), env)
        _run(chanctl_cli("pub", "cli", "warm-up"), env)
        result.values["shell_cli"] = _median_ms(
            chanctl_cli("pub", "cli", PAYLOAD), sizes.shell_runs, env
        )
        stdlib = [sys.executable, STDLIB_PUB, "chanctl", str(sock), "stdlib", PAYLOAD]
        result.values["shell_stdlib"] = _median_ms(stdlib, sizes.shell_runs)
        seconds = _pipe(["seq", str(sizes.pipe_lines)], chanctl_cli("pub", "pipe"), env)
        result.values["shell_pipe"] = sizes.pipe_lines / seconds
        result.count("`chanctl pub` messages", sizes.shell_runs + 1, _chanctl_stored(sock, "cli"))
        result.count("stdlib messages", sizes.shell_runs + 1, _chanctl_stored(sock, "stdlib"))
        result.count("piped lines stored", sizes.pipe_lines, _chanctl_stored(sock, "pipe"))
    result.extras["python_start_ms"] = _python_start_ms(sizes.shell_runs)
    return result


def _redis_sync(run: Run) -> Result:
    result = Result()
    sizes = run.sizes
    with bench_servers.redis(run.workdir, run.durable) as server:
        cli = [_redis_cli(), "-h", bench_servers.LOOPBACK, "-p", str(server.port)]
        result.values["shell_cli"] = _median_ms(
            [*cli, "XADD", "cli", "*", "d", PAYLOAD], sizes.shell_runs
        )
        stdlib = [sys.executable, STDLIB_PUB, "redis", str(server.port), "stdlib", PAYLOAD]
        result.values["shell_stdlib"] = _median_ms(stdlib, sizes.shell_runs)
        seconds = _pipe(
            ["sh", "-c", f"seq {sizes.pipe_lines} | sed 's/^/XADD pipe * d /'"],
            [*cli, "--pipe"],
            None,
        )
        result.values["shell_pipe"] = sizes.pipe_lines / seconds
        for key, want in (
            ("cli", sizes.shell_runs),
            ("stdlib", sizes.shell_runs),
            ("pipe", sizes.pipe_lines),
        ):
            result.count(f"redis {key} entries", want, _redis_len(cli, key))
    return result


def _redis_cli() -> str:
    return bench_servers.binary("redis-cli")


def _redis_len(cli: Sequence[str], key: str) -> int:
    out = subprocess.run(
        [*cli, "XLEN", key], capture_output=True, text=True, timeout=30, check=True
    )
    return int(out.stdout.strip() or 0)


def _nats_sync(run: Run) -> Result:
    import bench_nats

    result = Result(notes=["NATS: no command-line publisher ships with nats-server"])
    sizes = run.sizes
    with bench_servers.nats(run.workdir, run.durable) as server:
        asyncio.run(bench_nats.make_stream(server.port))
        stdlib = [sys.executable, STDLIB_PUB, "nats", str(server.port), "bench.stdlib", PAYLOAD]
        result.values["shell_stdlib"] = _median_ms(stdlib, sizes.shell_runs)
        stored = asyncio.run(bench_nats.stored(server.port))
        result.count("nats stdlib messages", sizes.shell_runs, stored)
    return result


async def chanctl(run: Run) -> Result:
    """``chanctl pub`` and the stdlib client, one publish per process; ``seq N | chanctl pub``."""
    return await asyncio.to_thread(_chanctl_sync, run)


async def redis(run: Run) -> Result:
    """``redis-cli XADD`` and the stdlib client per process; ``seq N | sed | redis-cli --pipe``."""
    return await asyncio.to_thread(_redis_sync, run)


async def nats(run: Run) -> Result:
    """The stdlib client per process (nats-server ships no publishing tool)."""
    return await asyncio.to_thread(_nats_sync, run)
