"""The CLI's own performance targets (issue 3), measured end to end against a real daemon.

    python tests/bench/bench_cli.py [--messages 1000000] [--runs 21] [--live-rate 50000]

1. `chanctl pub NAME msg` as a whole process vs `python -c pass`, medians of interleaved runs
   (target: at most 8x);
2. `seq N | chanctl pub NAME`, durable (fsync=always) (target: >= 150,000 lines/s);
3. `chanctl replay NAME --raw > /dev/null` over those N messages (target: >= 500,000 msgs/s);
4. `chanctl tail NAME --json` while a publisher appends at the live rate for 5 s (target: it
   keeps up: every message arrives and the lag after the last append stays small).

The daemon runs in a temporary directory with the local store, and is stopped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import chanctl
from chanctl.protocol import parse_time


def chanctl_argv(*args: str) -> list[str]:
    script = shutil.which("chanctl", path=str(Path(sys.executable).parent))
    return [script, *args] if script else [sys.executable, "-m", "chanctl.entry", *args]


def start_daemon(root: Path) -> subprocess.Popen[bytes]:
    (root / "run").mkdir(mode=0o700)
    sock = root / "run" / "chanctl.sock"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chanctl.daemon",
            "--foreground",
            "--fsync",
            "always",
            "--socket",
            str(sock),
            "--data-dir",
            str(root / "data"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(root / "daemon.log", "wb"),
    )
    os.environ["CHANCTL_URL"] = f"unix://{sock}"
    deadline = time.monotonic() + 30
    while True:
        try:
            chanctl.Client(autostart=False, reconnect_timeout=0).health()
            return proc
        except chanctl.errors.ChanctlError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def startup(runs: int) -> None:
    base, pub = [], []
    for i in range(runs):  # interleaved, so both see the same machine state
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        base.append(time.perf_counter() - t)
        t = time.perf_counter()
        subprocess.run(chanctl_argv("pub", "startup", f"message {i}"), check=True)
        pub.append(time.perf_counter() - t)
    b, p = statistics.median(base), statistics.median(pub)
    print(
        f"pub process: median {p * 1000:.1f} ms vs python -c pass {b * 1000:.1f} ms "
        f"= {p / b:.1f}x (target <= 8x)"
    )


def pipe_publish(n: int, root: Path) -> None:
    data = root / "seq.txt"
    data.write_bytes(b"".join(b"%d\n" % i for i in range(1, n + 1)))
    with open(data, "rb") as stdin:
        t = time.perf_counter()
        subprocess.run(chanctl_argv("pub", "big"), stdin=stdin, check=True)
        dt = time.perf_counter() - t
    print(f"seq {n} | chanctl pub: {dt:.2f} s = {n / dt:,.0f} lines/s (target >= 150,000)")


def replay_raw(n: int, runs: int = 3) -> None:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(
            chanctl_argv("replay", "big", "--raw"), stdout=subprocess.DEVNULL, check=True
        )
        times.append(time.perf_counter() - t)
    dt = statistics.median(times)
    print(
        f"replay --raw of {n} (median of {runs}): {dt:.2f} s = {n / dt:,.0f} msgs/s "
        f"(target >= 500,000)"
    )


def live_tail(rate: int, seconds: float = 5.0) -> None:
    """A reader thread consumes the tail's stdout as it comes and notes, per line, how long
    after the producer stamped it the line arrived (the publisher runs in this thread)."""
    client = chanctl.Client()
    client.create("live")
    tail = subprocess.Popen(
        chanctl_argv("tail", "live", "--json", "-n", "0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    lags: list[float] = []
    reader = threading.Thread(target=_read_lags, args=(tail, lags))
    reader.start()
    time.sleep(0.5)  # let the tail reach the live phase before the clock starts
    per_tick, sent = max(1, rate // 100), 0  # one batch every 10 ms
    start = time.perf_counter()
    while sent < rate * seconds:
        client.publish_many("live", [f"m{sent + i}" for i in range(per_tick)])
        sent += per_tick
        delay = start + (sent / rate) - time.perf_counter()
        if delay > 0:
            time.sleep(delay)  # pacing the publisher to the target rate
    achieved = sent / (time.perf_counter() - start)
    client.close("live")
    reader.join(60)
    _, _, usage = os.wait4(tail.pid, 0)
    cpu = usage.ru_utime + usage.ru_stime
    lags.sort()
    p50, p99 = lags[len(lags) // 2] * 1000, lags[int(len(lags) * 0.99)] * 1000
    print(
        f"tail --json at {achieved:,.0f} msgs/s for {seconds:.0f} s: received {len(lags)}/{sent}"
        f", lag p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {lags[-1] * 1000:.1f} ms, tail CPU "
        f"{cpu:.2f} s (target: keeps up)"
    )


def _read_lags(tail: subprocess.Popen[bytes], lags: list[float]) -> None:
    assert tail.stdout is not None
    for line in tail.stdout:
        stamp = json.loads(line)["time"]
        lags.append(time.time() - parse_time(stamp))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--live-rate", type=int, default=50_000)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ccb", dir="/tmp"))
    daemon = start_daemon(root)
    try:
        startup(args.runs)
        pipe_publish(args.messages, root)
        replay_raw(args.messages)
        live_tail(args.live_rate)
    finally:
        daemon.terminate()
        daemon.wait(30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
