"""What happens to one project in a mesh run, in order (run in the project's own worker process).

    deps      `dbt deps` when the package spec changed (mesh/packages.py)
    gate      producers: the contract check on a `dbt parse` of the working tree, before any
              relation a consumer reads is touched
    build     into the audit location (mesh/wap.py): seeds that the project's own sources read
              first, then `dbt build`; a failing model or test discards the audit build
    audit     producers: the publish audit (run results, contracts) and the contract gate on the
              built interface, still before anything is visible
    swap      the audit build becomes what readers see, atomically
    publish   the interface, write-audit-publish (mesh/publish.py), then freshness and state
    validate  consumers: cross-project lineage of the new manifest, then usage for the gate

The parent process (mesh/scheduler.py) syncs the project and decides whether it must build at all
(fingerprints) before a worker starts; this module never decides to skip.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh import interrupts
from mesh.config import Mesh
from mesh.dbt import DbtRun, dbt_environment, run_dbt, stray_loom_config
from mesh.errors import BreakingChangeError, Interrupted, LineageError, MeshError
from mesh.manifest import Json, load_manifest, public_node_ids, reused_manifests
from mesh.surface import hint

Step = Callable[[str, str], None]  # (step, detail) -> None


@dataclass
class BuildOptions:
    """What a run does with each project (picklable: it crosses into the worker)."""

    select: str | None = None
    defer: bool = False
    full_refresh: bool = False
    publish: bool = True  # publish projects with public nodes after a passing build
    gate: bool = True  # the contract gate before the build and before the swap
    save_state: bool = True  # store the full manifest as the project's private state
    validate: bool = True  # validate consumers' lineage after their build
    record_usage: bool = True  # store what consumers use upstream (main branch / mesh runs)
    record_fingerprint: bool = True
    allow_breaking: bool = False
    reason: str | None = None

    @property
    def complete(self) -> bool:
        """A build of the whole project (a fingerprint describes it)."""
        return self.select is None and not self.defer

    def fingerprint_options(self) -> dict[str, Any]:
        return {"select": self.select, "defer": self.defer, "full_refresh": self.full_refresh}


@dataclass
class ProjectOutcome:
    """What happened to one project (picklable: it crosses back from the worker)."""

    project: str
    status: str  # built | skipped | failed | blocked | interrupted
    seconds: float = 0.0
    started_at: float = 0.0  # wall clock (time.time()), comparable across processes
    finished_at: float = 0.0
    build: DbtRun | None = None
    publish: Any = None  # PublishResult
    report: Any = None  # validate.Report
    notes: list[str] = field(default_factory=list)  # what each step did, one line each
    details: list[str] = field(default_factory=list)  # lines to show on failure (gate table…)
    error: str | None = None
    error_type: str | None = None  # the MeshError subclass, to raise the same in the parent
    exit_code: int = 0
    step: str | None = None  # the step that failed or was interrupted
    since: str | None = None  # skipped: unchanged since
    timings: dict[str, float] = field(default_factory=dict)  # seconds spent in each step
    _entered: float = 0.0  # time.monotonic() when the current step began

    def enter(self, step: str | None) -> None:
        """The current step ends (its time is added to `timings`) and `step` begins."""
        self.stop_clock()
        self.step = step

    def stop_clock(self) -> None:
        """Add the current step's time so far to `timings` (the step stays current)."""
        now = time.monotonic()
        if self.step is not None:
            self.timings[self.step] = self.timings.get(self.step, 0.0) + now - self._entered
        self._entered = now

    def timing_line(self) -> str:
        """`deps 0.0s, build 5.1s, …` in the order the steps ran."""
        return ", ".join(f"{step} {seconds:.1f}s" for step, seconds in self.timings.items())


def _has_seeds(mesh: Mesh, name: str) -> bool:
    from mesh.config import read_yaml

    project = mesh.project(name)
    spec = read_yaml(project.dir / "dbt_project.yml", "dbt_project.yml") or {}
    folders = spec.get("seed-paths") if isinstance(spec, dict) else None
    for folder in folders if isinstance(folders, list) and folders else ["seeds"]:
        if any((project.dir / str(folder)).rglob("*.csv")):
            return True
    return False


def seeds_read_by_sources(manifest: Json, project: str) -> list[str]:
    """The project's seeds that its own sources read (dbt's DAG does not know a source and a seed
    are one table, so `dbt build` could run a model before the seed it reads)."""

    def key(node: Json, name_key: str) -> tuple[str, str, str]:
        return (
            str(node.get("database") or "").lower(),
            str(node.get("schema") or "").lower(),
            str(node.get(name_key) or node.get("name") or "").lower(),
        )

    seeds = {
        key(node, "alias"): node["name"]
        for node in manifest.get("nodes", {}).values()
        if node.get("resource_type") == "seed" and node.get("package_name") == project
    }
    read = {
        seeds[key(source, "identifier")]
        for source in manifest.get("sources", {}).values()
        if key(source, "identifier") in seeds
    }
    return sorted(read)


def _gate(mesh: Mesh, name: str, options: BuildOptions, outcome: ProjectOutcome, step: Step) -> Path | None:
    """The contract check on a parse of the working tree; returns the parsed manifest's path."""
    from mesh.contracts import check_project

    if mesh.registry.read_latest(name, mesh.env) is None:
        return None  # nothing published yet: no contract to break
    step("gate", "parsing the working tree")
    # Parsed into target/ itself: the build that follows reuses this parse (partial parsing).
    run_dbt(mesh, name, ["parse"])
    parsed = mesh.project(name).target_dir / "manifest.json"
    result = check_project(
        mesh, name, options.allow_breaking, options.reason, parse=False, manifest_path=parsed
    )
    if result.blocked:
        outcome.details.extend(result.lines())
        raise result.error()
    changes = len(result.changes)
    breaking = len(result.breaking)
    against = result.against or "nothing"
    outcome.notes.append(
        f"gate passed: {changes} change{'s' if changes != 1 else ''} against {against}"
        + (f", {breaking} breaking but unused" if breaking else "")
    )
    step("gate", "passed")
    return parsed


def _publish_audit(mesh: Mesh, name: str, options: BuildOptions, outcome: ProjectOutcome) -> None:
    """Before the swap: would the publish be refused? (run results, contracts, the gate on the
    built interface — columns a parse cannot know, from the catalog, included)."""
    from mesh.contracts import publish_gate
    from mesh.manifest import load_interface
    from mesh.publish import prepare

    _manifest, nodes, _groups, _sha = prepare(mesh, name)
    entry = mesh.registry.read_latest(name, mesh.env)
    if entry is None:
        return
    latest = load_interface(entry.body, f"{name}/{mesh.env} latest", name)
    gate = publish_gate(mesh, name, options.allow_breaking, options.reason, say=outcome.details.append)
    gate(latest, nodes)


def run_project(mesh: Mesh, name: str, options: BuildOptions, step: Step) -> ProjectOutcome:
    """Build, test, swap, publish and validate one project; never raises: a failure or an interrupt
    is the outcome's status, with the step it happened in and one line saying why."""
    started = time.monotonic()
    outcome = ProjectOutcome(name, "built", started_at=time.time())
    try:
        _run(mesh, name, options, step, outcome)
    except Interrupted as exc:
        outcome.status, outcome.error, outcome.exit_code = "interrupted", str(exc), exc.exit_code
        outcome.step = exc.step
    except KeyboardInterrupt:
        outcome.status, outcome.exit_code = "interrupted", 130
        outcome.error = f"interrupted during {outcome.step or 'start-up'} ({name})"
    except MeshError as exc:
        if interrupts.requested():  # what the stop broke (a cancelled query) is the stop itself
            outcome.status, outcome.exit_code = "interrupted", 130
            outcome.error = f"interrupted during {outcome.step or 'start-up'} ({name})"
        else:
            outcome.status, outcome.error, outcome.exit_code = "failed", str(exc), exc.exit_code
            outcome.error_type = type(exc).__name__
    finally:
        outcome.stop_clock()
        outcome.seconds = time.monotonic() - started
        outcome.finished_at = time.time()
    return outcome


def _run(mesh: Mesh, name: str, options: BuildOptions, step: Step, outcome: ProjectOutcome) -> None:
    from mesh.packages import ensure_packages
    from mesh.wap import audit_build

    project = mesh.project(name)
    stray = stray_loom_config(mesh, name)
    if stray is not None:
        outcome.notes.append(
            f"warning: {stray.relative_to(mesh.root) if stray.is_relative_to(mesh.root) else stray} "
            f"ignored: {name} does not read upstreams through dbt-loom (mesh.yml upstreams_via)"
        )

    outcome.enter("deps")
    if ensure_packages(mesh, name):
        outcome.notes.append("packages installed (dbt deps)")
    outcome.enter("prepare")  # the fingerprint of the inputs, the audit location
    inputs = None
    if options.record_fingerprint and options.complete:
        from mesh import fingerprint

        inputs = fingerprint.compute(mesh, name, options.fingerprint_options())

    audit = audit_build(mesh, name, say=outcome.notes.append)
    # Every dbt call of the project sees the build's environment, the parses before the build
    # included: dbt's partial parsing starts over when the profile (the audit file's path) differs
    # from the last call's, so a parse without it would make the gate and the build parse in full.
    # A parse does not open the database: the audit copy need not exist yet.
    build_env = audit.env() if audit is not None else {}

    with dbt_environment(build_env):
        outcome.enter("gate")
        parsed = _gate(mesh, name, options, outcome, step) if options.gate else None

        seeds: list[str] = []
        if _has_seeds(mesh, name):
            if parsed is None:
                outcome.enter("parse")  # which seeds the project's own sources read
                step("build", "parsing")
                run_dbt(mesh, name, ["parse"])
                parsed = project.target_dir / "manifest.json"
            seeds = seeds_read_by_sources(load_manifest(parsed, project=name), name)
        outcome.enter("build")
        if audit is not None:
            audit.prepare()
        if seeds:
            step("build", f"seeds read by sources first: {', '.join(seeds)}")
            run_dbt(mesh, name, ["seed", "--select", *seeds])
        args = ["build"]
        if options.select:
            args += ["--select", options.select]
        if options.full_refresh:
            args.append("--full-refresh")
        if options.defer:
            args += ["--defer", "--state", str(project.mesh_dir / "state"), "--favor-state"]
        step("build", "dbt build")
        run = run_dbt(mesh, name, args, raise_on_failure=False)
        outcome.build = _portable(run)
        if not run.success:
            if audit is not None:
                audit.discard()
            raise run.error()
        publishes = options.publish and options.complete
        with reused_manifests():
            manifest = load_manifest(project.target_dir / "manifest.json", project=name)
            public = bool(public_node_ids(manifest))
            if options.gate and options.complete and public:
                outcome.enter("audit")
                step("audit", "publish audit and contract gate on the built interface")
                try:
                    _publish_audit(mesh, name, options, outcome)
                except MeshError:
                    if audit is not None:
                        audit.discard()
                    raise
    outcome.notes.append(f"built: {run.counts()}")

    if audit is not None:
        outcome.enter("swap")
        step("swap", audit.description)
        audit.promote()

    with reused_manifests():
        if publishes and public:
            from mesh.contracts import publish_gate
            from mesh.publish import publish_project

            outcome.enter("publish")
            step("publish", "write-audit-publish")
            record: dict[str, object] = {}
            gate = publish_gate(
                mesh, name, options.allow_breaking, options.reason,
                say=outcome.details.append, record=record,
            )
            previous = _latest_doc(mesh, name)
            result = publish_project(mesh, name, checks=(gate,), extra_meta=record)
            outcome.publish = result
            outcome.notes.append(_publish_note(result))
            if result.status == "published" and not _grants_by_swap(audit):
                _sync_grants(mesh, name, previous, outcome)
        outcome.enter("state")  # freshness of the public nodes, the project's private state
        if public and (publishes or options.save_state):
            from mesh.freshness import record_freshness

            fresh = record_freshness(mesh, name)  # when each public node's data was built
            if fresh is not None and options.save_state and not publishes:
                count = len(fresh["nodes"])
                outcome.notes.append(
                    f"freshness: recorded {count} public node{'s' if count != 1 else ''} of {name}/{mesh.env}"
                )
        if options.save_state and options.complete:
            from mesh.publish import save_state

            save_state(mesh, name)

    if project.upstreams and options.validate:
        from mesh.validate import validate_projects

        outcome.enter("validate")
        step("validate", "cross-project lineage")
        (report,) = validate_projects(mesh, [name])
        outcome.report = report
        if not report.ok:
            outcome.details.append(report.text())
            raise LineageError(f"lineage validation failed for {name}: run {hint('validate', '--project', name)} for the findings")
        outcome.notes.append(f"lineage: {len(report.edges)} cross-project edge{'s' if len(report.edges) != 1 else ''} validated")
    outcome.enter("record")  # what the consumer uses upstream, the fingerprint of this build
    if project.upstreams and options.record_usage and options.complete:
        from mesh.usage import record_usage

        record_usage(mesh, name)  # the whole record: consumer nodes that are gone leave it
    if inputs is not None:
        from mesh import fingerprint

        manifest = load_manifest(project.target_dir / "manifest.json", project=name)
        fingerprint.record(mesh, name, inputs, fingerprint.built_relations(manifest, name))
    outcome.enter(None)


def _latest_doc(mesh: Mesh, name: str) -> Json | None:
    from mesh.manifest import load_interface

    entry = mesh.registry.read_latest(name, mesh.env)
    return None if entry is None else load_interface(entry.body, f"{name}/{mesh.env} latest", name)


def _grants_by_swap(audit: Any) -> bool:
    from mesh.wap import SnowflakeAudit

    return isinstance(audit, SnowflakeAudit)  # its promote granted exactly the new interface


def _sync_grants(mesh: Mesh, name: str, previous: Json | None, outcome: ProjectOutcome) -> None:
    """On Snowflake, consumers' SELECT follows the interface: new relations granted, gone ones
    revoked (mesh.yml `grants: false` turns it off)."""
    from mesh.wap import profile_output

    if not mesh.target.grants or profile_output(mesh, name).type != "snowflake":
        return
    from mesh.snowflake import sync_grants

    current = _latest_doc(mesh, name)
    if current is None:
        return
    statements = sync_grants(mesh, name, previous, current)
    outcome.notes.append(f"grants: {len(statements)} statement{'s' if len(statements) != 1 else ''} for consumer roles")


def _publish_note(result: Any) -> str:
    if result.status == "unchanged":
        return f"interface unchanged ({result.version})"
    if result.status == "superseded":
        return f"wrote {result.version}; latest holds a newer build ({result.previous})"
    return f"published {result.version} ({result.public_models} public nodes)"


def _portable(run: DbtRun) -> DbtRun:
    """The run without dbt's result objects (they do not cross processes)."""
    run.result = None
    return run


__all__ = ["BreakingChangeError", "BuildOptions", "ProjectOutcome", "run_project"]
