"""The mesh-scale benchmark (`invoke bench --projects N`): `invoke mesh` on a generated mesh of N
projects, cold and after each kind of change, with which projects each run built or skipped.

Scenarios, each timed as the wall time of `run_mesh` (or `build_project`) in a fresh interpreter
(`python -m mesh.bench.step`), `repeat` times:

    cold_jobs1        a cold `invoke mesh --jobs 1` on a fresh copy (nothing built, no registry)
    cold_jobs2        the same with `--jobs 2`
    noop              `invoke mesh` again: every project skipped, no dbt, no project log written
    one_consumer      a leaf consumer's model touched: `invoke mesh` builds that consumer only
    consumer_alone    the same change, `invoke build --project <it>` (what the mesh is compared to)
    producer_private  a core producer's private model touched: it rebuilds and publishes nothing
                      new, its consumers are skipped
    interface         a public model's description changed in a middle project: it and exactly
                      its consumers rebuild (their own interfaces do not change: theirs stop there)

The cold runs of one repeat run in turn (their order alternates between repeats, so load from
elsewhere spreads over both); the other scenarios continue on the mesh the last cold run built, with
`--jobs 2`. Each run records every project's outcome, the projects whose dbt log was written, and
whether the measured process imported dbt at all.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from mesh.bench.generate import reuse_cached
from mesh.bench.mesh_generate import MeshSpec, write_mesh
from mesh.bench.runner import _collect, judge, machine, measure, versions

Say = Callable[[str], None]
Json = dict[str, Any]
SCENARIOS = (
    "cold_jobs1",
    "cold_jobs2",
    "noop",
    "one_consumer",
    "consumer_alone",
    "producer_private",
    "interface",
)
SCENARIO_TITLES = {
    "cold_jobs1": "cold `invoke mesh --jobs 1`",
    "cold_jobs2": "cold `invoke mesh --jobs 2`",
    "noop": "no-op rerun",
    "one_consumer": "one leaf consumer changed: `invoke mesh`",
    "consumer_alone": "same change: `invoke build --project <leaf>`",
    "producer_private": "producer's private model changed",
    "interface": "public model's description changed",
}
RATIO_KEYS = ("noop_vs_cold", "noop_dbt_invocations", "one_consumer_vs_alone", "jobs2_vs_jobs1")
INCREMENTAL_JOBS = 2


@dataclass
class MeshScaleConfig:
    """What `invoke bench --projects N` measures."""

    spec: MeshSpec
    repeat: int
    cache: Path


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def ensure_mesh(spec: MeshSpec, cache: Path, say: Say) -> tuple[Path, Json]:
    """The generated mesh of `spec`, written once under `cache/mesh-<key>/source` and reused."""
    base = cache / f"mesh-{spec.key(metadata.version('dbt-core'))}"
    source = base / "source"
    cached = reuse_cached(base)
    if cached is not None:
        return source, cached
    say(f"  generating a mesh of {spec.projects} projects of {spec.models} models in {source}")
    info = write_mesh(source, spec)
    (base / "ready.json").write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2))
    return source, info


def fresh_copy(source: Path, dest: Path) -> Path:
    """A copy of the generated mesh with nothing built."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest)
    return dest


def _log_stamps(root: Path) -> dict[str, int]:
    folder = root / "logs"
    if not folder.is_dir():
        return {}
    return {p.stem: p.stat().st_mtime_ns for p in folder.glob("*.log")}


def _append(path: Path, line: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)


def change_description(path: Path, model: str, revision: str) -> None:
    """Append `revision` to the description of `model` in a generated models YAML file."""
    text = path.read_text()
    pattern = re.compile(rf'(  - name: {re.escape(model)}\n    description: "[^"\n]*)"')
    changed, count = pattern.subn(lambda m: f'{m.group(1)} ({revision})"', text)
    if count != 1:
        raise ValueError(f"no description of {model} in {path}")
    path.write_text(changed)


class Recorder:
    """Runs scenarios on a mesh root and keeps their figures and outcomes."""

    def __init__(self, logs: Path, say: Say) -> None:

        self.measure = measure
        self.logs = logs
        self.say = say
        self.samples: dict[str, list[Json]] = {name: [] for name in SCENARIOS}
        self.runs: dict[str, list[Json]] = {name: [] for name in SCENARIOS}

    def run(self, scenario: str, root: Path, args: list[str], label: str) -> Json:
        before = _log_stamps(root)
        figures = self.measure(args, self.logs / f"{scenario}.log")
        after = _log_stamps(root)
        detail = figures.get("detail", {})
        outcomes: dict[str, Json] = detail.get("outcomes", {})
        by_status: dict[str, list[str]] = {}
        for name, outcome in outcomes.items():
            by_status.setdefault(outcome["status"], []).append(name)
        starts = [o["started_at"] for o in outcomes.values() if o["started_at"]]
        origin = min(starts) if starts else 0.0
        record: Json = {
            "built": by_status.get("built", []),
            "skipped": by_status.get("skipped", []),
            "other": {k: v for k, v in by_status.items() if k not in ("built", "skipped")},
            "logs_written": sorted(n for n, stamp in after.items() if before.get(n) != stamp),
            "dbt_imported": bool(detail.get("dbt_imported")),
            "seconds": figures["op_seconds"],
        }
        if scenario.startswith("cold"):  # when each project ran, relative to the first start
            record["projects"] = {
                name: [round(o["started_at"] - origin, 2), round(o["finished_at"] - origin, 2)]
                for name, o in outcomes.items()
                if o["status"] == "built"
            }
        self.samples[scenario].append(figures)
        self.runs[scenario].append(record)
        built = len(record["built"])
        self.say(
            f"  {label}: {scenario:17} {figures['op_seconds']:7.1f}s  "
            f"{built} built, {len(record['skipped'])} skipped"
            + (f", {record['other']}" if record["other"] else "")
        )
        return record


def _scenario_args(root: Path, jobs: int | None = None) -> list[str]:
    args = ["mesh", "--root", str(root)]
    return [*args, "--jobs", str(jobs)] if jobs else args


def bench_mesh_scale(config: MeshScaleConfig, say: Say) -> Json:
    """Every scenario, `config.repeat` times; returns the `mesh_scale` part of results.json."""

    started = _now()
    load_before = load_average()
    source, info = ensure_mesh(config.spec, config.cache, say)
    plans = info["scenarios"]
    work = source.parent / "work"
    shutil.rmtree(work, ignore_errors=True)
    logs = work / "logs"
    logs.mkdir(parents=True)
    recorder = Recorder(logs, say)
    names = list(info["projects"])
    leaf = plans["one_consumer"]
    producer = plans["producer_private"]
    interface = plans["interface"]
    for index in range(config.repeat):
        label = f"{config.spec.projects} projects, run {index + 1}/{config.repeat}"
        roots: dict[int, Path] = {}
        for jobs in (1, 2) if index % 2 == 0 else (2, 1):
            roots[jobs] = fresh_copy(source, work / f"cold-jobs{jobs}")
            recorder.run(f"cold_jobs{jobs}", roots[jobs], _scenario_args(roots[jobs], jobs), label)
        last = 2 if index % 2 == 0 else 1
        root = roots[last]
        shutil.rmtree(roots[3 - last])

        recorder.run("noop", root, _scenario_args(root, INCREMENTAL_JOBS), label)

        # One leaf consumer changed: the mesh and the consumer alone, each from the same state
        # (one model touched since the consumer's last build); in turn first between repeats.
        model = root / leaf["file"]
        original = fingerprinted = model.read_text()
        for scenario in ("one_consumer", "consumer_alone") if index % 2 == 0 else ("consumer_alone", "one_consumer"):
            _append(model, f"\n-- bench change {index} ({scenario})\n")
            if scenario == "one_consumer":
                recorder.run(scenario, root, _scenario_args(root, INCREMENTAL_JOBS), label)
                fingerprinted = model.read_text()
            else:
                recorder.run(scenario, root, ["build", "--root", str(root), "--project", leaf["project"]], label)
            model.write_text(original)
        # Back to the content the mesh's last build fingerprinted, so only the next change counts.
        model.write_text(fingerprinted)

        _append(root / producer["file"], f"\n-- bench change {index}\n")
        recorder.run("producer_private", root, _scenario_args(root, INCREMENTAL_JOBS), label)

        change_description(root / interface["file"], interface["model"], f"revision {index + 1}")
        recorder.run("interface", root, _scenario_args(root, INCREMENTAL_JOBS), label)
        if index < config.repeat - 1:
            shutil.rmtree(root)

    expected = {
        "cold_jobs1": names,
        "cold_jobs2": names,
        "noop": [],
        "one_consumer": leaf["builds"],
        "consumer_alone": leaf["builds"],
        "producer_private": producer["builds"],
        "interface": interface["builds"],
    }
    scenarios: Json = {}
    for name in SCENARIOS:
        figures = _collect(recorder.samples[name])
        runs = recorder.runs[name]
        want = sorted(expected[name])
        checks = [sorted(run["built"]) == want and not run["other"] for run in runs]
        if name == "noop":
            checks = [ok and not run["logs_written"] and not run["dbt_imported"] for ok, run in zip(checks, runs, strict=True)]
        scenarios[name] = {
            "title": SCENARIO_TITLES[name],
            "jobs": 1 if name == "cold_jobs1" else INCREMENTAL_JOBS if name != "consumer_alone" else 1,
            "op_seconds": figures["op_seconds"],
            "wall_seconds": figures["wall_seconds"],
            "peak_rss_mb": figures["peak_rss_mb"],
            "expected_built": want,
            "as_expected": all(checks),
            "runs": runs,
        }
    return {
        "command": (
            f"invoke bench --projects {config.spec.projects} --project-models {config.spec.models} "
            f"--repeat {config.repeat}"
        ),
        "started_at": started,
        "finished_at": _now(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "machine": machine(),
        "versions": versions(),
        "spec": asdict(config.spec),
        "projects": info["projects"],
        "changes": plans,
        "method": (
            "Each scenario runs in a fresh interpreter; op_seconds is the wall time of run_mesh "
            "(consumer_alone: build_project) in it, wall_seconds the whole process. built/skipped "
            "come from MeshRun.outcomes; logs_written are the projects whose logs/<project>.log "
            "changed during the run; dbt_imported says whether the measured process imported dbt."
        ),
        "scenarios": scenarios,
    }


def mesh_ratios(mesh_scale: Json) -> Json:
    """The mesh-scale ratios (medians of op seconds)."""
    scenarios = mesh_scale["scenarios"]

    def median(name: str) -> float:
        return float(scenarios[name]["op_seconds"]["median"])

    noop_runs = scenarios["noop"]["runs"]
    return {
        "noop_vs_cold": median("noop") / median("cold_jobs2"),
        "noop_dbt_invocations": max(
            len(run["built"]) + len(run["logs_written"]) + int(run["dbt_imported"]) for run in noop_runs
        ),
        "one_consumer_vs_alone": median("one_consumer") / median("consumer_alone"),
        "jobs2_vs_jobs1": median("cold_jobs2") / median("cold_jobs1"),
    }


def mesh_goals(ratio: Json) -> list[Json]:
    """Each mesh-scale goal against its measured value."""

    judged = [
        judge(ratio, name, key, limit)
        for name, key, limit in (
            ("no-op rerun <= 0.05x cold (--jobs 2)", "noop_vs_cold", 0.05),
            ("no-op rerun: no project built, no log written, dbt not imported", "noop_dbt_invocations", 0),
            ("one consumer changed: mesh <= 1.2x building it alone", "one_consumer_vs_alone", 1.2),
            ("cold --jobs 2 <= 0.65x --jobs 1", "jobs2_vs_jobs1", 0.65),
        )
    ]
    return [goal for goal in judged if goal is not None]
