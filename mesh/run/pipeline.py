"""The runs the task surface and the `mesh` console script share: the whole mesh, one project's build,
a sync, and tearing the local stack down. The work itself is in mesh/run/scheduler.py (which project
runs when, in which process) and mesh/run/steps.py (what happens to one project)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mesh.consumer.sync import SyncPlan, apply_plan, invalidate_partial_parse, plan_sync
from mesh.core import errors
from mesh.core.errors import ConfigError, MeshError
from mesh.core.suggest import did_you_mean
from mesh.core.surface import hint
from mesh.project.config import Mesh
from mesh.project.files import GENERATED_PREFIX, _is_generated, model_paths
from mesh.project.profiles import check_profiles
from mesh.registry.file import FileRegistry
from mesh.run.progress import make_display
from mesh.run.scheduler import Run, run_projects, shown
from mesh.run.steps import BuildOptions, ProjectOutcome
from mesh.warehouse.runner import DbtRun, check_target_env

Say = Callable[[str], None]


def sync_project(mesh: Mesh, name: str, dry_run: bool = False) -> SyncPlan:
    """Plan a consumer's generated files and, unless `dry_run`, write them (any change to them
    invalidates dbt's partial parsing of the project, so no test is silently left disabled)."""
    plan = plan_sync(mesh, name)
    if not dry_run:
        apply_plan(plan)
        if plan.changes:
            invalidate_partial_parse(mesh.project(name))
    return plan


def _raise_for(outcome: ProjectOutcome) -> None:
    """Raise in this process what failed in the worker: same class, message and exit code."""
    if outcome.status in ("built", "skipped"):
        return
    if outcome.status == "interrupted":
        raise errors.Interrupted(outcome.step or "build", outcome.project)
    kind = getattr(errors, outcome.error_type or "", None)
    message = outcome.error or f"{outcome.project} did not build"
    if isinstance(kind, type) and issubclass(kind, MeshError):
        raise kind(message)
    failure = errors.BuildFailedError(message)
    failure.exit_code = outcome.exit_code or 1
    raise failure


def build_project(
    mesh: Mesh,
    name: str,
    select: str | None = None,
    defer: bool = False,
    say: Say | None = print,
    full_refresh: bool = False,
    save_state: bool = False,
    allow_breaking: bool = False,
    reason: str | None = None,
    verbose: bool = False,
    vars: str | None = None,  # noqa: A002 - dbt's own flag name
    event_time_start: str | None = None,
    event_time_end: str | None = None,
) -> DbtRun:
    """`dbt build` one project in a worker: consumers sync first, producers pass the contract gate
    first, the build goes through the audit location. `defer` reads unchanged parents from the
    project's last published state; `save_state` (main branch) stores state, usage and fingerprint."""
    check_target_env(mesh)
    check_profiles(mesh)  # two projects must never write to one database
    project = mesh.project(name)
    if defer:
        plan = sync_project(mesh, name)
        del plan
        if not (project.mesh_dir / "state" / "manifest.json").is_file():
            raise errors.ConfigError(
                f"no published state of {name}/{mesh.env} to defer to: run {hint('mesh')} "
                f"(or {hint('build', '--project', name, '--save-state')} on main) first"
            )
    options = BuildOptions(
        select=select,
        defer=defer,
        full_refresh=full_refresh,
        publish=False,
        save_state=save_state,
        validate=False,
        record_usage=save_state,
        record_fingerprint=save_state,
        allow_breaking=allow_breaking,
        reason=reason,
        vars=vars,
        event_time_start=event_time_start,
        event_time_end=event_time_end,
    )
    display = make_display(say)
    try:
        run = run_projects(mesh, [name], options, display, jobs=1, verbose=verbose)
    finally:
        display.close()
    outcome = run.outcomes[name]
    _raise_for(outcome)
    assert outcome.build is not None
    return outcome.build


@dataclass
class MeshRun:
    """What `invoke mesh` did, for its closing summary."""

    target: str = "local"
    outcomes: list[ProjectOutcome] = field(default_factory=list)
    seconds: float = 0.0
    lineage: str = ""  # where the lineage picture was written

    @property
    def builds(self) -> list[DbtRun]:
        return [o.build for o in self.outcomes if o.status == "built" and o.build is not None]

    @property
    def publishes(self) -> list[object]:
        return [o.publish for o in self.outcomes if o.publish is not None]

    @property
    def reports(self) -> list[object]:
        return [o.report for o in self.outcomes if o.report is not None]

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    def summary(self) -> list[str]:
        head = (
            f"mesh {self.target} ({self.seconds:.1f}s): {self.count('built')} built, "
            f"{self.count('skipped')} skipped, {self.count('failed')} failed, "
            f"{self.count('blocked')} blocked"
        )
        lines = [head]
        width = max((len(o.project) for o in self.outcomes), default=8) + 2
        for o in self.outcomes:
            if o.status == "built":
                parts = [o.build.counts() if o.build else "built"]
                if o.publish is not None:
                    parts.append(
                        f"published {o.publish.version}" if o.publish.status == "published"
                        else f"interface unchanged ({o.publish.version})"
                    )
                if o.report is not None:
                    parts.append(f"{len(o.report.edges)} cross-project edges ok")
                if o.reason:
                    parts.append(o.reason)
                detail = "; ".join(parts)
            elif o.status == "skipped":
                detail = f"unchanged since {(o.since or '').replace('T', ' ')[:19]} UTC"
            else:
                detail = o.error or ""
            ran = o.started_at and o.status in ("built", "failed", "interrupted")  # in a worker
            took = f"{o.seconds:5.1f}s  " if ran else " " * 8
            lines.append(f"  {o.project:{width}} {o.status:8} {took}{detail}")
        if self.lineage:
            lines.append(f"  {'lineage':{width}} {self.lineage}")
        return lines


def run_mesh(
    mesh: Mesh,
    say: Say | None = print,
    jobs: int | None = None,
    full: bool = False,
    full_refresh: bool = False,
    verbose: bool = False,
    show: Say | None = None,
    draw: Callable[[Mesh], str] | None = None,
    projects: Sequence[str] | None = None,
) -> MeshRun:
    """Build, test and publish every project in dependency order (in parallel where the graph
    allows, skipping projects whose inputs did not change unless `full`). `show` receives the
    closing summary, after a failure too (then the first failure is raised); `draw` (the lineage
    page, from the user-interface layer) runs either way, with what the registry holds, and its
    answer is the summary's `lineage` line. `projects`: run only these (a CI job of `invoke
    plan`'s level runs one), each as the whole run would; their upstreams are read from the
    registry as they stand."""
    check_target_env(mesh)
    check_profiles(mesh)  # two projects must never write to one database
    names = mesh.build_order()
    if projects:
        for name in projects:
            if name not in names:
                raise ConfigError(f"{name!r} is not a project built here (mesh.yml){did_you_mean(name, names)}")
        names = [n for n in names if n in projects]
    display = make_display(say)
    options = BuildOptions(full_refresh=full_refresh)
    result = MeshRun(target=mesh.target_name)
    try:
        run: Run = run_projects(
            mesh, names, options, display, jobs=jobs, skip_unchanged=not full, verbose=verbose
        )
    finally:
        display.close()
    result.outcomes = [run.outcomes[n] for n in names if n in run.outcomes]
    result.seconds = run.seconds
    failed = [o for o in result.outcomes if o.status in ("failed", "interrupted")]
    if draw is not None:
        try:
            result.lineage = draw(mesh)
        except MeshError as exc:
            if not failed:
                raise
            result.lineage = f"not redrawn: {exc}"
    if show is not None:
        for line in result.summary():
            show(line)
    if failed:
        blocked = [o.project for o in result.outcomes if o.status == "blocked"]
        first = failed[0]
        tail = f" ({', '.join(blocked)} blocked)" if blocked else ""
        if len(failed) > 1:
            tail = f" (and {len(failed) - 1} more failing project{'s' if len(failed) > 2 else ''}){tail}"
        try:
            _raise_for(first)
        except MeshError as exc:
            exc.args = (f"{exc}{tail}",)
            raise
    return result


@dataclass
class Cleaned:
    """What `clean_local` removed, and what it kept because git tracks it."""

    removed: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)


def _git_tracked(paths: list[Path]) -> set[Path]:
    """Every file git tracks in the repositories these paths live in (absolute, resolved)."""
    import subprocess

    tracked: set[Path] = set()
    tops: set[Path] = set()
    for path in paths:
        folder = path if path.is_dir() else path.parent
        while not folder.exists():
            folder = folder.parent
        try:
            out = subprocess.run(
                ["git", "-C", str(folder), "rev-parse", "--show-toplevel"],
                capture_output=True, text=True, timeout=30, check=False,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0 and out.stdout.strip():
            tops.add(Path(out.stdout.strip()).resolve())
    for top in tops:
        try:
            listed = subprocess.run(
                ["git", "-C", str(top), "ls-files", "-z"], capture_output=True, timeout=60, check=False
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if listed.returncode == 0:
            tracked.update((top / name).resolve() for name in listed.stdout.decode().split("\0") if name)
    return tracked


def clean_local(mesh: Mesh, keep_registry: bool = False) -> Cleaned:
    """Remove the local warehouse, the local registry (unless `keep_registry`), dbt targets, logs
    and generated files; never a file git tracks (a team may commit what the mesh also writes)."""
    done = Cleaned()
    candidates = local_state(mesh, include_registry=not keep_registry)
    tracked = _git_tracked(candidates)

    def remove(path: Path) -> None:
        resolved = path.resolve() if not path.is_symlink() else path.parent.resolve() / path.name
        if path.is_dir() and not path.is_symlink():
            inside = [t for t in tracked if t.is_relative_to(resolved)]
            if not inside:
                shutil.rmtree(path)
                done.removed.append(path)
                return
            for child in sorted(path.iterdir()):
                remove(child)
            if not any(path.iterdir()):
                path.rmdir()
            return
        if resolved in tracked:
            done.kept.append(path)
            return
        path.unlink()
        done.removed.append(path)

    for path in candidates:
        if path.exists() or path.is_symlink():
            remove(path)
    return done


def local_state(mesh: Mesh, include_registry: bool = True) -> list[Path]:
    """What `clean_local` would remove (existing paths only)."""

    found = [mesh.warehouse_dir, mesh.root / "lineage", mesh.root / "logs"]
    if include_registry and isinstance(mesh.registry, FileRegistry) and mesh.registry.root.is_relative_to(mesh.root):
        found.append(mesh.registry.root)
    for name in mesh.build_order():
        project = mesh.project(name)
        found += [project.dir / folder for folder in ("target", "logs", ".mesh")]
        found += [p for p in (project.dir / model_paths(project)[0]).glob(f"{GENERATED_PREFIX}*.yml") if _is_generated(p)]
        loom = project.dir / "dbt_loom.config.yml"
        if loom.exists() and _is_generated(loom):
            found.append(loom)
    return [p for p in found if p.exists() or p.is_symlink()]


def describe_local_state(mesh: Mesh) -> list[str]:
    """What `clean_local` would remove, one line each, the registry's history counted."""

    lines = []
    for path in local_state(mesh):
        shown_path = shown(path, mesh.root)
        if isinstance(mesh.registry, FileRegistry) and path == mesh.registry.root:
            pairs = mesh.registry.list_published()
            versions = sum(len(mesh.registry.list_versions(p, e)) for p, e in pairs)
            lines.append(
                f"{shown_path}/ (the registry: {versions} published version{'s' if versions != 1 else ''} "
                f"of {len(pairs)} project/env pair{'s' if len(pairs) != 1 else ''})"
            )
        else:
            lines.append(f"{shown_path}{'/' if path.is_dir() else ''}")
    return lines
