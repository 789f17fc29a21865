"""`chanctl run` performance targets (issue 4), measured end to end against a real daemon.

    python tests/bench/bench_run.py [--lines 200000] [--trials 7] [--stops 100]

1. A child printing LINES short lines as fast as it can: its own run time under `chanctl run`
   vs writing to /dev/null, medians of interleaved trials (target: at most 1.5x); and the time
   from the child's exit until all its lines are in the channel (target: at most 2 s).
2. `send --wait stop` to a running job: from the moment `send` starts its request until the job
   receives its SIGTERM, p50 and p99 over STOPS trials (target: p99 at most 50 ms).

The child measures its own time and writes it to a side file, so the measurement does not go
through the pipes it measures. The daemon runs in a temporary directory (local store, fsync
always) and is stopped afterwards.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # PYTHONSAFEPATH=1 leaves the script dir out

from bench_cli import chanctl_argv, start_daemon  # noqa: E402

import chanctl  # noqa: E402

PRINTER = """
import sys, time
n, side = int(sys.argv[1]), sys.argv[2]
began = time.perf_counter()
write = sys.stdout.write
for i in range(n):
    write(f"line {i}\\n")
sys.stdout.flush()
took = time.perf_counter() - began
with open(side, "w") as f:
    f.write(f"{took} {time.time()}")
"""

SIGNALLED = """
import os, signal, sys, time
side = sys.argv[1]
def on_term(signum, frame):
    with open(side, "w") as f:
        f.write(repr(time.time()))
    os._exit(0)
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
while True:
    signal.pause()
"""


def child_seconds(side: Path) -> tuple[float, float]:
    took, ended = side.read_text().split()
    return float(took), float(ended)


def lines_in_channel(client: chanctl.Client, name: str, want: int, out: list[float]) -> None:
    """Poll until the channel holds ``want`` messages; record when (bench only: 2 ms steps)."""
    while True:
        end = client.output_end(name)
        if end != "-1" and chanctl.protocol.parse_offset(end) >= want:
            out.append(time.time())
            return
        time.sleep(0.002)


def throughput(root: Path, lines: int, trials: int) -> None:
    script = root / "printer.py"
    script.write_text(PRINTER)
    side = root / "side"
    client = chanctl.Client(autostart=False)
    base, wrapped, landed = [], [], []
    for i in range(trials):  # interleaved, so both see the same machine state
        with open(os.devnull, "wb") as null:
            subprocess.run([sys.executable, str(script), str(lines), str(side)], stdout=null)
        base.append(child_seconds(side)[0])
        name, seen = f"bench-run-{i}", []
        watcher = threading.Thread(target=lines_in_channel, args=(client, name, lines + 1, seen))
        watcher.start()
        argv = chanctl_argv("run", name, "-q", "--", sys.executable, str(script), str(lines))
        subprocess.run([*argv, str(side)], check=True)
        watcher.join()
        took, ended = child_seconds(side)
        wrapped.append(took)
        landed.append(seen[0] - ended)
        client.delete(name)
    b, w = statistics.median(base), statistics.median(wrapped)
    print(f"{lines} lines: child {w * 1000:.0f} ms under `run` vs {b * 1000:.0f} ms to /dev/null")
    paired = statistics.median([r / n for r, n in zip(wrapped, base, strict=True)])
    print(f"  ratio {w / b:.2f}x of medians, {paired:.2f}x median of back-to-back pairs")
    print(f"  (target <= 1.5x); trials run={_ms(wrapped)} null={_ms(base)}")
    print(
        f"  all lines in the channel {statistics.median(landed) * 1000:.0f} ms after the child "
        f"exited (median; max {max(landed) * 1000:.0f} ms; target <= 2000 ms)"
    )


def stop_latency(root: Path, trials: int) -> None:
    script = root / "signalled.py"
    script.write_text(SIGNALLED)
    client = chanctl.Client(autostart=False)
    latencies, returns = [], []
    for i in range(trials):
        name, side = f"bench-stop-{i}", root / f"sig-{i}"
        argv = chanctl_argv("run", name, "-q", "--", sys.executable, str(script), str(side))
        job = subprocess.Popen(argv)
        client.wait(name, for_="match=^ready$", timeout=30)
        client.send(name, "signal WINCH", wait=True, timeout=30)  # steering loop is live
        began = time.time()
        client.send(name, "stop", wait=True, timeout=30)
        returns.append(time.time() - began)
        latencies.append(float(side.read_text()) - began)
        job.wait(30)
        client.delete(name)
    latencies.sort()
    p50, p99 = statistics.median(latencies), latencies[min(len(latencies) - 1, trials * 99 // 100)]
    print(
        f"send --wait stop -> SIGTERM in the job: p50 {p50 * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms over {trials} (target p99 <= 50 ms)"
    )
    back = statistics.median(returns) * 1000
    print(f"  send --wait returned (job gone, ack read): p50 {back:.1f} ms")


def _ms(values: list[float]) -> str:
    return "[" + ", ".join(f"{v * 1000:.0f}" for v in values) + "] ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--trials", type=int, default=7)
    parser.add_argument("--stops", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chanctl-bench-run-", dir="/tmp") as tmp:
        root = Path(tmp)
        os.environ["XDG_STATE_HOME"] = str(root / "state")
        daemon = start_daemon(root)
        try:
            if args.trials:
                throughput(root, args.lines, args.trials)
            if args.stops:
                stop_latency(root, args.stops)
        finally:
            daemon.terminate()
            daemon.wait(30)


if __name__ == "__main__":
    main()
