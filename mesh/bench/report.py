"""Present benchmark results: a plain-text (Markdown) table and the scaling plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

Json = dict[str, Any]


def _fmt_s(value: float) -> str:
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def _cell(stat: Json) -> str:
    return f"{_fmt_s(stat['median'])} ({_fmt_s(stat['min'])}-{_fmt_s(stat['max'])})"


def table(results: Json) -> str:
    """Markdown tables: every step at every size (median, min-max), flows, sizes, goals."""
    from mesh.bench.runner import STEP_TITLES

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
    flows = results.get("flows")
    if flows:
        lines += [
            "",
            "| flow on the template projects | wall s | MB |",
            "|---|---:|---:|",
            f"| `invoke mesh` | {_cell(flows['mesh']['wall_seconds'])} | "
            f"{flows['mesh']['peak_rss_mb']['median']:.0f} |",
            "| proof of concept's flow (`bench/poc_flow.py`) | "
            f"{_cell(flows['poc']['wall_seconds'])} | "
            f"{flows['poc']['peak_rss_mb']['median']:.0f} |",
        ]
    lines += ["", "| goal | measured | met |", "|---|---:|:---:|"]
    for goal in results["goals"]:
        value = goal["value"]
        shown = f"{100 * value:.1f}%" if "interface" in goal["ratio"] else f"{value:.2f}x"
        lines.append(f"| {goal['goal']} | {shown} | {'yes' if goal['met'] else '**no**'} |")
    return "\n".join(lines)


def plot(results: Json, path: Path) -> None:
    """Time and peak memory of each step against the model count, log-log (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mesh.bench.runner import STEP_TITLES

    counts = sorted(results["steps"], key=int)
    xs = [int(n) for n in counts]
    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(11, 4.6), dpi=80)
    for step, title in STEP_TITLES.items():
        times = [results["steps"][n][step]["op_seconds"]["median"] for n in counts]
        mems = [results["steps"][n][step]["peak_rss_mb"]["median"] for n in counts]
        style = ":" if step.startswith("floor") else "--" if step == "parse_loom_full" else "-"
        ax_time.plot(xs, times, style, marker="o", markersize=3, label=title)
        ax_mem.plot(xs, mems, style, marker="o", markersize=3, label=title)
    for ax, label in ((ax_time, "seconds (median)"), (ax_mem, "peak RSS, MB (median)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("upstream models")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax_time.set_title("time per step")
    ax_mem.set_title("peak memory per step")
    handles, labels = ax_time.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    fig.savefig(path)
    plt.close(fig)


def mesh_scale_table(results: Json) -> str:
    """Markdown tables of the mesh-scale part: each scenario's time and what it built, then the
    ratios against their goals."""
    from mesh.bench.mesh_scale import RATIO_KEYS

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
        if goal["ratio"] in RATIO_KEYS or goal["ratio"] == "mesh_vs_poc_flow":
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
