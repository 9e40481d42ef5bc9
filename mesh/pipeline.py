"""The steps the task surface and the `mesh` console script share: build, sync, publish, validate,
the whole mesh, and tearing the local stack down."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mesh.config import Mesh
from mesh.contracts import publish_gate
from mesh.dbt import DbtRun, check_target_env, run_dbt
from mesh.errors import ConfigError, LineageError
from mesh.freshness import record_freshness
from mesh.manifest import load_manifest, public_node_ids, reused_manifests
from mesh.publish import PublishResult, publish_project, save_state
from mesh.sync import GENERATED_PREFIX, SyncPlan, _is_generated, apply_plan, model_paths, plan_sync
from mesh.usage import record_usage
from mesh.validate import Report, consumers, validate_projects

Say = Callable[[str], None]


def sync_project(mesh: Mesh, name: str, dry_run: bool = False) -> SyncPlan:
    """Plan a consumer's generated files and, unless `dry_run`, write them."""
    plan = plan_sync(mesh, name)
    if not dry_run:
        apply_plan(plan)
    return plan


def needs_full_parse(plan: SyncPlan) -> bool:
    """Whether sync changed a generated sources file: dbt's partial parsing then drops one of the
    same-named `sources:` entries (one per upstream database/schema) and the build fails with
    "depends on a source ... which was not found"; a full parse reads the file correctly."""
    return any(c.path.suffix == ".yml" and c.path.name.startswith(GENERATED_PREFIX) for c in plan.changes)


def build_project(
    mesh: Mesh,
    name: str,
    select: str | None = None,
    defer: bool = False,
    say: Say = print,
) -> DbtRun:
    """`dbt build` one project; consumers sync first. `defer` reads unchanged parents from state."""
    project = mesh.project(name)
    check_target_env(mesh)  # before sync touches the registry
    if project.upstreams:
        plan = sync_project(mesh, name)
        say(f"sync {name}: {len(plan.changes)} file changes; upstreams " + ", ".join(f"{k}@{v}" for k, v in plan.upstream_versions.items()))
    args = ["build"]
    if project.upstreams and needs_full_parse(plan):
        args.append("--no-partial-parse")
    if select:
        args += ["--select", select]
    if defer:
        state = project.mesh_dir / "state"
        if not (state / "manifest.json").is_file():
            if not project.upstreams:
                plan = sync_project(mesh, name)
            if not (state / "manifest.json").is_file():
                raise ConfigError(
                    f"no published state of {name}/{mesh.env} to defer to: run `invoke mesh` "
                    f"(or `invoke build --project {name} --save-state` on main) first"
                )
        args += ["--defer", "--state", str(state), "--favor-state"]
    return run_dbt(mesh, name, args)


def has_public_models(mesh: Mesh, name: str) -> bool:
    path = mesh.project(name).target_dir / "manifest.json"
    return bool(public_node_ids(load_manifest(path, project=name)))


@dataclass
class MeshRun:
    """What `invoke mesh` did, for its closing summary."""

    builds: list[DbtRun] = field(default_factory=list)
    publishes: list[PublishResult] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    seconds: float = 0.0
    lineage: str = ""  # where the lineage picture was written

    def summary(self) -> list[str]:
        lines = [f"mesh ({self.seconds:.1f}s):"]
        for run in self.builds:
            lines.append(f"  built  {run.project:15} {', '.join(f'{n} {s}' for s, n in sorted(run.statuses.items()))}")
        for pub in self.publishes:
            lines.append(f"  publish {pub.project:14} {pub.status} {pub.version} ({pub.public_models} public models)")
        edges = sum(len(r.edges) for r in self.reports)
        errors = sum(not r.ok for r in self.reports)
        lines.append(f"  lineage {edges} cross-project edges validated in {len(self.reports)} consumers, {errors} failing")
        if self.lineage:
            lines.append(f"  picture {self.lineage}")
        return lines


def run_mesh(mesh: Mesh, say: Say = print) -> MeshRun:
    """Build, test and publish every project in dependency order, then validate all lineage."""
    started = time.monotonic()
    check_target_env(mesh)
    result = MeshRun()
    order = mesh.build_order()
    steps = len(order) + 1
    for index, name in enumerate(order, 1):
        say(f"[{index}/{steps}] build {name}")
        result.builds.append(build_project(mesh, name, say=say))
        with reused_manifests():  # the manifest is parsed once, not by every step below
            if has_public_models(mesh, name):
                pub = publish_project(mesh, name, checks=(publish_gate(mesh, name, say=say),))
                say(f"[{index}/{steps}] publish {pub.summary()}")
                result.publishes.append(pub)
                record_freshness(mesh, name)  # every passing build: data changes, interfaces may not
            save_state(mesh, name)
    say(f"[{steps}/{steps}] validate lineage of {', '.join(consumers(mesh)) or 'no consumer'}")
    result.reports = validate_projects(mesh, consumers(mesh))
    for report in result.reports:
        if report.ok:  # what each consumer reads upstream, for the contract gate
            record_usage(mesh, report.project)
    result.seconds = time.monotonic() - started
    failing = [r for r in result.reports if not r.ok]
    if failing:
        for report in failing:
            say(report.text())
        raise LineageError(f"lineage validation failed for {', '.join(r.project for r in failing)}")
    from mesh.lineage import OUTPUT_DIR, load_graph, write_lineage

    graph = load_graph(mesh)
    write_lineage(graph, mesh.root / OUTPUT_DIR)
    result.lineage = (
        f"{OUTPUT_DIR}/lineage.html (also .json, .mmd): "
        f"{len(graph.projects)} projects, {len(graph.nodes)} nodes"
    )
    return result


def clean_local(mesh: Mesh) -> list[Path]:
    """Remove the local warehouse, the local registry, dbt targets and generated files; nothing else."""
    removed: list[Path] = []

    def remove(path: Path) -> None:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
            removed.append(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
            removed.append(path)

    remove(mesh.warehouse_dir)
    remove(mesh.root / "lineage")
    from mesh.registry.file import FileRegistry

    if isinstance(mesh.registry, FileRegistry) and mesh.registry.root.is_relative_to(mesh.root):
        remove(mesh.registry.root)
    for name in mesh.config.projects:
        project = mesh.project(name)
        for folder in ("target", "logs", ".mesh"):
            remove(project.dir / folder)
        for path in (project.dir / model_paths(project)[0]).glob(f"{GENERATED_PREFIX}*.yml"):
            if _is_generated(path):
                remove(path)
        loom = project.dir / "dbt_loom.config.yml"
        if loom.exists() and _is_generated(loom):
            remove(loom)
    return removed
