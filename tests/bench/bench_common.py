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
JSON_TYPE = "application/json"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
_STARTED = time.monotonic()


@dataclass(frozen=True)
class Sizes:
    """How big each workload is; ``--quick`` picks the small set for a smoke run."""

    append_seconds: float = 10.0
    append_clients: int = 16
    batch_seconds: float = 10.0
    batch_messages: int = 1000
    batches_in_flight: int = 4
    catchup_messages: int = 1_000_000
    fill_seconds: float = 240.0  # bound on loading the catch-up data set
    latency_rate: int = 1000
    latency_seconds: float = 5.0
    rss_channels: int = 10_000
    rss_readers: int = 1000
    setup_seconds: float = 180.0  # bound on creating channels and opening readers


QUICK = Sizes(
    append_seconds=2.0,
    batch_seconds=2.0,
    catchup_messages=100_000,
    fill_seconds=60.0,
    latency_seconds=1.0,
    rss_channels=500,
    rss_readers=100,
    setup_seconds=60.0,
)


@dataclass
class Result:
    """One workload's figures for one system, plus what a reader needs to trust them.

    ``values`` maps a row key of the report to a number. ``extras`` holds context: how busy the
    bench process and the server were (on two cores a Python client can be the bottleneck
    rather than the server, and the table alone would hide that), restart times and the like.
    """

    values: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extras: dict[str, float] = field(default_factory=dict)
    runs: dict[str, list[float]] = field(default_factory=dict)  # every run's value (--repeat)


def merge(results: Sequence[Result]) -> Result:
    """Medians over repeated runs (the machine is shared and noisy), keeping every run's
    value in ``runs`` so the spread is visible in the JSON output."""
    merged = Result()
    for result in results:
        for key, value in result.values.items():
            merged.runs.setdefault(key, []).append(value)
        merged.notes += [n for n in result.notes if n not in merged.notes]
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


def json_message(tag: str) -> bytes:
    """A JSON string that is exactly MESSAGE_BYTES long on the wire, quotes included."""
    return b'"' + filler(tag, MESSAGE_BYTES - 2).encode() + b'"'


def raw_message(tag: str) -> bytes:
    """A MESSAGE_BYTES payload for the peers, which store bytes without JSON framing."""
    return filler(tag, MESSAGE_BYTES).encode()


def json_batch(count: int, tag: str = "b") -> bytes:
    """A JSON array of ``count`` 100-byte messages: one POST, ``count`` messages (JSON mode)."""
    return b"[" + b",".join(json_message(f"{tag}{i}:") for i in range(count)) + b"]"


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


def record_latency(
    result: Result, sent: dict[int, tuple[int, int]], seen: dict[int, int], label: str
) -> None:
    """p50/p99 in ms of send-start -> delivery (the headline) and of ack -> delivery.

    ``seen`` maps a message number to the perf_counter_ns at which the reader got it.
    """
    from_send = sorted((seen[i] - t[0]) / 1e6 for i, t in sent.items() if i in seen)
    from_ack = sorted((seen[i] - t[1]) / 1e6 for i, t in sent.items() if i in seen)
    if not from_send:
        result.notes.append(f"{label} latency: the reader saw no message")
        return
    result.values["lat_p50"] = percentile(from_send, 0.50)
    result.values["lat_p99"] = percentile(from_send, 0.99)
    result.values["lat_ack_p50"] = percentile(from_ack, 0.50)
    result.values["lat_ack_p99"] = percentile(from_ack, 0.99)
    seconds = (max(t[0] for t in sent.values()) - min(t[0] for t in sent.values())) / 1e9
    if seconds > 0:
        result.values["lat_rate"] = (len(sent) - 1) / seconds
    if len(from_send) < len(sent):
        result.notes.append(f"{label} latency: {len(sent) - len(from_send)} messages never seen")


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
