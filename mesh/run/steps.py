"""What happens to one project in a mesh run, in order (run in the project's own worker process).

    deps      `dbt deps` when the package spec changed (mesh/warehouse/packages.py)
    gate      producers: the contract check on a `dbt parse` of the working tree, before any
              relation a consumer reads is touched
    build     into the audit location (mesh/warehouse/wap.py): seeds that the project's own sources read
              first, then `dbt build`; a failing model or test discards the audit build
    audit     producers: the publish audit (run results, contracts) and the contract gate on the
              built interface, still before anything is visible
    swap      the audit build becomes what readers see, atomically
    publish   the interface, write-audit-publish (mesh/interface/publish.py), then freshness and state
    validate  consumers: cross-project lineage of the new manifest, then usage for the gate

The parent process (mesh/run/scheduler.py) syncs the project and decides whether it must build at all
(fingerprints) before a worker starts; this module never decides to skip.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh.consumer.freshness import record_freshness
from mesh.consumer.validate import validate_projects
from mesh.core import interrupts
from mesh.core.errors import (
    BreakingChangeError,
    BuildFailedError,
    CannotJudgeError,
    Interrupted,
    LineageError,
    MeshError,
    PublishRefusedError,
)
from mesh.core.surface import hint
from mesh.interface.code_interface import compile_tree
from mesh.interface.publish import data_version, node_relation, prepare, publish_project, save_state
from mesh.interface.usage import record_usage
from mesh.project.artifacts import (
    Json,
    load_manifest,
    public_node_ids,
    reused_manifests,
    table_of,
    uncontracted_ids,
)
from mesh.project.config import Mesh, read_yaml
from mesh.registry import read_baseline
from mesh.registry.document import load_interface
from mesh.run import fingerprint
from mesh.run.audits import AuditResult, audit_location, run_audits
from mesh.warehouse.packages import ensure_packages
from mesh.warehouse.readers import catalog_of, key, open_reader
from mesh.warehouse.runner import DbtRun, dbt_environment, run_dbt, stray_loom_config
from mesh.warehouse.snowflake_grants import sync_grants
from mesh.warehouse.wap import (
    BUILD_DIR_VAR,
    DuckDBAudit,
    SnowflakeAudit,
    audit_build,
    profile_output,
)

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
    vars: str | None = None  # dbt's --vars (YAML)
    event_time_start: str | None = None  # a microbatch window: dbt's --event-time-start/-end
    event_time_end: str | None = None

    @property
    def complete(self) -> bool:
        """A build of the whole project (a fingerprint describes it); a microbatch window is not."""
        return self.select is None and not self.defer and not (self.event_time_start or self.event_time_end)

    def fingerprint_options(self) -> dict[str, Any]:
        # Not full_refresh: a full refresh rebuilds the same inputs, so the next plain run may skip.
        return {"select": self.select, "defer": self.defer, "vars": self.vars}

    def dbt_args(self) -> list[str]:
        """What these options add to `dbt build` (and to the gate's compile, for --vars)."""
        args = ["--vars", self.vars] if self.vars else []
        if self.event_time_start:
            args += ["--event-time-start", self.event_time_start]
        if self.event_time_end:
            args += ["--event-time-end", self.event_time_end]
        return args


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
    reason: str = ""  # why the run built it (changed, upstream data changed: …)
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

    seeds = {
        table_of(node, "alias"): node["name"]
        for node in manifest.get("nodes", {}).values()
        if node.get("resource_type") == "seed" and node.get("package_name") == project
    }
    read = {
        seeds[table_of(source, "identifier")]
        for source in manifest.get("sources", {}).values()
        if table_of(source, "identifier") in seeds
    }
    return sorted(read)


def _gate(
    mesh: Mesh, name: str, options: BuildOptions, outcome: ProjectOutcome, step: Step, audit: Any
) -> Path | None:
    """The contract check on a compile of the working tree, before the build touches anything a
    reader sees; returns the compiled manifest's path (None: nothing published yet)."""
    from mesh.run.gate import check_project

    if read_baseline(mesh.registry, name, mesh.env)[0] is None:
        return None  # nothing published yet (or nothing intact): no contract to break
    step("gate", "compiling the working tree")
    build_dir = Path(audit.env()[BUILD_DIR_VAR]) if isinstance(audit, DuckDBAudit) else None
    try:
        compiled = compile_tree(mesh, name, build_dir)
    except CannotJudgeError as exc:  # in a run, a tree that does not compile is a failed build
        raise BuildFailedError(str(exc.__cause__ or exc)) from exc
    result = check_project(
        mesh, name, options.allow_breaking, options.reason, parse=False, manifest_path=compiled,
        build_dir=build_dir, protected=audit is not None,
    )
    if result.blocked:
        outcome.details.extend(result.lines())
        raise result.error()
    changes = len(result.changes)
    against = result.against or "nothing"
    named = result.change_names()
    outcome.notes.append(
        f"gate passed: {changes} change{'s' if changes != 1 else ''} against {against}"
        + (f": {', '.join(named)}" if named else "")
    )
    outcome.notes.extend(f"gate: {line}" for line in result.judged_lines() if not line.startswith("compared:"))
    if result.hits:  # a breaking change passing: allowed, or acknowledged by every consumer it hits
        breaking = sorted({f"{h.change.kind} {h.change.target}" for h in result.hits})
        outcome.notes.append(f"gate: breaking {', '.join(breaking)} hits {', '.join(result.hit_projects())}")
        outcome.notes.extend(f"gate: {line}" for line in result.warning_lines() if "breaking change" in line)
        outcome.notes.extend(f"gate: {line}" for line in result.negotiation_lines())
    outcome.notes.extend(f"warning: {note}" for note in result.remarks)
    step("gate", "passed")
    return compiled


def _publish_audit(
    mesh: Mesh, name: str, options: BuildOptions, outcome: ProjectOutcome, catalog: Json | None
) -> None:
    """Before the swap: would the publish be refused? (run results, contracts, the gate on the
    built interface — columns a parse cannot know, from the warehouse, included)."""
    from mesh.run.gate import publish_gate

    _manifest, nodes, _groups, _sha = prepare(mesh, name, catalog)
    entry, _damaged = read_baseline(mesh.registry, name, mesh.env)
    if entry is None:
        return
    latest = load_interface(entry.body, f"{name}/{mesh.env} latest", name)
    gate = publish_gate(mesh, name, options.allow_breaking, options.reason, say=outcome.details.append)
    gate(latest, nodes)


def run_project(
    mesh: Mesh,
    name: str,
    options: BuildOptions,
    step: Step,
    upstream_data: dict[str, str | None] | None = None,
) -> ProjectOutcome:
    """Build, test, swap, publish and validate one project; never raises: a failure or an interrupt
    is the outcome's status, with the step it happened in and one line saying why.
    `upstream_data`: the data versions of the upstreams' public nodes when the run decided to build
    (what this build reads; the fingerprint records it)."""
    started = time.monotonic()
    outcome = ProjectOutcome(name, "built", started_at=time.time())
    try:
        _run(mesh, name, options, step, outcome, upstream_data)
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


def _run(
    mesh: Mesh,
    name: str,
    options: BuildOptions,
    step: Step,
    outcome: ProjectOutcome,
    upstream_data: dict[str, str | None] | None = None,
) -> None:

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

        inputs = fingerprint.compute(mesh, name, options.fingerprint_options())

    sources_before = None  # the data of the project's own sources, read before the build reads it
    if inputs is not None and (project.target_dir / "manifest.json").is_file():

        try:
            before = load_manifest(project.target_dir / "manifest.json", project=name)
            sources_before = fingerprint.source_versions(mesh, name, fingerprint.source_relations(before, name))
        except MeshError:
            sources_before = None

    audit = audit_build(mesh, name, say=outcome.notes.append)
    if audit is None and options.gate and mesh.target.wap is False:
        outcome.notes.append(
            f"warning: wap: false: {name} builds in place; only the gate before the build protects its consumers"
        )
    # Every dbt call of the project sees the build's environment, the gate's compile included:
    # dbt's partial parsing starts over when the profile (the audit file's path) differs from the
    # last call's. So the audit copy is made first: no dbt call ever opens a file before the copy
    # it belongs to exists, and the gate's compile reads a copy of what is live.
    build_env = audit.env() if audit is not None else {}
    audits: list[AuditResult] = []
    if audit is None and mesh.config.projects[name].audits and mesh.target.wap is False:
        outcome.notes.append(
            f"warning: wap: false: {name}'s audits read the live build and can only block the publish"
        )

    with dbt_environment(build_env):
        if audit is not None:
            outcome.enter("copy")
            step("copy", audit.description)
            audit.prepare()
        try:
            outcome.enter("gate")
            compiled = _gate(mesh, name, options, outcome, step, audit) if options.gate else None
            seeds: list[str] = []
            if _has_seeds(mesh, name):
                if compiled is None:
                    outcome.enter("parse")  # which seeds the project's own sources read
                    step("build", "parsing")
                    run_dbt(mesh, name, ["parse"])
                    compiled = project.target_dir / "manifest.json"
                seeds = seeds_read_by_sources(load_manifest(compiled, project=name), name)
            outcome.enter("build")
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
            args += options.dbt_args()
            step("build", "dbt build")
            run = run_dbt(mesh, name, args, raise_on_failure=False)
            outcome.build = _portable(run)
            if not run.success:
                raise run.error()
            publishes = options.publish and options.complete
            built: BuiltFacts | None = None
            with reused_manifests():
                manifest = load_manifest(project.target_dir / "manifest.json", project=name)
                public = public_node_ids(manifest)
                if public:
                    outcome.enter("audit")
                    built = read_built(mesh, name, manifest, public, audit)
                    if options.gate and options.complete:
                        step("audit", "publish audit and contract gate on the built interface")
                        _publish_audit(mesh, name, options, outcome, built.catalog)
            if mesh.config.projects[name].audits:
                outcome.enter("audits")
                where = audit_location(audit, mesh, name)
                step("audits", f"{len(mesh.config.projects[name].audits)} on {where}")
                audits = run_audits(mesh, name, audit, build_env)
                outcome.notes.append("audits: " + ", ".join(r.line() for r in audits))
        except (MeshError, KeyboardInterrupt):
            if audit is not None:
                audit.discard()
            raise
    outcome.notes.append(f"built: {run.counts()}")
    if not public and options.publish and mesh.consumers_of(name):
        outcome.notes.append(
            f"nothing to publish: {name} has no public model, seed or snapshot, and "
            f"{', '.join(mesh.consumers_of(name))} read{'s' if len(mesh.consumers_of(name)) == 1 else ''} it: "
            "give what they read `access: public`"
        )
    if options.allow_breaking and options.reason:
        from mesh.run.gate import remember_allowed_build

        remember_allowed_build(mesh, name, options.reason)  # `invoke publish` of this build carries it
    if run.warnings:
        outcome.notes.extend(f"warning: {w}" for w in _deprecations(run.warnings))

    if audit is not None:
        outcome.enter("swap")
        step("swap", audit.description)
        audit.promote()

    with reused_manifests():
        if publishes and public:
            from mesh.run.gate import publish_gate

            outcome.enter("publish")
            step("publish", "write-audit-publish")
            record: dict[str, object] = {}
            if audits:
                record["audits"] = [r.to_json() for r in audits]
            if built is not None and built.data_versions:  # what `downstream --since` compares with
                record["data_versions"] = {uid: v for uid, (v, _basis) in sorted(built.data_versions.items())}
            gate = publish_gate(
                mesh, name, options.allow_breaking, options.reason,
                say=outcome.details.append, record=record,
            )
            previous = _latest_doc(mesh, name)
            result = publish_project(
                mesh, name, checks=(gate,), extra_meta=record,
                catalog=built.catalog if built is not None else None,
            )
            outcome.publish = result
            outcome.notes.append(_publish_note(result, record))
            if result.status == "published" and not _grants_by_swap(audit):
                _sync_grants(mesh, name, previous, outcome)
        outcome.enter("state")  # data versions of the public nodes, the project's private state
        if public and (publishes or options.save_state):

            fresh = record_freshness(
                mesh, name, built.data_versions if built is not None else None,
                audits=[r.to_json() for r in audits],
            )
            if fresh is not None:
                outcome.notes.append(_data_note(fresh, built))
        if options.save_state and options.complete:

            save_state(mesh, name)

    if project.upstreams and options.validate:

        outcome.enter("validate")
        step("validate", "cross-project lineage")
        (report,) = validate_projects(mesh, [name])
        outcome.report = report
        if not report.ok:
            outcome.details.append(report.text())
            raise LineageError(f"lineage validation failed for {name}: run {hint('validate', '--project', name)} for the findings")
        outcome.notes.append(f"lineage: {len(report.edges)} cross-project edge{'s' if len(report.edges) != 1 else ''} validated")
        outcome.notes.extend(f"warning: {w}" for w in report.warning_lines())
    outcome.enter("record")  # what the consumer uses upstream, the fingerprint of this build
    if project.upstreams and options.record_usage and options.complete:

        record_usage(mesh, name)  # the whole record: consumer nodes that are gone leave it
    if inputs is not None:

        manifest = load_manifest(project.target_dir / "manifest.json", project=name)
        current = upstream_data or {}
        read = fingerprint.data_inputs(manifest, name, list(project.upstreams))

        sources = fingerprint.source_relations(manifest, name)
        known = sources_before or {}
        later = fingerprint.source_versions(mesh, name, [r for r in sources if key(r) not in known])
        fingerprint.record(
            mesh, name, inputs, fingerprint.built_relations(manifest, name), {uid: current.get(uid) for uid in read},
            {key(r): known[key(r)] if key(r) in known else later.get(key(r)) for r in sources},
        )
    outcome.enter(None)


@dataclass
class BuiltFacts:
    """What the warehouse holds after a build, read before anything is swapped in."""

    catalog: Json | None  # columns of the public nodes without an enforced contract
    data_versions: dict[str, tuple[str, str]]  # uid -> (data version, basis: content | build)


def read_built(mesh: Mesh, name: str, manifest: Json, public: list[str], audit: Any) -> BuiltFacts:
    """The columns of the uncontracted public nodes and a digest of every public node's data, read
    from what the build wrote (the audit copy, when there is one) on one connection."""

    build_dir = audit.env().get(BUILD_DIR_VAR) if isinstance(audit, DuckDBAudit) else None
    relations = {uid: node_relation(manifest["nodes"][uid]) for uid in public}
    uncontracted = set(uncontracted_ids(manifest, public))
    invocation = str(manifest["metadata"].get("invocation_id") or "")
    versions: dict[str, tuple[str, str]] = {}
    catalog = None
    with open_reader(mesh, name, build_dir) as reader:
        if reader is not None:
            if uncontracted:
                columns = reader.columns(relations[uid] for uid in uncontracted)
                catalog = catalog_of(columns, {uid: relations[uid] for uid in uncontracted})
            for uid in public:
                if (manifest["nodes"][uid].get("config") or {}).get("materialized") == "ephemeral":
                    continue
                versions[uid] = data_version(uid, reader.digest(relations[uid]), invocation)
    for uid in public:
        versions.setdefault(uid, data_version(uid, None, invocation))
    if uncontracted and catalog is None:
        raise PublishRefusedError(
            f"cannot read {name}'s warehouse for the columns of its public nodes without an enforced "
            "contract: check the connection (or the DuckDB file), then build again"
        )
    return BuiltFacts(catalog, versions)


def _data_note(fresh: Json, built: BuiltFacts | None) -> str:
    nodes = fresh.get("nodes") or {}
    by_build = sorted(uid for uid, (_v, basis) in (built.data_versions.items() if built else []) if basis == "build")
    note = f"data versions: {len(nodes)} public node{'s' if len(nodes) != 1 else ''} recorded"
    if by_build:
        note += (
            f" ({len(by_build)} without a content digest, new with every build: "
            f"{', '.join(uid.split('.', 2)[-1] for uid in by_build[:3])}{', …' if len(by_build) > 3 else ''})"
        )
    return note


_DEPRECATION = ("deprecat",)


def _deprecations(warnings: list[str]) -> list[str]:
    """dbt's warnings about references to deprecated model versions (shown on the run's line)."""
    return [w for w in warnings if any(word in w.lower() for word in _DEPRECATION)][:5]


def _latest_doc(mesh: Mesh, name: str) -> Json | None:

    entry, _damaged = read_baseline(mesh.registry, name, mesh.env)
    return None if entry is None else load_interface(entry.body, f"{name}/{mesh.env} latest", name)


def _grants_by_swap(audit: Any) -> bool:

    return isinstance(audit, SnowflakeAudit)  # its promote granted exactly the new interface


def _sync_grants(mesh: Mesh, name: str, previous: Json | None, outcome: ProjectOutcome) -> None:
    """On Snowflake, consumers' SELECT follows the interface: new relations granted, gone ones
    revoked (mesh.yml `grants: false` turns it off)."""

    if not mesh.target.grants or profile_output(mesh, name).type != "snowflake":
        return

    current = _latest_doc(mesh, name)
    if current is None:
        return
    statements = sync_grants(mesh, name, previous, current)
    outcome.notes.append(f"grants: {len(statements)} statement{'s' if len(statements) != 1 else ''} for consumer roles")


def _publish_note(result: Any, record: dict[str, object] | None = None) -> str:
    if result.status == "unchanged":
        return f"interface unchanged ({result.version})"
    if result.status == "superseded":
        return f"wrote {result.version}; latest holds a newer build ({result.previous})"
    changes = (record or {}).get("changes")
    named = f": {', '.join(str(c) for c in changes)}" if isinstance(changes, list) and changes else ""
    replaced = result.replaced_damaged
    damaged = f", replaces damaged latest {replaced}" if replaced else ""
    return f"published {result.version} ({result.public_models} public nodes{damaged}){named}"


def _portable(run: DbtRun) -> DbtRun:
    """The run without dbt's result objects (they do not cross processes)."""
    run.result = None
    return run


__all__ = ["BreakingChangeError", "BuildOptions", "ProjectOutcome", "run_project"]
