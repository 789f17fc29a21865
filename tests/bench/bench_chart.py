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
    """One figure: a horizontal bar per system, labelled with its median."""
    labels, medians, lows, highs, styles = [], [], [], [], []
    for system in systems:
        c = row["cells"].get(system["key"])
        labels.append(system["heading"])
        medians.append(c["median"] if c else 0.0)
        lows.append(c["median"] - c["low"] if c else 0.0)
        highs.append(c["high"] - c["median"] if c else 0.0)
        styles.append((system, c is not None))
    ypos = list(range(len(labels)))[::-1]
    for y, median, (system, ran) in zip(ypos, medians, styles, strict=True):
        if ran:
            ax.barh(y, median, **_bar_style(system))
    ax.errorbar(medians, ypos, xerr=[lows, highs], fmt="none", ecolor="#333333", capsize=2, lw=0.8)
    _label_bars(ax, ypos, medians, styles)
    ax.set_yticks(ypos, labels, fontsize=8)
    ax.set_title(f"{row['label'].strip()}\n{_subtitle(row)}", fontsize=9, loc="left")
    ax.tick_params(axis="x", labelsize=7)
    ax.xaxis.set_major_formatter(lambda value, _pos: _short(value))
    ax.set_xlim(0, max(m + h for m, h in zip(medians, highs, strict=True)) * 1.35 or 1)
    ax.grid(axis="x", alpha=0.3)


def _subtitle(row: dict[str, Any]) -> str:
    """Unit, direction, and chanctl's ratio to the best durable peer where there is one."""
    better = "higher is better" if row["higher_is_better"] else "lower is better"
    text = f"{row['unit']}, {better}"
    if row.get("ratio") is not None and row.get("best_peer"):
        text += f"; chanctl {row['ratio']:.2f}x best durable peer ({row['verdict']})"
    return text


def _bar_style(system: dict[str, Any]) -> dict[str, Any]:
    color = COLORS.get(system["family"], "#777777")
    if system["key"] == "chanctl":
        return {"color": color}
    if system["durable"]:
        return {"color": color, "alpha": 0.85}
    return {"color": "white", "edgecolor": color, "hatch": "///", "alpha": 0.9}


def _label_bars(ax: Any, ypos: list[int], medians: list[float], styles: list[Any]) -> None:
    """The median as text at the end of each bar ("n/a" where the system has no figure)."""
    top = max(medians) if medians else 0.0
    for y, median, (_system, ran) in zip(ypos, medians, styles, strict=True):
        text = _fmt(median) if ran else "n/a"
        ax.text(median + top * 0.02, y, text, va="center", fontsize=7)


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
