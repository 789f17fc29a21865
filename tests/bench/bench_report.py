"""The report: one row per figure, each system's median and min-max, and chanctl's ratio.

The ratio is chanctl's median divided by the best median among the peers with the same
durability (fsync before acknowledging): comparing a durable append with one that is
acknowledged before it reaches the disk would flatter the peer. The verdict column reads the
ratio in the row's direction (a rate is better higher, a latency or a size lower) and calls
differences under 20% even, because the machines are shared and runs vary that much.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench_common import Result, Sizes
from bench_systems import BY_KEY, System

NOISE = 0.20  # differences smaller than this are called "even"
Results = Mapping[str, Mapping[str, Result]]  # system key -> workload -> merged result


@dataclass(frozen=True)
class Row:
    """One line of the table: which value of which workload, how to label it."""

    key: str
    workload: str
    label: str
    unit: str
    higher_is_better: bool = True
    peer_key: str | None = None  # the peers' figure to compare with, when it has another key


def rows(sizes: Sizes) -> list[Row]:
    """Every figure, labelled with this run's sizes."""
    n = f"{sizes.stream_messages:,}"
    lat = f"{sizes.latency_rate:,} msg/s for {sizes.latency_seconds:g}s"
    fan = f"{sizes.fanout_readers} readers at {sizes.fanout_rate:,} msg/s"
    return [
        Row("serial", "serial", "1. acked appends, 1 client, one at a time", "msg/s"),
        Row("concurrent", "concurrent",
            f"2. acked appends, {sizes.concurrent_clients} clients", "msg/s"),
        Row("stream", "stream", f"3. streamed appends, 1 client, {n} msgs", "msg/s"),
        Row("lat_p50", "latency", f"4. live latency p50 ({lat})", "ms", False),
        Row("lat_p99", "latency", "4. live latency p99", "ms", False),
        Row("lat_max", "latency", "4. live latency max", "ms", False),
        Row("lat_rate", "latency", "   append rate achieved in 4.", "msg/s"),
        Row("lat_sse_p50", "latency", "4. p50, chanctl via raw SSE (peers: as above)", "ms",
            False, "lat_p50"),
        Row("lat_sse_p99", "latency", "4. p99, chanctl via raw SSE (peers: as above)", "ms",
            False, "lat_p99"),
        Row("catchup", "catchup",
            f"5. catch-up read of {sizes.catchup_messages:,} msgs", "msg/s"),
        Row("fan_rate", "fanout", f"6. fan-out deliveries ({fan})", "msg/s"),
        Row("fan_p99", "fanout", "6. fan-out latency p99", "ms", False),
        Row("fan_send_rate", "fanout", "   append rate achieved in 6.", "msg/s"),
        Row("fan_sse_rate", "fanout", "6. deliveries, chanctl via raw SSE (peers: as above)",
            "msg/s", True, "fan_rate"),
        Row("fan_sse_p99", "fanout", "6. p99, chanctl via raw SSE (peers: as above)", "ms",
            False, "fan_p99"),
        Row("shell_cli", "shell", "7. one publish, own CLI, whole process", "ms", False),
        Row("shell_stdlib", "shell", "7. one publish, stdlib Python, whole process", "ms",
            False),
        Row("shell_pipe", "shell", f"7. seq {sizes.pipe_lines:,} | CLI", "lines/s"),
        Row("rss_idle", "rss", "8. server RSS idle", "MB", False),
        Row("rss_channels", "rss", f"8. server RSS, {sizes.rss_channels:,} channels", "MB",
            False),
        Row("rss_loaded", "rss", f"8.   + {sizes.rss_readers:,} idle live readers", "MB", False),
    ]  # fmt: skip


@dataclass(frozen=True)
class Cell:
    """One system's figure: the median and the spread over the repeated runs."""

    median: float
    low: float
    high: float
    runs: list[float]


@dataclass(frozen=True)
class Line:
    """A computed row: every system's cell, the best durable peer and chanctl's ratio to it."""

    row: Row
    cells: dict[str, Cell | None]
    best_peer: str | None
    ratio: float | None
    verdict: str


def cell(results: Results, system: str, row: Row) -> Cell | None:
    """``system``'s figure for ``row``; peers show ``peer_key`` where the row names one."""
    key = row.peer_key if row.peer_key and system != "chanctl" else row.key
    result = results.get(system, {}).get(row.workload)
    if result is None or key not in result.values:
        return None
    runs = result.runs.get(key) or [result.values[key]]
    return Cell(result.values[key], min(runs), max(runs), list(runs))


def best_durable_peer(row: Row, cells: Mapping[str, Cell | None]) -> str | None:
    """The durable peer with the best median on this row, if any ran."""
    peers = [
        (c.median, key)
        for key, c in cells.items()
        if c is not None and key != "chanctl" and BY_KEY[key].durable and c.median > 0
    ]
    if not peers:
        return None
    return (max(peers) if row.higher_is_better else min(peers))[1]


def verdict(row: Row, ratio: float | None) -> str:
    """``ahead``/``behind``/``even`` for chanctl, in the row's better direction."""
    if ratio is None:
        return ""
    better = ratio if row.higher_is_better else 1 / ratio
    if better >= 1 + NOISE:
        return "ahead"
    if better <= 1 / (1 + NOISE):
        return "behind"
    return "even"


def compute(results: Results, row_list: Sequence[Row], systems: Sequence[System]) -> list[Line]:
    """Every row that has at least one figure, with its comparison."""
    lines = []
    for row in row_list:
        cells = {s.key: cell(results, s.key, row) for s in systems}
        if all(c is None for c in cells.values()):
            continue
        peer = best_durable_peer(row, cells)
        ours = cells.get("chanctl")
        ratio = None
        if peer is not None and ours is not None and ours.median > 0:
            peer_cell = cells[peer]
            assert peer_cell is not None
            ratio = ours.median / peer_cell.median
        lines.append(Line(row, cells, peer, ratio, verdict(row, ratio)))
    return lines


def fmt(value: float | None) -> str:
    """Whole numbers with thousands separators from 100 up, three significant digits below."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def short(value: float) -> str:
    """Three significant digits with a k/M suffix: the compact form for min-max ranges."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale * 0.9995:  # 999.6 reads as 1k, not 1e+03
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def fmt_cell(c: Cell | None) -> str:
    if c is None:
        return "-"
    if len(c.runs) < 2:
        return fmt(c.median)
    return f"{fmt(c.median)} ({short(c.low)}-{short(c.high)})"


def table(lines: Sequence[Line], systems: Sequence[System]) -> str:
    """The main table as aligned text."""
    head = ["figure", "unit", *(s.heading for s in systems), "chanctl / best durable peer", ""]
    out = [head]
    for line in lines:
        ratio = ""
        if line.ratio is not None and line.best_peer is not None:
            ratio = f"{line.ratio:.2f}x {BY_KEY[line.best_peer].heading}"
        cells = [fmt_cell(line.cells[s.key]) for s in systems]
        out.append([line.row.label, line.row.unit, *cells, ratio, line.verdict])
    return align(out)


def align(lines: list[list[str]]) -> str:
    """Columns padded to their widest cell: text left, figures right."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for n, line in enumerate(lines):
        cells = [
            c.ljust(w) if i < 2 or i == len(line) - 1 else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths).rstrip())
    return "\n".join(out)


CPU_WORKLOADS = ("serial", "concurrent", "stream", "catchup", "fanout")


def cpu_table(results: Results, systems: Sequence[System]) -> str:
    """Client and server CPU during each timed window, as % of one core.

    On two cores a Python client near 100% means the figure is bounded by the bench client,
    not by the server; this table is how a reader tells the two apart.
    """
    lines = [["workload (client% / server%)", *(s.heading for s in systems)]]
    for workload in CPU_WORKLOADS:
        cells = []
        for system in systems:
            result = results.get(system.key, {}).get(workload)
            if result is None or "client_pct" not in result.extras:
                cells.append("-")
                continue
            cpu = result.extras
            cells.append(f"{cpu['client_pct']:.0f}% / {cpu['server_pct']:.0f}%")
        if any(c != "-" for c in cells):
            lines.append([workload, *cells])
    return align(lines) if len(lines) > 1 else ""


def extra_notes(results: Results) -> list[str]:
    """Context figures that have no row of their own (medians over the runs)."""
    notes = []
    ours = results.get("chanctl", {})
    catchup = ours.get("catchup")
    if catchup is not None and "restart_s" in catchup.extras:
        notes.append(
            "chanctl catch-up was read through a daemon restarted on the loaded data; "
            f"the restart took {catchup.extras['restart_s']:.2f}s"
        )
    rss = ours.get("rss")
    if rss is not None and "create_per_s" in rss.extras:
        notes.append(
            "chanctl channel creation (create + one publish, 16 clients): "
            f"{rss.extras['create_per_s']:,.0f} channels/s"
        )
    shell = ours.get("shell")
    if shell is not None and "python_start_ms" in shell.extras:
        notes.append(f"`python -c pass` takes {shell.extras['python_start_ms']:.1f} ms here")
    return notes


def as_json(lines: Sequence[Line]) -> list[dict[str, Any]]:
    """The computed rows in a form ``json.dumps`` takes and the chart reads back."""
    return [
        {
            **asdict(line.row),
            "cells": {k: (asdict(c) if c else None) for k, c in line.cells.items()},
            "best_peer": line.best_peer,
            "ratio": line.ratio,
            "verdict": line.verdict,
        }
        for line in lines
    ]
