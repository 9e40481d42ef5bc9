"""Present benchmark results: a plain-text (Markdown) table and the scaling plot.

The plot redraws from a `results.json` without running the benchmark again:
`python -m mesh.bench.report [bench/results.json] [--output docs/img/scaling.png]`.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from mesh.bench.mesh_scale import RATIO_KEYS
from mesh.bench.runner import FLOW_RATIOS, STEP_TITLES
from mesh.core.errors import ConfigError, MeshError

Json = dict[str, Any]


def _fmt_s(value: float) -> str:
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def _cell(stat: Json) -> str:
    return f"{_fmt_s(stat['median'])} ({_fmt_s(stat['min'])}-{_fmt_s(stat['max'])})"


def table(results: Json) -> str:
    """Markdown tables: every step at every size (median, min-max), flows, sizes, goals."""

    counts = sorted(results["steps"], key=int)
    lines = [
        "Seconds: median (min-max) of op time over "
        f"{results['config']['repeat']} runs; MB: median peak RSS of the step's process.",
        "",
        "| step | " + " | ".join(f"{int(n):,} models: s | MB" for n in counts) + " |",
        "|---|" + "---:|---:|" * len(counts),
    ]
    for step, title in STEP_TITLES.items():
        cells = []
        for n in counts:
            figures = results["steps"][n][step]
            cells += [_cell(figures["op_seconds"]), f"{figures['peak_rss_mb']['median']:.0f}"]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    sizes = results["sizes"]
    lines.append(
        "| full manifest / interface, MB | "
        + " | ".join(
            f"{sizes[n]['manifest_bytes'] / 1e6:.1f} / {sizes[n]['interface_bytes'] / 1e6:.2f} | "
            f"{100 * sizes[n]['interface_bytes'] / sizes[n]['manifest_bytes']:.1f}%"
            for n in counts
        )
        + " |"
    )
    lines += flow_lines(results)
    lines += ["", "| goal | measured | met |", "|---|---:|:---:|"]
    for goal in results["goals"]:
        value = goal["value"]
        shown = f"{100 * value:.1f}%" if "interface" in goal["ratio"] else f"{value:.2f}x"
        lines.append(f"| {goal['goal']} | {shown} | {'yes' if goal['met'] else '**no**'} |")
    return "\n".join(lines)


FLOW_TITLES = {
    "mesh": "`invoke mesh`",
    "poc": "proof of concept's flow (`bench/poc_flow.py`)",
    "bare": "dbt alone, as the mesh runs it (`bench/bare_dbt_flow.py`)",
}


def flow_lines(results: Json) -> list[str]:
    """The template flows (median and min-max wall seconds, peak MB) and their ratios; nothing
    when they were not measured. Results written before a flow was measured lack its row."""

    flows = results.get("flows")
    if not flows:
        return []
    lines = ["", "| flow on the template projects | wall s | MB |", "|---|---:|---:|"]
    for flow, title in FLOW_TITLES.items():
        if flows.get(flow):
            figures = flows[flow]
            lines.append(
                f"| {title} | {_cell(figures['wall_seconds'])} | "
                f"{figures['peak_rss_mb']['median']:.0f} |"
            )
    measured = [(k, v) for k, v in (results.get("ratios") or {}).items() if k in FLOW_RATIOS and v]
    if measured:
        lines.append("")
        lines.append(", ".join(f"{key} {value:.2f}x" for key, value in measured))
    return lines


# --- the scaling plot: one panel per question ----------------------------------------------------
#
# A panel is a function drawing one question on one matplotlib Axes from `results`; `plot` lays
# out PANELS two per row. To add one (say, a many-project mesh), write a function like
# `consumer_parse_time` and append it to PANELS.


@dataclass(frozen=True)
class Style:
    """How one step is drawn in every panel: its direct label, colour and line."""

    label: str
    colour: str
    line: str = "-"


# A qualitative palette (matplotlib's tab10), one colour per step, the same in every panel;
# the reference lines (no upstream, the floor) are grey and dashed.
STYLES = {
    "parse_no_upstream": Style("no upstream (baseline)", "#7f7f7f", "--"),
    "parse_mesh": Style("mesh, generated sources", "#1f77b4"),
    "parse_mesh_loom": Style("mesh, dbt-loom on interface", "#2ca02c"),
    "parse_loom_full": Style("dbt-loom on full manifest", "#d62728"),
    "floor": Style("floor: read + parse manifest", "#444444", "--"),
    "floor_default_gc": Style("floor, GC on", "#9a9a9a", ":"),
    "publish": Style("publish", "#ff7f0e"),
    "republish": Style("publish over latest", "#9467bd"),
    "sync": Style("sync", "#17becf"),
    "validate": Style("validate", "#8c564b"),
}
CONSUMER_STEPS = ("parse_no_upstream", "parse_mesh", "parse_mesh_loom", "parse_loom_full")
PRODUCER_STEPS = ("floor", "floor_default_gc", "publish", "republish", "sync", "validate")
FONT = 13
LABEL_GAP = 0.065  # least vertical distance between two direct labels, in axes height


def _number(value: float, _position: object = None) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:g}"


def _series(results: Json, step: str, metric: str) -> tuple[list[int], list[float]]:
    """(model counts, medians) of `step`, at every size that measured it."""
    counts = sorted((n for n in results["steps"] if step in results["steps"][n]), key=int)
    return [int(n) for n in counts], [results["steps"][n][step][metric]["median"] for n in counts]


def _spread(
    wanted: Sequence[float], gap: float, low: float = 0.02, high: float = 0.94
) -> list[float]:
    """Positions (axes fraction) for labels that want to sit at `wanted`: at least `gap` apart,
    within [low, high], each group of crowded labels centred on where its members want to be."""
    order = sorted(range(len(wanted)), key=lambda i: wanted[i])
    groups: list[list[int]] = []  # runs of labels (indexes into order) stacked `gap` apart
    starts: list[float] = []

    def start_of(group: list[int]) -> float:
        centre = sum(wanted[order[k]] for k in group) / len(group)
        first = centre - gap * (len(group) - 1) / 2
        return min(max(first, low), high - gap * (len(group) - 1))

    for k in range(len(order)):
        groups.append([k])
        starts.append(start_of([k]))
        # merge with the group below while they collide
        while len(groups) > 1 and starts[-2] + gap * len(groups[-2]) > starts[-1]:
            merged = groups[-2] + groups[-1]
            groups[-2:] = [merged]
            starts[-2:] = [start_of(merged)]
    out = [0.0] * len(wanted)
    for group, first in zip(groups, starts, strict=True):
        for position, k in enumerate(group):
            out[order[k]] = first + gap * position
    return out


def _lines(ax: Any, results: Json, steps: Sequence[str], metric: str, unit: str) -> None:
    """One log-log line per step against the upstream model count, each labelled at its end."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    ends: list[tuple[str, float, float]] = []
    for step in steps:
        xs, ys = _series(results, step, metric)
        if not xs:
            continue
        style = STYLES[step]
        ax.plot(xs, ys, style.line, color=style.colour, marker="o", markersize=5, linewidth=2.2)
        ends.append((step, xs[-1], ys[-1]))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(_number))
    counts = sorted({x for _s, x, _y in ends} | {int(n) for n in results["steps"]})
    if counts:
        # room on the right for the labels (they may run on into the margin)
        lo, hi = math.log10(counts[0]), math.log10(counts[-1])
        ax.set_xlim(10 ** (lo - 0.08 * (hi - lo or 1)), 10 ** (hi + 0.45 * (hi - lo or 1)))
        ax.set_xticks(counts, [f"{n:,}" for n in counts])
        ax.minorticks_off()
    ax.set_xlabel("models in the upstream project", fontsize=FONT)
    ax.set_ylabel(unit, fontsize=FONT)
    ax.tick_params(labelsize=FONT - 1)
    ax.grid(True, which="major", alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    to_axes = ax.transScale + ax.transLimits  # data -> axes fraction, whatever the figure size
    wanted = [float(to_axes.transform((x, y))[1]) for _s, x, y in ends]
    for (step, x, y), where in zip(ends, _spread(wanted, LABEL_GAP), strict=True):
        style = STYLES[step]
        text_x = x * 10 ** (0.06 * (math.log10(ax.get_xlim()[1]) - math.log10(ax.get_xlim()[0])))
        ax.annotate(
            style.label,
            xy=(x, y),
            xytext=(text_x, where),
            textcoords=("data", "axes fraction"),
            va="center",
            fontsize=FONT - 1,
            color=style.colour,
            fontweight="bold",
            arrowprops={
                "arrowstyle": "-",
                "color": style.colour,
                "linewidth": 0.8,
                "shrinkA": 0,
                "shrinkB": 4,
            },
        )


def consumer_parse_time(ax: Any, results: Json) -> None:
    _lines(ax, results, CONSUMER_STEPS, "op_seconds", "seconds (median)")
    ax.set_title("Consumer dbt parse: time as the upstream grows", fontsize=FONT + 2, loc="left")


def consumer_memory(ax: Any, results: Json) -> None:
    _lines(ax, results, CONSUMER_STEPS, "peak_rss_mb", "peak memory, MB (median)")
    ax.set_title("Consumer dbt parse: peak memory", fontsize=FONT + 2, loc="left")


def producer_time(ax: Any, results: Json) -> None:
    _lines(ax, results, PRODUCER_STEPS, "op_seconds", "seconds (median)")
    ax.set_title("Publish, sync, validate against the floor: time", fontsize=FONT + 2, loc="left")


def producer_memory(ax: Any, results: Json) -> None:
    _lines(ax, results, PRODUCER_STEPS, "peak_rss_mb", "peak memory, MB (median)")
    ax.set_title("Publish, sync, validate against the floor: memory", fontsize=FONT + 2, loc="left")


Panel = Callable[[Any, Json], None]
PANELS: tuple[Panel, ...] = (consumer_parse_time, consumer_memory, producer_time, producer_memory)


def plot(results: Json, path: Path, panels: Sequence[Panel] = PANELS) -> None:
    """The panels, two per row, into a PNG at `path` (Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, math.ceil(len(panels) / 2))
    fig, axes = plt.subplots(rows, 2, figsize=(13.5, 5.2 * rows), dpi=100, squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        panel(ax, results)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    repeat = results.get("config", {}).get("repeat")
    fig.suptitle(
        "dbt mesh benchmark: medians"
        + (f" of {repeat} runs" if repeat else "")
        + " (log-log; floor = reading and parsing the full manifest once with orjson)",
        fontsize=FONT + 1,
        x=0.01,
        ha="left",
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97), h_pad=2.5, w_pad=3)
    fig.savefig(path, bbox_inches="tight", pad_inches=0.25)  # direct labels may run past an axes
    plt.close(fig)


def mesh_scale_table(results: Json) -> str:
    """Markdown tables of the mesh-scale part: each scenario's time and what it built, then the
    ratios against their goals."""

    part = results["mesh_scale"]
    spec = part["spec"]
    repeat = len(part["scenarios"]["noop"]["runs"])
    lines = [
        f"A mesh of {spec['projects']} projects of {spec['models']} models. Seconds: median "
        f"(min-max) of the run's wall time over {repeat} run{'s' if repeat != 1 else ''}.",
        "",
        "| scenario | jobs | seconds | built | skipped | as expected |",
        "|---|---:|---:|---|---:|:---:|",
    ]
    for figures in part["scenarios"].values():
        run = figures["runs"][-1]
        built = ", ".join(run["built"]) if len(run["built"]) <= 4 else f"all {len(run['built'])}"
        lines.append(
            f"| {figures['title']} | {figures['jobs']} | {_cell(figures['op_seconds'])} | "
            f"{built or 'none'} | {len(run['skipped'])} | "
            f"{'yes' if figures['as_expected'] else '**no**'} |"
        )
    lines += ["", "| goal | measured | met |", "|---|---:|:---:|"]
    for goal in results["goals"]:
        if goal["ratio"] in RATIO_KEYS or goal["ratio"] in FLOW_RATIOS:
            value = goal["value"]
            shown = f"{value:.0f}" if goal["ratio"] == "noop_dbt_invocations" else f"{value:.2f}x"
            lines.append(f"| {goal['goal']} | {shown} | {'yes' if goal['met'] else '**no**'} |")
    return "\n".join(lines)


def mesh_scale_panel(ax: Any, results: Json) -> None:
    """One panel: a bar per mesh-scale scenario (median seconds, min-max whiskers), labelled with
    how many projects it built."""
    part = results["mesh_scale"]
    scenarios = list(part["scenarios"].values())
    titles = [s["title"].replace("`", "") for s in scenarios]
    medians = [s["op_seconds"]["median"] for s in scenarios]
    low = [s["op_seconds"]["median"] - s["op_seconds"]["min"] for s in scenarios]
    high = [s["op_seconds"]["max"] - s["op_seconds"]["median"] for s in scenarios]
    colors = ["#4c72b0" if s["title"].startswith("cold") else "#55a868" for s in scenarios]
    ys = list(range(len(scenarios)))
    ax.barh(ys, medians, xerr=[low, high], color=colors, capsize=3)
    total = len(part["projects"])
    for y, (scenario, value) in enumerate(zip(scenarios, medians, strict=True)):
        built = len(scenario["runs"][-1]["built"])
        ax.text(value, y, f"  {value:.1f}s, {built}/{total} built", va="center", fontsize=7)
    ax.set_yticks(ys)
    ax.set_yticklabels(titles, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds (median; whiskers min-max)")
    ax.set_xlim(0, max(medians) * 1.35)
    spec = part["spec"]
    ax.set_title(f"invoke mesh on {spec['projects']} projects of {spec['models']} models")
    ax.grid(True, axis="x", alpha=0.3)


def plot_mesh_scale(results: Json, path: Path) -> None:
    """The mesh-scale panel alone, as a PNG (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.8), dpi=80)
    mesh_scale_panel(ax, results)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Redraw the plot from a results file: no benchmark is run."""
    parser = argparse.ArgumentParser(
        prog="python -m mesh.bench.report", description="Redraw scaling.png from results.json."
    )
    parser.add_argument("results", nargs="?", type=Path, default=Path("bench/results.json"))
    parser.add_argument("--output", type=Path, help="PNG to write (default: scaling.png beside it)")
    args = parser.parse_args(argv)
    output: Path = args.output or args.results.with_name("scaling.png")
    try:
        try:
            results = orjson.loads(args.results.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ConfigError(
                f"cannot read benchmark results {args.results}: {exc}; run `invoke bench` first"
            ) from exc
        if not isinstance(results, dict) or not isinstance(results.get("steps"), dict):
            raise ConfigError(f"{args.results} is not a benchmark results file (no `steps`)")
        plot(results, output)
    except MeshError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
