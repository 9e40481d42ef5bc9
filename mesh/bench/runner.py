"""Run the benchmark: prepare (or reuse) the projects of each size, time each step, compute ratios.

Each measured step runs in a fresh interpreter (`python -m mesh.bench.step`), so its peak memory is
its own; steps are interleaved round-robin over the repeats, so a burst of load from elsewhere on
the machine spreads over every step rather than hitting one. The producer of each size is generated
and parsed by real dbt once, then cached under `bench/cache/<key>/` (key: the parameters, the
generator's and dbt's versions).
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from mesh.bench.generate import (
    CONSUMERS,
    PRODUCER,
    ProducerSpec,
    consumer_refs,
    plan_producer,
    profiles_yml,
    reuse_cached,
    write_consumer,
    write_producer,
)
from mesh.bench.mesh_generate import MeshSpec
from mesh.core.errors import MeshError
from mesh.project.profiles import BASE_ENV

ROOT = Path(__file__).resolve().parents[2]
Say = Callable[[str], None]
Json = dict[str, Any]
RUN_RESULTS_SCHEMA = "https://schemas.getdbt.com/dbt/run-results/v6.json"
# The steps measured at every model count, in the order they run within one repeat.
STEPS = (
    "floor",
    "floor_default_gc",
    "publish",
    "republish",
    "sync",
    "parse_no_upstream",
    "parse_mesh",
    "parse_mesh_loom",
    "parse_loom_full",
    "validate",
)
# The template flows `invoke bench` times against each other, and the script of each reference flow.
FLOWS = ("mesh", "poc", "bare")
FLOW_SCRIPTS = {"poc": "poc_flow.py", "bare": "bare_dbt_flow.py"}
FLOW_RATIOS = {
    "mesh_vs_poc_flow": ("mesh", "poc"),
    "mesh_vs_bare_dbt_flow": ("mesh", "bare"),
    "bare_dbt_vs_poc_flow": ("bare", "poc"),
}
# Informational steps, outside the "linear in model count" goal: dbt-loom is not this project's.
NOT_OURS = frozenset({"floor_default_gc", "parse_loom_full"})
STEP_TITLES = {
    "floor": "floor: read + orjson.loads full manifest (GC paused)",
    "floor_default_gc": "same, garbage collector on (Python's default)",
    "publish": "publish, first (write-audit-publish)",
    "republish": "publish over an earlier latest",
    "sync": "sync (sources consumer)",
    "parse_no_upstream": "consumer dbt parse, no upstream",
    "parse_mesh": "consumer sync + dbt parse, mesh (sources)",
    "parse_mesh_loom": "consumer sync + dbt parse, mesh (dbt-loom on interface)",
    "parse_loom_full": "consumer dbt parse, dbt-loom on full manifest",
    "validate": "validate consumer manifest",
}


class BenchError(MeshError):
    """A benchmark step failed (its log says why)."""

    exit_code = 1


@dataclass
class BenchConfig:
    """What `invoke bench` measures: the model-count part (`models`, may be empty), the template
    flows (`flows`) and the mesh-scale part (`projects`, None: not run)."""

    models: list[int]
    public_share: float = 0.2
    repeat: int = 3
    refs: int = 5
    output: Path = ROOT / "bench"
    cache: Path = ROOT / "bench" / "cache"
    flows: bool = True
    seed: int = 6
    extra: Json = field(default_factory=dict)
    projects: int | None = None
    project_models: int = 200


def _env() -> dict[str, str]:
    env = {**os.environ, **BASE_ENV}
    env.pop("DBT_LOOM_CONFIG", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def summarize(samples: list[float]) -> Json:
    """Median, min and max of a list of samples (and the samples)."""
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "samples": samples,
    }


# --- the producer, cached -------------------------------------------------------------------------


def _run_results(manifest: Json) -> Json:
    """A passing run_results.json for every node of a parsed manifest: the benchmark measures
    publish, not the warehouse build publish audits."""
    results = [
        {"unique_id": uid, "status": "pass" if node["resource_type"] == "test" else "success"}
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] in ("model", "seed", "test", "snapshot")
    ]
    meta = manifest["metadata"]
    return {
        "metadata": {
            "dbt_schema_version": RUN_RESULTS_SCHEMA,
            "dbt_version": meta.get("dbt_version"),
            "generated_at": meta.get("generated_at"),
            "invocation_id": meta.get("invocation_id"),
        },
        "results": results,
        "elapsed_time": 0.0,
        "args": {},
    }


def ensure_producer(spec: ProducerSpec, cache: Path, say: Say) -> tuple[Path, Json]:
    """The producer of `spec`, generated and parsed by dbt once, then reused from the cache."""
    dbt_version = metadata.version("dbt-core")
    base = cache / spec.key(dbt_version)
    cached = reuse_cached(base)
    if cached is not None:
        return base, cached
    say(f"  generating a producer of {spec.models} models in {base} (cached for later runs)")
    started = time.perf_counter()
    producer = plan_producer(spec)
    project = base / PRODUCER
    write_producer(project, producer)
    (base / "profiles").mkdir()
    (base / "profiles" / "profiles.yml").write_text(profiles_yml([PRODUCER], base / "warehouse"))
    generate_s = time.perf_counter() - started
    say(f"  generated in {generate_s:.1f}s; running dbt parse on it (once)")
    started = time.perf_counter()
    log = base / "parse.log"
    with open(log, "wb") as out:
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "dbt"), "parse", "--no-partial-parse",
             "--profiles-dir", str(base / "profiles")],
            cwd=project, env=_env(), stdout=out, stderr=subprocess.STDOUT, check=False,
        )
    parse_s = time.perf_counter() - started
    if proc.returncode != 0:
        raise BenchError(f"dbt parse of the generated producer failed: see {log}")
    target = project / "target"
    (target / "partial_parse.msgpack").unlink(missing_ok=True)
    manifest_path = target / "manifest.json"
    manifest = orjson.loads(manifest_path.read_bytes())
    (target / "run_results.json").write_bytes(orjson.dumps(_run_results(manifest)))
    kinds: dict[str, int] = {}
    for node in manifest["nodes"].values():
        kinds[node["resource_type"]] = kinds.get(node["resource_type"], 0) + 1
    info: Json = {
        "spec": {"models": spec.models, "public_share": spec.public_share, "seed": spec.seed},
        "generate_seconds": generate_s,
        "producer_parse_seconds": parse_s,
        "manifest_bytes": manifest_path.stat().st_size,
        "nodes": kinds,
        "public_models": sum(
            1 for n in manifest["nodes"].values()
            if n["resource_type"] == "model" and n.get("access") == "public"
        ),
        "consumer_refs": consumer_refs(producer),
        "prepared_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (base / "ready.json").write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2))
    size = info["manifest_bytes"] / 1e6
    say(f"  dbt parse of the producer: {parse_s:.1f}s, manifest {size:.1f} MB")
    return base, info


def prepare_workspace(base: Path, info: Json) -> Path:
    """A fresh mesh of the cached producer and the four consumer variants, under `base/work`."""
    work = base / "work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    producer_dir = base / PRODUCER
    refs = [(name, version) for name, version in info["consumer_refs"]]
    for variant in CONSUMERS:
        write_consumer(work / variant, variant, refs, producer_dir / "target" / "manifest.json")
    (work / "profiles").mkdir()
    (work / "profiles" / "profiles.yml").write_text(
        profiles_yml([PRODUCER, *CONSUMERS], work / "warehouse")
    )
    projects = "".join(
        f"  {name}:\n    path: {path}\n" + (f"    upstreams_via: {via}\n" if via else "")
        for name, path, via in (
            (PRODUCER, str(producer_dir), None),
            ("bench_none", "bench_none", None),
            ("bench_loom_full", "bench_loom_full", None),
            ("bench_down", "bench_down", "sources"),
            ("bench_down_loom", "bench_down_loom", "loom"),
        )
    )
    (work / "mesh.yml").write_text(
        "version: 1\ndefault_target: local\nprojects:\n" + projects
        + "targets:\n  local:\n    registry: file://registry\n    env: local\n"
    )
    return work


# --- measuring ----------------------------------------------------------------------------------


def measure(args: list[str], log: Path, script: list[str] | None = None) -> Json:
    """Run one step in a fresh interpreter; return op/wall seconds and peak RSS."""
    out = log.with_suffix(".json")
    out.unlink(missing_ok=True)
    command = script or [sys.executable, "-m", "mesh.bench.step"]
    started = time.perf_counter()
    with open(log, "ab") as handle:
        proc = subprocess.run(
            [*command, *args, "--out", str(out)],
            cwd=ROOT, env=_env(), stdout=handle, stderr=subprocess.STDOUT, check=False,
        )
    wall = time.perf_counter() - started
    if proc.returncode != 0 or not out.is_file():
        raise BenchError(f"benchmark step {args[0]} failed (exit {proc.returncode}): see {log}")
    figures: Json = orjson.loads(out.read_bytes())
    figures["wall_seconds"] = wall
    return figures


def _clean_generated(project_dir: Path) -> None:
    """Remove what sync wrote, so the next sync or parse starts cold."""
    shutil.rmtree(project_dir / ".mesh", ignore_errors=True)
    (project_dir / "dbt_loom.config.yml").unlink(missing_ok=True)
    for path in (project_dir / "models").glob("_mesh_*.yml"):
        path.unlink()


def _step_args(step: str, work: Path, producer_dir: Path) -> list[str]:
    root = ["--root", str(work)]
    if step.startswith("floor"):
        manifest = str(producer_dir / "target" / "manifest.json")
        return ["floor", "--manifest", manifest, *(["--gc"] if step == "floor_default_gc" else [])]
    if step == "publish":
        shutil.rmtree(work / "registry" / PRODUCER, ignore_errors=True)
        return ["publish", *root, "--project", PRODUCER]
    if step == "republish":  # latest holds an earlier build's interface, as on every later publish
        shutil.rmtree(work / "registry" / PRODUCER, ignore_errors=True)
        measure(["publish", *root, "--project", PRODUCER, "--variant"], work / "logs" / "seed.log")
        return ["publish", *root, "--project", PRODUCER]
    if step == "sync":
        _clean_generated(work / "bench_down")
        return ["sync", *root, "--project", "bench_down"]
    if step == "validate":
        return ["validate", *root, "--project", "bench_down"]
    project = {
        "parse_no_upstream": "bench_none",
        "parse_loom_full": "bench_loom_full",
        "parse_mesh": "bench_down",
        "parse_mesh_loom": "bench_down_loom",
    }[step]
    if step.startswith("parse_mesh"):
        _clean_generated(work / project)
        return ["parse", *root, "--project", project, "--sync"]
    return ["parse", *root, "--project", project]


def _collect(samples: list[Json]) -> Json:
    detail: Json = dict(samples[-1].get("detail", {}))
    for key, value in detail.items():  # timings inside the step: summarized like the others
        if key.endswith("_seconds") and isinstance(value, float):
            detail[key] = summarize([s["detail"][key] for s in samples])
    return {
        "op_seconds": summarize([s["op_seconds"] for s in samples]),
        "op_cpu_seconds": summarize([s["op_cpu_seconds"] for s in samples]),
        "wall_seconds": summarize([s["wall_seconds"] for s in samples]),
        "peak_rss_mb": summarize([s["peak_rss_mb"] for s in samples]),
        "detail": detail,
    }


def bench_size(config: BenchConfig, models: int, say: Say) -> Json:
    """Every step at one model count."""
    spec = ProducerSpec(models, config.public_share, config.seed)
    base, info = ensure_producer(spec, config.cache, say)
    work = prepare_workspace(base, info)
    logs = work / "logs"
    logs.mkdir()
    producer_dir = base / PRODUCER
    samples: dict[str, list[Json]] = {step: [] for step in STEPS}
    # Read the manifest once, so no step pays for a cold page cache.
    (producer_dir / "target" / "manifest.json").read_bytes()
    for index in range(config.repeat):
        order = list(STEPS)
        if index % 2:  # the two parses compared most closely run in turn first
            a, b = order.index("parse_no_upstream"), order.index("parse_mesh")
            order[a], order[b] = order[b], order[a]
        for step in order:
            figures = measure(_step_args(step, work, producer_dir), logs / f"{step}.log")
            samples[step].append(figures)
            say(
                f"  {models:>6} models, run {index + 1}/{config.repeat}: {step:18} "
                f"{figures['op_seconds']:8.3f}s  {figures['peak_rss_mb']:7.0f} MB"
            )
    latest = work / "registry" / PRODUCER / "local" / "latest" / "manifest.json"
    trimmed = work / "bench_down_loom" / ".mesh" / "upstreams" / f"{PRODUCER}.json"
    sizes = {
        "manifest_bytes": info["manifest_bytes"],
        "interface_bytes": latest.stat().st_size,
        "consumer_interface_bytes": trimmed.stat().st_size,
        "generated_sources_bytes": (
            work / "bench_down" / "models" / f"_mesh_{PRODUCER}.yml"
        ).stat().st_size,
        "nodes": info["nodes"],
        "public_models": info["public_models"],
        "consumer_refs": len(info["consumer_refs"]),
        "generate_seconds": info["generate_seconds"],
        "producer_parse_seconds": info["producer_parse_seconds"],
        "cache_key": base.name,
    }
    return {"sizes": sizes, "steps": {step: _collect(samples[step]) for step in STEPS}}


def bench_flows(config: BenchConfig, say: Say) -> Json:
    """`invoke mesh` against the proof of concept's flow, each on fresh copies of the template."""
    from tests.conftest import copy_template

    flows_dir = config.cache / "flows"
    shutil.rmtree(flows_dir, ignore_errors=True)
    flows_dir.mkdir(parents=True)
    samples: dict[str, list[Json]] = {flow: [] for flow in FLOWS}
    for index in range(config.repeat):
        # Each flow goes first, second and third in turn: a machine that slows down during a run
        # does not always fall on the same flow.
        order = FLOWS[index % len(FLOWS):] + FLOWS[:index % len(FLOWS)]
        for flow in order:
            root = copy_template(flows_dir / f"{flow}-{index}")
            log = flows_dir / f"{flow}-{index}.log"
            if flow == "mesh":
                figures = measure(["mesh", "--root", str(root)], log)
            else:
                script = [sys.executable, str(ROOT / "bench" / FLOW_SCRIPTS[flow])]
                figures = measure(["run", "--root", str(root)], log, script=script)
            samples[flow].append(figures)
            say(f"  flow {flow:4}, run {index + 1}/{config.repeat}: {figures['wall_seconds']:.1f}s")
            shutil.rmtree(root)
    return {flow: _collect(items) for flow, items in samples.items()}


# --- the whole run --------------------------------------------------------------------------------


def machine() -> Json:
    """CPU model, cores, memory, OS and Python."""
    model = platform.processor() or "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import psutil

    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> Json:
    found: Json = {}
    for package in ("dbt-core", "dbt-duckdb", "dbt-loom", "duckdb", "orjson"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    try:
        found["git_sha"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip() or None
    except OSError:
        found["git_sha"] = None
    return found


def ratios(sizes: dict[str, Json]) -> Json:
    """The model-count ratios (medians of op seconds and of peak RSS)."""
    out: Json = {}

    def op(n: str, step: str) -> float:
        return float(sizes[n]["steps"][step]["op_seconds"]["median"])

    def rss(n: str, step: str) -> float:
        return float(sizes[n]["steps"][step]["peak_rss_mb"]["median"])

    def cpu(n: str, step: str) -> float:
        return float(sizes[n]["steps"][step]["op_cpu_seconds"]["median"])

    def invoke(n: str, step: str) -> float:
        """Median of op seconds less the dbt import: the sync and the dbt invocation only."""
        figures = sizes[n]["steps"][step]
        imports = figures["detail"]["dbt_import_seconds"]["samples"]
        return statistics.median(
            total - imported
            for total, imported in zip(figures["op_seconds"]["samples"], imports, strict=True)
        )

    for n, result in sizes.items():
        out[f"parse_mesh_vs_no_upstream_{n}"] = op(n, "parse_mesh") / op(n, "parse_no_upstream")
        out[f"cpu_parse_mesh_vs_no_upstream_{n}"] = (
            cpu(n, "parse_mesh") / cpu(n, "parse_no_upstream")
        )
        out[f"invoke_parse_mesh_vs_no_upstream_{n}"] = (
            invoke(n, "parse_mesh") / invoke(n, "parse_no_upstream")
        )
        out[f"parse_mesh_loom_vs_no_upstream_{n}"] = (
            op(n, "parse_mesh_loom") / op(n, "parse_no_upstream")
        )
        out[f"rss_mesh_vs_no_upstream_{n}"] = rss(n, "parse_mesh") / rss(n, "parse_no_upstream")
        out[f"parse_loom_full_vs_mesh_{n}"] = op(n, "parse_loom_full") / op(n, "parse_mesh")
        out[f"publish_vs_floor_{n}"] = op(n, "publish") / op(n, "floor")
        out[f"republish_vs_floor_{n}"] = op(n, "republish") / op(n, "floor")
        out[f"sync_vs_floor_{n}"] = op(n, "sync") / op(n, "floor")
        out[f"interface_bytes_share_{n}"] = (
            result["sizes"]["interface_bytes"] / result["sizes"]["manifest_bytes"]
        )
    counts = sorted(sizes, key=int)
    if len(counts) >= 2:
        lo, hi = counts[-2], counts[-1]
        for step in STEPS:
            out[f"scaling_{step}_{hi}_vs_{lo}"] = op(hi, step) / op(lo, step)
    return out


def flow_ratios(flows: Json | None) -> Json:
    """`invoke mesh` against the proof of concept's flow and against dbt alone, and dbt alone
    against the proof of concept (the most any orchestration in the mesh's process model saves)."""

    def wall(flow: str) -> float | None:
        figures = (flows or {}).get(flow)
        return None if figures is None else float(figures["wall_seconds"]["median"])

    def ratio(a: str, b: str) -> float | None:
        top, bottom = wall(a), wall(b)
        return None if top is None or bottom is None else top / bottom

    return {key: ratio(a, b) for key, (a, b) in FLOW_RATIOS.items()}


def judge(ratio: Json, name: str, key: str, limit: float, at_most: bool = True) -> Json | None:
    """One goal against its measured ratio (None when the ratio was not measured)."""
    value = ratio.get(key)
    if value is None:
        return None
    met = value <= limit if at_most else value >= limit
    return {"goal": name, "ratio": key, "value": value, "limit": limit,
            "comparison": "<=" if at_most else ">=", "met": met}


def goals(ratio: Json, counts: list[int]) -> list[Json]:
    """Each model-count and flow goal against the measured ratio: met, or missed and by how much."""
    found: list[Json] = []

    def check(name: str, key: str, limit: float, at_most: bool = True) -> None:
        judged = judge(ratio, name, key, limit, at_most)
        if judged is not None:
            found.append(judged)

    for n in counts:
        limit = 1.10 if n <= 10_000 else 1.20
        check(f"mesh parse <= {limit:.2f}x no-upstream at {n}",
              f"parse_mesh_vs_no_upstream_{n}", limit)
        check(f"mesh parse memory <= 1.2x no-upstream at {n}", f"rss_mesh_vs_no_upstream_{n}", 1.2)
        if n >= 10_000:
            check(f"dbt-loom full >= 4x mesh parse at {n}",
                  f"parse_loom_full_vs_mesh_{n}", 4.0, False)
        check(f"publish <= 1.5x floor at {n}", f"publish_vs_floor_{n}", 1.5)
        check(f"publish over latest <= 1.5x floor at {n}", f"republish_vs_floor_{n}", 1.5)
        check(f"sync <= 1.5x floor at {n}", f"sync_vs_floor_{n}", 1.5)
        check(f"interface <= 5% of manifest at {n}", f"interface_bytes_share_{n}", 0.05)
    check("invoke mesh <= 0.45x proof of concept", "mesh_vs_poc_flow", 0.45)
    if len(counts) >= 2:
        lo, hi = sorted(counts)[-2:]
        bound = 1.1 * hi / lo
        for step in (s for s in STEPS if s not in NOT_OURS):
            check(f"{step} linear ({hi}/{lo} <= {bound:.2f})",
                  f"scaling_{step}_{hi}_vs_{lo}", bound)
    return found


def _model_ratio(key: str) -> bool:
    from mesh.bench.mesh_scale import RATIO_KEYS

    return key not in RATIO_KEYS and key not in FLOW_RATIOS


def previous_results(path: Path) -> Json:
    """The results file as a run left it ({} when there is none or it is unreadable)."""
    try:
        found = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return found if isinstance(found, dict) else {}


def run_bench(config: BenchConfig, say: Say = print) -> Json:
    """The parts of the benchmark `config` asks for. `results.json` under `config.output` keeps the
    figures of the parts that did not run this time (a mesh-scale run leaves the model-count
    results as they were, and the other way round); `scaling.png` is redrawn when the model-count
    part ran, `mesh_scale.png` when the mesh-scale part did."""
    from mesh.bench.mesh_scale import (
        MeshScaleConfig,
        bench_mesh_scale,
        load_average,
        mesh_goals,
        mesh_ratios,
    )
    from mesh.bench.report import flow_lines, mesh_scale_table, plot, plot_mesh_scale, table

    config.output.mkdir(parents=True, exist_ok=True)
    config.cache.mkdir(parents=True, exist_ok=True)
    path = config.output / "results.json"
    results = previous_results(path)
    results.pop("issue", None)
    ratio: Json = dict(results.get("ratios") or {})
    if config.models:
        started = datetime.now(UTC)
        sizes: dict[str, Json] = {}
        for models in sorted(config.models):
            say(f"{models} upstream models:")
            sizes[str(models)] = bench_size(config, models, say)
        ratio = {k: v for k, v in ratio.items() if not _model_ratio(k)}
        ratio.update(ratios(sizes))
        results.update(
            {
                "started_at": started.isoformat(timespec="seconds"),
                "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "command": (
                    f"invoke bench --models {','.join(str(m) for m in sorted(config.models))} "
                    f"--public-share {config.public_share:g} --repeat {config.repeat}"
                ),
                "config": {
                    "models": sorted(config.models),
                    "public_share": config.public_share,
                    "repeat": config.repeat,
                    "consumer_refs": config.refs,
                    "flows": config.flows,
                    "seed": config.seed,
                    **config.extra,
                },
                "machine": machine(),
                "versions": versions(),
                "method": (
                    "Each step runs in a fresh interpreter; op_seconds is the step's own operation "
                    "after the interpreter's start-up and the mesh's imports (a dbt parse: importing "
                    "dbt, detail.dbt_import_seconds, then the mesh's sync if any, "
                    "detail.sync_seconds, then the dbtRunner invocation), wall_seconds the whole "
                    "process, peak_rss_mb its peak resident memory (VmHWM). Ratios are ratios of "
                    "medians of op_seconds (flows: wall_seconds) over the repeats; invoke_* ratios "
                    "leave the dbt import out."
                ),
                "sizes": {n: result["sizes"] for n, result in sizes.items()},
                "steps": {n: result["steps"] for n, result in sizes.items()},
            }
        )
    if config.flows:
        say("invoke mesh vs the proof of concept's flow and dbt alone (template projects):")
        flows_started = datetime.now(UTC).isoformat(timespec="seconds")
        load_before = load_average()
        flows = bench_flows(config, say)
        results["flows"] = flows
        results["flows_run"] = {
            "started_at": flows_started,
            "repeat": config.repeat,
            "load_average_before": load_before,
            "load_average_after": load_average(),
        }
        ratio.update(flow_ratios(flows))
    if config.projects:

        say(f"a mesh of {config.projects} projects of {config.project_models} models:")
        spec = MeshSpec(projects=config.projects, models=config.project_models)
        mesh_scale = bench_mesh_scale(MeshScaleConfig(spec, config.repeat, config.cache), say)
        results["mesh_scale"] = mesh_scale
        ratio = {k: v for k, v in ratio.items() if _model_ratio(k) or k in FLOW_RATIOS}
        ratio.update(mesh_ratios(mesh_scale))
    results.setdefault("flows", None)  # never measured into this file yet
    for key in FLOW_RATIOS:
        ratio.setdefault(key, None)
    results["ratios"] = ratio
    counts = [int(n) for n in results.get("steps", {})]
    results["goals"] = goals(ratio, sorted(counts)) + mesh_goals(ratio)
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    # The default output's figures illustrate the documentation's performance page.
    figures = ROOT / "docs" / "img" if config.output == ROOT / "bench" else config.output
    if config.models:
        plot(results, figures / "scaling.png")
        say(table(results))
    elif config.flows:
        say("\n".join(flow_lines(results)).strip())
    if config.projects:
        plot_mesh_scale(results, figures / "mesh_scale.png")
        say(mesh_scale_table(results))
    return results
