"""Pieces every benchmark half shares: sizes, payloads, results, clocks and process meters.

The three systems (chanctl, Redis, NATS) must be measured with the same message sizes, the
same loop bounds and the same clocks, or the ratios the table prints mean nothing. Keeping
those definitions here, in one place, is what makes the comparison side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MESSAGE_BYTES = 100
WARM_SEQ = 999_999_999  # the number of the warm-up message that proves a live reader is live
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
_STARTED = time.monotonic()


@dataclass(frozen=True)
class Sizes:
    """How big each workload is; ``--smoke`` picks the small set (seconds, not minutes)."""

    serial_seconds: float = 10.0  # 1. one client, one append at a time
    concurrent_seconds: float = 10.0  # 2. N clients, one append at a time each
    concurrent_clients: int = 16
    stream_messages: int = 1_000_000  # 3. one client streaming/pipelining
    stream_seconds: float = 90.0  # bound on 3. (a peer that fsyncs each message is slow)
    stream_window: int = 1000  # messages per pipeline / unacknowledged async publishes
    latency_rate: int = 1000  # 4. appends/s with one live reader
    latency_seconds: float = 10.0
    catchup_messages: int = 1_000_000  # 5.
    fill_seconds: float = 240.0  # bound on loading, and on reading, the catch-up data set
    fanout_readers: int = 100  # 6. live readers of one channel
    fanout_rate: int = 1000
    fanout_seconds: float = 10.0
    shell_runs: int = 11  # 7. whole-process publishes per run (the median is kept)
    pipe_lines: int = 1_000_000  # 7. `seq N | chanctl pub`
    rss_channels: int = 10_000  # 8.
    rss_readers: int = 1000
    setup_seconds: float = 300.0  # bound on creating channels and opening readers


SMOKE = Sizes(
    serial_seconds=0.5,
    concurrent_seconds=0.5,
    stream_messages=20_000,
    stream_seconds=30.0,
    latency_seconds=0.5,
    catchup_messages=20_000,
    fill_seconds=30.0,
    fanout_readers=10,
    fanout_seconds=0.5,
    shell_runs=2,
    pipe_lines=10_000,
    rss_channels=200,
    rss_readers=20,
    setup_seconds=30.0,
)


@dataclass(frozen=True)
class Run:
    """What one workload function gets: its private temp dir, the sizes, and whether the
    server under test must fsync before acknowledging (the peers run both ways)."""

    workdir: Path
    sizes: Sizes
    durable: bool = True


@dataclass
class Result:
    """One workload's figures for one system, plus what a reader needs to trust them.

    ``values`` maps a row key of the report to a number. ``counts`` maps what was counted to
    [expected, seen]: a benchmark that loses or duplicates messages must fail, not print a fast
    figure, so every workload records how many messages it sent and how many the server (or
    the readers) ended up with. ``extras`` holds context: how busy the bench process and the
    server were (on two cores a Python client can be the bottleneck rather than the server,
    and the table alone would hide that), restart times and the like.
    """

    values: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extras: dict[str, float] = field(default_factory=dict)
    runs: dict[str, list[float]] = field(default_factory=dict)  # every run's value (--repeat)
    counts: dict[str, list[int]] = field(default_factory=dict)

    def count(self, what: str, expected: int, seen: int) -> None:
        """Record a message count to verify; ``expected`` must be positive to prove anything."""
        self.counts[what] = [expected, seen]

    def miscounts(self) -> list[str]:
        """Every recorded count that does not match, or that counted nothing at all."""
        return [
            f"{what}: expected {want:,}, counted {got:,}"
            for what, (want, got) in self.counts.items()
            if want != got or want <= 0
        ]


def merge(results: Sequence[Result]) -> Result:
    """Medians over repeated runs (the machine is shared and noisy), keeping every run's
    value in ``runs`` so the report can show the spread (min-max) next to the median."""
    merged = Result()
    for result in results:
        for key, value in result.values.items():
            merged.runs.setdefault(key, []).append(value)
        merged.notes += [n for n in result.notes if n not in merged.notes]
        for what, (want, got) in result.counts.items():
            total = merged.counts.setdefault(what, [0, 0])
            total[0] += want
            total[1] += got
    merged.values = {k: statistics.median(v) for k, v in merged.runs.items()}
    keys = {k for r in results for k in r.extras}
    merged.extras = {
        k: statistics.median([r.extras[k] for r in results if k in r.extras]) for k in keys
    }
    return merged


def progress(message: str) -> None:
    """One line on stderr with the time since start, so long steps do not look hung."""
    print(f"[{time.monotonic() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def filler(prefix: str, total: int) -> str:
    """``prefix`` padded with a fixed letter to exactly ``total`` ASCII characters."""
    if len(prefix) > total:
        raise ValueError(f"prefix {prefix!r} longer than {total}")
    return prefix + "x" * (total - len(prefix))


def raw_message(tag: str) -> bytes:
    """A MESSAGE_BYTES payload for the peers, which store bytes without JSON framing."""
    return filler(tag, MESSAGE_BYTES).encode()


def tag_seq(text: str, marker: str) -> int | None:
    """The number between ``marker`` and the next ``:`` in a payload, or None if absent."""
    if not text.startswith(marker):
        return None
    end = text.find(":", len(marker))
    digits = text[len(marker) : end] if end > 0 else ""
    return int(digits) if digits.isdigit() else None


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty sequence."""
    if not sorted_values:
        raise ValueError("no samples")
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, in MB (10^6 bytes)."""
    total = 0
    for each in [pid, *descendants(pid)]:
        try:
            fields = Path(f"/proc/{each}/statm").read_text().split()
        except OSError:
            continue
        total += int(fields[1]) * _PAGE_BYTES
    return total / 1e6


def descendants(pid: int) -> list[int]:
    """Child processes, recursively, read from /proc (a server may fork helpers)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for kid in map(int, kids):
            found += [kid, *descendants(kid)]
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time that ``pid`` has used so far (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


class CpuMeter:
    """CPU use of this process and of a server over one timed window, as % of one core."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self._wall = time.perf_counter()
        self._client = time.process_time()
        self._server = cpu_seconds(server_pid)

    def read(self) -> dict[str, float]:
        wall = max(time.perf_counter() - self._wall, 1e-9)
        return {
            "client_pct": 100 * (time.process_time() - self._client) / wall,
            "server_pct": 100 * (cpu_seconds(self.server_pid) - self._server) / wall,
        }


class Deadline:
    """A wall-clock bound that every benchmark loop checks, next to its count bound."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())


def throughput(result: Result, key: str, count: int, seconds: float, cpu: CpuMeter) -> None:
    """Record ``count`` operations over ``seconds`` as a rate, with the CPU seen meanwhile."""
    result.values[key] = count / seconds if seconds > 0 else 0.0
    result.extras.update(cpu.read())


async def paced_sends(
    rate: int, total: int, send: Callable[[int], Awaitable[None]]
) -> dict[int, tuple[int, int]]:
    """Call ``send(i)`` at start + i/rate (never earlier), one at a time, awaiting each ack;
    if acks take longer than 1/rate the rate drops (recorded as ``lat_rate``).

    Returns, per message, the perf_counter_ns just before sending and just after the ack, so
    latency can be stated from either point with the same clock the reader uses.
    """
    sent: dict[int, tuple[int, int]] = {}
    start = time.perf_counter()
    stop = Deadline(2 * total / rate + 5)  # a slow server lowers the rate, not the bound
    for i in range(total):
        if stop.expired():
            break
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        before = time.perf_counter_ns()
        await send(i)
        sent[i] = (before, time.perf_counter_ns())
    return sent


async def settle(
    seen: dict[int, int], total: int, reader: asyncio.Task[None] | None = None
) -> None:
    """Give a reader a bounded moment to see the last messages, then stop its task (if the
    reader is a task rather than a subscription callback)."""
    stop = Deadline(5)
    while len(seen) < total and not stop.expired():
        if reader is not None and reader.done():
            break
        await asyncio.sleep(0.01)
    if reader is not None:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


def delays_ms(
    sent: dict[int, tuple[int, int]], seen: dict[int, int], from_ack: bool
) -> list[float]:
    """Sorted delays in ms from each send (or its ack) to its delivery, for delivered ones.

    ``seen`` maps a message number to the perf_counter_ns at which a reader got it.
    """
    side = 1 if from_ack else 0
    return sorted((seen[i] - t[side]) / 1e6 for i, t in sent.items() if i in seen)


def send_rate(sent: dict[int, tuple[int, int]]) -> float:
    """Appends per second actually achieved by a paced writer (0 for fewer than two)."""
    starts = [t[0] for t in sent.values()]
    seconds = (max(starts) - min(starts)) / 1e9 if len(starts) > 1 else 0.0
    return (len(starts) - 1) / seconds if seconds > 0 else 0.0


def record_latency(
    result: Result,
    sent: dict[int, tuple[int, int]],
    seen: dict[int, int],
    label: str,
    prefix: str = "lat",
) -> None:
    """p50/p99/max in ms of send-start -> delivery (the headline), p50/p99 of ack -> delivery,
    the rate achieved, and the delivered count for the smoke check; keys start with
    ``prefix`` so one workload can record two kinds of reader."""
    result.count(f"{prefix}: reader deliveries", len(sent), len(seen.keys() & sent.keys()))
    from_send = delays_ms(sent, seen, from_ack=False)
    from_ack = delays_ms(sent, seen, from_ack=True)
    if not from_send:
        result.notes.append(f"{label} latency: the reader saw no message")
        return
    result.values[f"{prefix}_p50"] = percentile(from_send, 0.50)
    result.values[f"{prefix}_p99"] = percentile(from_send, 0.99)
    result.values[f"{prefix}_max"] = from_send[-1]
    result.values[f"{prefix}_ack_p50"] = percentile(from_ack, 0.50)
    result.values[f"{prefix}_ack_p99"] = percentile(from_ack, 0.99)
    result.values[f"{prefix}_rate"] = send_rate(sent)


async def wait_until(
    ready: Callable[[], bool], tasks: Sequence[asyncio.Task[None]], seconds: float
) -> None:
    """Poll ``ready()`` until it holds (bounded by ``seconds``). A reader task that ended
    meanwhile raises its own error here, or a RuntimeError if it ended quietly."""
    stop = Deadline(seconds)
    while not ready():
        for task in tasks:
            if task.done():
                task.result()
                raise RuntimeError("a live reader ended early")
        if stop.expired():
            raise RuntimeError(f"live readers not ready after {seconds:g}s")
        await asyncio.sleep(0.01)


async def stop_tasks(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Cancel reader tasks and wait for them, so no connection outlives its server."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def settle_all(seens: Sequence[dict[int, int]], total: int, seconds: float = 10) -> None:
    """Wait (bounded) until every reader has seen ``total`` messages; fan-out readers share
    one deadline so 100 slow readers cost at most ``seconds``, not 100 times that."""
    stop = Deadline(seconds)
    while any(len(seen) < total for seen in seens) and not stop.expired():
        await asyncio.sleep(0.02)


def record_fanout(
    result: Result,
    sent: dict[int, tuple[int, int]],
    seens: Sequence[dict[int, int]],
    prefix: str = "fan",
) -> None:
    """Deliveries/s over all readers (first send to last delivery), and p50/p99/max of
    send -> delivery across every delivery; every reader must get every message."""
    delivered = sum(len(seen.keys() & sent.keys()) for seen in seens)
    result.count(f"{prefix}: deliveries", len(sent) * len(seens), delivered)
    delays: list[float] = []
    for seen in seens:
        delays += delays_ms(sent, seen, from_ack=False)
    if not delays:
        result.notes.append(f"{prefix}: no reader saw a message")
        return
    delays.sort()
    first = min(t[0] for t in sent.values())
    last = max(max(seen.values()) for seen in seens if seen)
    result.values[f"{prefix}_rate"] = delivered / max((last - first) / 1e9, 1e-9)
    result.values[f"{prefix}_p50"] = percentile(delays, 0.50)
    result.values[f"{prefix}_p99"] = percentile(delays, 0.99)
    result.values[f"{prefix}_max"] = delays[-1]
    result.values[f"{prefix}_send_rate"] = send_rate(sent)


def fsync_micros(directory: Path, count: int = 200) -> float:
    """Median µs of a serial 100-byte write + fdatasync in ``directory``: the disk's floor for
    one durable append without group commit, printed so figure 1 can be read against it."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    samples = []
    try:
        for _ in range(count):
            start = time.perf_counter_ns()
            os.write(fd, b"x" * MESSAGE_BYTES)
            os.fdatasync(fd)
            samples.append((time.perf_counter_ns() - start) / 1e3)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return percentile(sorted(samples), 0.5)
