"""Draw the benchmark's JSON results as one PNG: a small bar chart per figure.

    python tests/bench/bench_chart.py tests/bench/results.json tests/bench/results.png

Each panel has its own scale (messages per second and milliseconds do not share an axis), a
bar per system at its median with a whisker from the fastest to the slowest run, and says
which way is better. chanctl is the dark bar; peers that fsync before acknowledging, as
chanctl does, are solid; those that acknowledge first are hatched, so a fast but lossy figure
never reads as a like-for-like comparison. Drawn from the JSON (not from live results) so the
committed chart can be redrawn without re-running the benchmark; needs matplotlib (the
``bench`` extra).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

COLUMNS = 3
LOG_SPAN = 30.0  # medians further apart than this get a log axis
COLORS = {"chanctl": "#1f4e79", "redis": "#c0392b", "nats": "#27ae60"}


def draw(doc: dict[str, Any], out: Path) -> None:
    """Write the chart of ``doc`` (what run.py saves as JSON) to ``out``."""
    import matplotlib

    matplotlib.use("Agg")  # no display: CI and servers
    import matplotlib.pyplot as plt

    rows = doc["rows"]
    systems = doc["systems"]
    nrows = math.ceil(len(rows) / COLUMNS)
    fig, axes = plt.subplots(nrows, COLUMNS, figsize=(16, 2.3 * nrows + 1.2), squeeze=False)
    for ax, row in zip(axes.flat, rows, strict=False):
        _panel(ax, row, systems)
    for ax in list(axes.flat)[len(rows) :]:
        ax.set_visible(False)
    fig.suptitle(_title(doc), fontsize=13, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(out, dpi=80)
    plt.close(fig)


def _title(doc: dict[str, Any]) -> str:
    machine = doc.get("machine", {})
    return (
        "chanctl vs Redis Streams vs NATS JetStream, 100-byte messages, "
        f"median of {doc.get('repeat', 1)} runs (whiskers: min-max); "
        f"{machine.get('cpus', '?')} CPUs, {doc.get('when', '')}\n"
        "dark: chanctl (fsync always); solid: peers that fsync before acking; "
        "hatched: peers that ack before fsync"
    )


def _panel(ax: Any, row: dict[str, Any], systems: list[dict[str, Any]]) -> None:
    """One figure: a horizontal bar per system at its median, a min-max whisker, the median
    written past the whisker. A log scale when the medians span more than LOG_SPAN, or the
    small bars (often chanctl's) would be invisible next to a peer that fell far behind."""
    ypos = list(range(len(systems)))[::-1]
    bars = [(y, s, row["cells"].get(s["key"])) for y, s in zip(ypos, systems, strict=True)]
    ran = [(y, s, c) for y, s, c in bars if c is not None]
    log = _wants_log([c["median"] for _y, _s, c in ran])
    for y, system, c in ran:
        ax.barh(y, c["median"], **_bar_style(system))
        whisker = [[c["median"] - c["low"]], [c["high"] - c["median"]]]
        ax.errorbar([c["median"]], [y], xerr=whisker, fmt="none", ecolor="#333", capsize=2, lw=0.8)
    left, right = _limits([c for _y, _s, c in ran], log)
    if log:
        ax.set_xscale("log")
    ax.set_xlim(left, right)
    for y, _system, c in bars:
        ax.text(*_label_at(c, left, right, log), y, _fmt(c["median"]) if c else "n/a",
                va="center", fontsize=7)  # fmt: skip
    ax.set_yticks(ypos, [s["heading"] for s in systems], fontsize=8)
    ax.set_title(f"{row['label'].strip()}\n{_subtitle(row, log)}", fontsize=9, loc="left")
    ax.tick_params(axis="x", labelsize=7)
    ax.xaxis.set_major_formatter(lambda value, _pos: _short(value))
    ax.grid(axis="x", alpha=0.3)


def _wants_log(medians: list[float]) -> bool:
    positive = [m for m in medians if m > 0]
    return len(positive) > 1 and max(positive) / min(positive) > LOG_SPAN


def _limits(cells: list[dict[str, Any]], log: bool) -> tuple[float, float]:
    """The x range: room past the longest whisker for its label."""
    highs = [c["high"] for c in cells] or [1.0]
    if log:
        lows = [c["low"] for c in cells if c["low"] > 0] or [1.0]
        return min(lows) / 3, max(highs) * 8
    return 0.0, max(highs) * 1.35 or 1.0


def _label_at(cell: dict[str, Any] | None, left: float, right: float, log: bool) -> tuple[float]:
    """Where a bar's label starts: just past its whisker (at the axis start for "n/a")."""
    if cell is None:
        return (left * 1.1 if log else right * 0.01,)
    return (cell["high"] * 1.15 if log else cell["high"] + right * 0.015,)


def _subtitle(row: dict[str, Any], log: bool) -> str:
    """Unit, direction, and chanctl's ratio to the best durable peer where there is one (kept
    under ~70 characters: a panel is a third of the figure wide)."""
    better = "higher" if row["higher_is_better"] else "lower"
    text = f"{row['unit']}{' (log)' if log else ''}, {better} is better"
    if row.get("ratio") is not None and row.get("best_peer"):
        text += f"; chanctl {row['ratio']:.2f}x best durable peer: {row['verdict']}"
    return text


def _bar_style(system: dict[str, Any]) -> dict[str, Any]:
    color = COLORS.get(system["family"], "#777777")
    if system["key"] == "chanctl":
        return {"color": color}
    if system["durable"]:
        return {"color": color, "alpha": 0.85}
    return {"color": "white", "edgecolor": color, "hatch": "///", "alpha": 0.9}


def _short(value: float) -> str:
    """Axis ticks: 0, 500, 50k, 1.5M."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    draw(json.loads(Path(argv[0]).read_text()), Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
