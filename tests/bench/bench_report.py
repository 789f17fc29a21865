"""The printed table: one row per figure, one column per system, the target and the ratios.

Ratios are chanctl divided by the peer. For rates (higher is better) a ratio above 1 means
chanctl is faster; for latencies and memory (lower is better) a ratio below 1 means chanctl
uses less. The "meets" column compares chanctl with the issue's target only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench_common import Result, Sizes

SYSTEMS = ("chanctl", "redis", "nats")
HEADINGS = {"chanctl": "chanctl", "redis": "Redis always", "nats": "NATS always"}


@dataclass(frozen=True)
class Row:
    """One line of the table: which value, how to label it, and the target if there is one."""

    key: str
    workload: str
    label: str
    unit: str
    target: float | None = None
    higher_is_better: bool = True


def rows(sizes: Sizes) -> list[Row]:
    """The figures of the issue's performance section, labelled with this run's sizes."""
    n_catch = f"{sizes.catchup_messages:,}"
    n_ch, n_rd = f"{sizes.rss_channels:,}", f"{sizes.rss_readers:,}"
    batch = f"{sizes.batch_messages}-msg batches, {sizes.batches_in_flight} in flight"
    return [
        Row("appends", "appends", f"1. acked appends, {sizes.append_clients} clients", "msg/s",
            10_000),
        Row("batches", "batches", f"2. batched appends, 1 client, {batch}", "msg/s", 150_000),
        Row("catchup", "catchup", f"3. catch-up read of {n_catch} messages", "msg/s", 1_000_000),
        Row("lat_p50", "latency", "4. live latency p50, send -> reader", "ms", 1, False),
        Row("lat_p99", "latency", "4. live latency p99, send -> reader", "ms", 2, False),
        Row("lat_ack_p50", "latency", "   live latency p50, ack -> reader", "ms", None, False),
        Row("lat_ack_p99", "latency", "   live latency p99, ack -> reader", "ms", None, False),
        Row("lat_rate", "latency", "   append rate achieved during 4.", "msg/s", None),
        Row("rss_idle", "rss", "5. server RSS, idle after start", "MB", 60, False),
        Row("rss_channels", "rss", f"   server RSS, {n_ch} channels", "MB", None, False),
        Row("rss_loaded", "rss", f"5. server RSS, {n_ch} channels + {n_rd} live readers", "MB",
            200, False),
    ]  # fmt: skip


def fmt(value: float | None) -> str:
    """Whole numbers with thousands separators from 100 up, three significant digits below."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def meets(row: Row, value: float | None) -> str:
    if row.target is None or value is None:
        return ""
    ok = value >= row.target if row.higher_is_better else value <= row.target
    return "yes" if ok else "NO"


def _target(row: Row) -> str:
    if row.target is None:
        return ""
    return ("≥ " if row.higher_is_better else "≤ ") + fmt(row.target)


def ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or ours <= 0 or theirs <= 0:
        return ""  # ack -> reader latencies can be negative: a ratio would mislead
    return f"{ours / theirs:.2f}x"


def table(
    results: Mapping[str, Mapping[str, Result]], row_list: Sequence[Row], systems: Sequence[str]
) -> str:
    """The main table as aligned text; rows of workloads that did not run are left out."""
    ran = {w for per in results.values() for w in per}
    peers = [s for s in systems if s != "chanctl"]
    head = ["figure", "unit", *(HEADINGS[s] for s in systems), "target", "meets"]
    head += [f"chanctl/{HEADINGS[p].split()[0]}" for p in peers]
    lines = [head]
    for row in row_list:
        if row.workload not in ran:
            continue
        vals = {s: _value(results, s, row) for s in systems}
        line = [row.label, row.unit, *(fmt(vals[s]) for s in systems), _target(row)]
        line.append(meets(row, vals.get("chanctl")))
        line += [ratio(vals.get("chanctl"), vals[p]) for p in peers]
        lines.append(line)
    return _align(lines)


def _value(results: Mapping[str, Mapping[str, Result]], system: str, row: Row) -> float | None:
    result = results.get(system, {}).get(row.workload)
    return None if result is None else result.values.get(row.key)


def _align(lines: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for n, line in enumerate(lines):
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def cpu_table(results: Mapping[str, Mapping[str, Result]], systems: Sequence[str]) -> str:
    """Client and server CPU during each timed window, as % of one core.

    On two cores a Python client near 100% means the figure is bounded by the bench client,
    not by the server; this table is how a reader tells the two apart.
    """
    lines = [["workload (client% / server%)", *(HEADINGS[s] for s in systems)]]
    for workload in ("appends", "batches", "catchup"):
        cells = []
        for system in systems:
            result = results.get(system, {}).get(workload)
            if result is None or "client_pct" not in result.extras:
                cells.append("-")
                continue
            cpu = result.extras
            cells.append(f"{cpu['client_pct']:.0f}% / {cpu['server_pct']:.0f}%")
        if any(c != "-" for c in cells):
            lines.append([workload, *cells])
    return _align(lines) if len(lines) > 1 else ""


def extra_notes(results: Mapping[str, Mapping[str, Result]]) -> list[str]:
    """Context figures that have no row of their own (medians when --repeat was given)."""
    notes = []
    catchup = results.get("chanctl", {}).get("catchup")
    if catchup is not None and "restart_s" in catchup.extras:
        notes.append(
            f"chanctl catch-up was read through a daemon restarted on the loaded data; "
            f"the restart took {catchup.extras['restart_s']:.2f}s"
        )
    rss = results.get("chanctl", {}).get("rss")
    if rss is not None and "create_per_s" in rss.extras:
        notes.append(
            f"chanctl channel creation (PUT + one POST, 16 at a time): "
            f"{rss.extras['create_per_s']:,.0f} channels/s"
        )
    return notes
