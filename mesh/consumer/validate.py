"""Validate cross-project lineage: each upstream edge of a consumer must resolve to a published node.

A consumer's `parent_map` must show every upstream dependency, and each one must resolve to a public
model, seed or snapshot in the interface its upstream currently publishes (the env the target binds):
- dbt-loom consumers: parents `model.<upstream>.<name>[.v<N>]`, `seed.<upstream>.<name>`,
  `snapshot.<upstream>.<name>`;
- source consumers: parents `source.<consumer>.<upstream>.<table>`, mapped back to the upstream
  node through the `meta.mesh.unique_id` that sync wrote, and checked to still point at that
  node's relation.
Findings are errors (broken, non-public, missing, stale) or warnings (deprecated version, synced to an
older interface). Errors make validate exit 1.

A manifest whose build failed proves nothing: when the consumer's run_results.json beside it comes
from the same dbt invocation and records a failure, validate refuses to judge (exit 1). Without a
run_results.json of that invocation (a `dbt parse` manifest given with `--manifest`), it judges the
manifest as it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mesh.consumer.freshness import age_text, declared_freshness, parse_time, read_freshness
from mesh.core.errors import BuildFailedError, ManifestError
from mesh.core.surface import hint
from mesh.core.text import plural
from mesh.interface.usage import source_mesh_meta
from mesh.project.artifacts import (
    PUBLIC_RESOURCE_TYPES,
    RUN_RESULTS_SCHEMAS,
    Json,
    load_manifest,
    resource_label,
)
from mesh.project.config import Mesh
from mesh.project.files import own_node_names, read_lock, scan_references, scan_unqualified_refs
from mesh.registry.document import check_schema, load_interface, load_json


@dataclass(frozen=True)
class Finding:
    """One problem with a cross-project edge."""

    severity: str  # "error" or "warning"
    kind: str  # broken | non_public | missing | stale | undeclared | deprecated | behind
    consumer: str
    node: str
    upstream_node: str
    message: str


@dataclass
class Edge:
    """A resolved cross-project edge: consumer node -> upstream public model, seed or snapshot."""

    consumer: str
    node: str
    via: str  # "ref" or "source"
    parent: str  # the parent id as it appears in the consumer's parent_map
    upstream: str
    upstream_node: str


@dataclass
class Report:
    """The result of validating one consumer manifest."""

    project: str
    manifest: str
    edges: list[Edge] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    upstream_versions: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def warning_lines(self) -> list[str]:
        """Each warning as one line (deprecated versions still read, stale data, …)."""
        return [f"{f.kind} {f.node}: {f.message}" for f in self.findings if f.severity == "warning"]

    def to_json(self) -> Json:
        return {
            "project": self.project,
            "manifest": self.manifest,
            "ok": self.ok,
            "upstream_versions": self.upstream_versions,
            "edges": [asdict(e) for e in self.edges],
            "findings": [asdict(f) for f in self.findings],
        }

    def text(self) -> str:
        lines = [
            f"{self.project}: {plural(len(self.edges), 'cross-project edge')}, "
            f"{plural(sum(f.severity == 'error' for f in self.findings), 'error')}, "
            f"{plural(sum(f.severity == 'warning' for f in self.findings), 'warning')}"
            + (f" (upstreams: {', '.join(f'{k}@{v}' for k, v in sorted(self.upstream_versions.items()))})" if self.upstream_versions else "")
        ]
        for f in self.findings:
            lines.append(f"  {f.severity.upper():7} {f.kind:11} {f.node}: {f.message}")
        return "\n".join(lines)


_CONSUMER_NODE_TYPES = frozenset(
    {"model", "snapshot", "seed", "test", "exposure", "metric", "semantic_model", "saved_query", "analysis"}
)


def _upstream_of_parent(parent: str, project: str, sources: Json | None = None) -> tuple[str, str] | None:
    """(via, upstream) if `parent` crosses a project boundary, else None. A source crosses when it
    is named after a project, or when it is a team's own source the mesh adopted (its meta.mesh
    names the upstream: mesh/consumer/adopt.py)."""

    parts = parent.split(".")
    if parts[0] in PUBLIC_RESOURCE_TYPES and len(parts) >= 3 and parts[1] != project:
        return "ref", parts[1]
    if parts[0] == "source" and len(parts) >= 4 and parts[1] == project:
        upstream = source_mesh_meta((sources or {}).get(parent) or {}).get("upstream")
        return "source", str(upstream) if isinstance(upstream, str) and upstream else parts[2]
    return None


def _relation(node: Json) -> str:
    return ".".join(str(node.get(k) or "").lower() for k in ("database", "schema", "alias"))


def _source_relation(source: Json) -> str:
    ident = source.get("identifier") or source.get("name")
    return ".".join(str(v or "").lower() for v in (source.get("database"), source.get("schema"), ident))


# Statuses in run_results.json that mean a node did not build or a test did not pass.
_FAILED_STATUSES = frozenset({"error", "fail", "runtime error", "partial success"})


def refuse_failed_build(manifest_path: Path, manifest: Json) -> None:
    """Raise BuildFailedError (exit 1) when run_results.json beside `manifest_path` comes from the
    dbt invocation that wrote the manifest and records a failure; nothing when there is none."""
    path = manifest_path.parent / "run_results.json"
    if not path.is_file():
        return
    doc = load_json(path, "run_results.json")
    check_schema(doc, RUN_RESULTS_SCHEMAS, f"run_results {path}")
    invocation = manifest["metadata"].get("invocation_id")
    if invocation is None or doc["metadata"].get("invocation_id") != invocation:
        return  # another invocation's results (e.g. the manifest is a later `dbt parse`)
    results = doc.get("results")
    if not isinstance(results, list):
        raise ManifestError(f"run_results {path} has no `results` list")
    failed = [
        f"{r.get('unique_id')} ({r.get('status')})"
        for r in results
        if isinstance(r, dict) and r.get("status") in _FAILED_STATUSES
    ]
    if failed:
        name = manifest["metadata"].get("project_name")
        more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
        raise BuildFailedError(
            f"{name}'s last build failed ({', '.join(failed[:3])}{more}), so its manifest proves "
            f"no lineage: fix the build ({hint('build', '--project', name)}), then validate"
        )


def validate_manifest(
    mesh: Mesh, manifest_path: Path, project_name: str | None = None, today: datetime | None = None
) -> Report:
    """Validate one consumer manifest; raises BuildFailedError (exit 1) when the build that wrote
    it failed, and MeshError for bad input (exit 2)."""
    manifest = load_manifest(manifest_path, project=project_name)
    refuse_failed_build(manifest_path, manifest)
    name = manifest["metadata"]["project_name"]
    project = mesh.project(name)
    report = Report(name, str(manifest_path))
    declared = set(project.upstreams)
    interfaces: dict[str, Json | None] = {}

    def interface(upstream: str) -> Json | None:
        if upstream not in interfaces:
            env = mesh.upstream_env(upstream)
            entry = mesh.registry.read_latest(upstream, env)
            interfaces[upstream] = (
                None if entry is None else load_interface(entry.body, f"{upstream}/{env} latest", upstream, env, entry.version)
            )
            if entry is not None:
                report.upstream_versions[upstream] = entry.version
        return interfaces[upstream]

    sources: Json = manifest.get("sources") or {}
    parent_map: Json = manifest.get("parent_map") or {}
    now = (today or datetime.now(UTC)).date()
    touched: set[str] = set()
    for node_id in sorted(parent_map):
        kind, _, rest = node_id.partition(".")
        # Only the consumer's own nodes: dbt-loom injects upstream models into its manifest too.
        if kind not in _CONSUMER_NODE_TYPES or rest.partition(".")[0] != name:
            continue
        for parent in parent_map[node_id]:
            crossing = _upstream_of_parent(parent, name, sources)
            if crossing is None:
                continue
            via, upstream = crossing
            touched.add(upstream)

            def add(
                kind: str, message: str, upstream_node: str, severity: str = "error", node: str = node_id
            ) -> None:
                report.findings.append(Finding(severity, kind, name, node, upstream_node, message))

            if upstream not in declared:
                if upstream not in mesh.config.projects:
                    # An ordinary dbt source, or a node of an installed dbt package (packages ship
                    # models and seeds): not a mesh upstream.
                    continue
                add("undeclared", f"depends on {upstream}, which {name}/dependencies.yml does not declare", parent)
                continue
            target_id = parent
            if via == "source":
                source = sources.get(parent) or {}
                target_id = source_mesh_meta(source).get("unique_id") or ""
                if not target_id:
                    add("stale", f"source {parent} was not generated by sync: rebuild it with {hint('build', '--project', name)} (it syncs first)", parent)
                    continue
            upstream_doc = interface(upstream)
            if upstream_doc is None:
                add("missing", f"{upstream} has not published to {mesh.upstream_env(upstream)} in {mesh.registry.url}", target_id)
                continue
            published = upstream_doc["nodes"].get(target_id)
            if published is None:
                add(
                    "broken",
                    f"{target_id} is not a public {resource_label(target_id)} of {upstream} at "
                    f"{report.upstream_versions.get(upstream)} (removed, renamed or not public)",
                    target_id,
                )
                continue
            if via == "source" and _source_relation(sources[parent]) != _relation(published):
                add(
                    "stale",
                    f"source {parent} points at {_source_relation(sources[parent])} but {target_id} is "
                    f"published at {_relation(published)}: rebuild it with {hint('build', '--project', name)} "
                    "(it syncs first)",
                    target_id,
                )
                continue
            report.edges.append(Edge(name, node_id, via, parent, upstream, target_id))
            deprecation = published.get("deprecation_date")
            if deprecation and node_id.startswith("model."):
                _deprecation_finding(
                    deprecation, now, target_id, add, name, node_id, upstream_doc["nodes"],
                    mesh.deprecation_policy(name), mesh.config.deprecation_warning_days,
                )
    referenced: set[str] | None = None
    for upstream in project.upstreams:
        if upstream in touched:
            continue
        if referenced is None:
            referenced = _referenced_upstreams(mesh, name)
        if upstream in referenced:  # the code reads it, the manifest does not: stale
            report.findings.append(
                Finding(
                    "error", "missing", name, "(project)", upstream,
                    f"{name} references {upstream} but its manifest has no edge to it: is the "
                    f"manifest stale? run {hint('build', '--project', name)}",
                )
            )
        else:
            severity = "error" if mesh.unused_upstream_policy(name) == "error" else "warning"
            report.findings.append(
                Finding(
                    severity, "unused", name, "(project)", upstream,
                    f"{name} declares {upstream} but reads none of its public nodes: remove it from "
                    f"dependencies.yml or reference it",
                )
            )
    report.findings.extend(freshness_findings(mesh, manifest, name, report.edges, today))
    return report


def _referenced_upstreams(mesh: Mesh, name: str) -> set[str]:
    """The upstreams `name`'s code references (qualified refs and sources, unqualified refs that
    resolve to them): a declared upstream outside this set is unused, not a stale manifest."""

    project = mesh.project(name)
    found = {u for u in project.upstreams if scan_references(project, u)}
    lock = read_lock(project) or {}
    for upstream, entry in (lock.get("upstreams") or {}).items():
        if upstream in project.upstreams and isinstance(entry, dict) and entry.get("nodes"):
            found.add(upstream)  # adopted through the team's own sources (sync records them)
    if len(found) < len(project.upstreams):
        own = own_node_names(project)
        if any(ref.name not in own for ref in scan_unqualified_refs(project)):
            found = set(project.upstreams)  # an unqualified ref may resolve to any of them: not judged
    return found


def _deprecation_finding(
    deprecation: Any,
    today: Any,
    target_id: str,
    add: Any,
    consumer: str,
    node_id: str,
    nodes: Json,
    policy: str = "warn",
    lead_days: int = 30,
) -> None:
    """A reference to a deprecated version: a warning from `lead_days` before its deprecation_date;
    past it, a warning on every run, or an error where the consumer's policy is `fail`. The
    message names who must migrate (consumer project and model), to what (the latest version), and
    the versions the producer publishes."""
    try:
        when = datetime.fromisoformat(str(deprecation).replace("Z", "+00:00")).date()
    except ValueError:
        return
    published = nodes.get(target_id) or {}
    latest = published.get("latest_version")
    successor = next(
        (
            uid
            for uid, n in nodes.items()
            if n.get("name") == published.get("name")
            and latest is not None
            and str(n.get("version")) == str(latest)
            and uid != target_id
        ),
        None,
    )
    to = f"ref the latest version ({successor})" if successor else "stop using it (ask its owners what replaces it)"
    versions = sorted(
        (str(n.get("version")) for n in nodes.values() if n.get("name") == published.get("name") and n.get("version") is not None),
        key=lambda v: (len(v), v),
    )
    offered = f"; {published.get('name')} versions published: {', '.join(versions)}" if versions else ""
    model = ".".join(node_id.split(".")[2:]) or node_id
    who = f"{consumer} must migrate {node_id.split('.')[0]} {model}"
    if when < today:
        severity = "error" if policy == "fail" else "warning"
        add("deprecated", f"{target_id} was deprecated on {when}, past its deprecation_date: {who}: {to}{offered}", target_id, severity)
    elif (when - today).days <= lead_days:
        add("deprecated", f"{target_id} is deprecated from {when}: {who} before then: {to}{offered}", target_id, "warning")


# --- freshness of upstream data (mesh.consumer.freshness) -------------------------------------------------


def _reads_upstream(manifest: Json, project: str, uid: str, edges: list[Edge]) -> set[tuple[str, str]]:
    """(upstream, upstream model) pairs `uid` reads: its own cross-project edges and those of the
    project's own models it is built from."""
    direct: dict[str, set[tuple[str, str]]] = {}
    for edge in edges:
        direct.setdefault(edge.node, set()).add((edge.upstream, edge.upstream_node))
    parent_map: Json = manifest.get("parent_map") or {}
    found: set[tuple[str, str]] = set()
    seen: set[str] = set()
    stack = [uid]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        found |= direct.get(node, set())
        for parent in parent_map.get(node) or []:
            kind, _, rest = str(parent).partition(".")
            if kind in ("model", "snapshot", "seed") and rest.partition(".")[0] == project:
                stack.append(parent)
    return found


def freshness_findings(
    mesh: Mesh, manifest: Json, project: str, edges: list[Edge], now: datetime | None = None
) -> list[Finding]:
    """Stale upstream data, by consumer model: for each model of `project` that declares
    `meta.mesh.consumer.freshness`, every upstream public model it reads is checked against the upstream's
    recorded `built_at`: an error past `error_after`, a warning past `warn_after`, a warning when the
    upstream recorded no freshness. No declaration, no check. A bad declaration raises ConfigError."""

    moment = now or datetime.now(UTC)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    declared = {}
    for uid, node in sorted((manifest.get("nodes") or {}).items()):
        if isinstance(node, dict) and node.get("resource_type") == "model" and node.get("package_name") == project:
            requirement = declared_freshness(node)
            if requirement is not None:
                declared[uid] = requirement
    findings: list[Finding] = []
    records: dict[str, Json | None] = {}
    for uid, requirement in declared.items():
        model = ".".join(uid.split(".")[2:])
        for upstream, upstream_node in sorted(_reads_upstream(manifest, project, uid, edges)):
            if upstream not in records:
                records[upstream] = read_freshness(mesh, upstream)
            record = records[upstream]
            entry = ((record or {}).get("nodes") or {}).get(upstream_node)
            if entry is None:
                findings.append(
                    Finding(
                        "warning", "freshness", project, uid, upstream_node,
                        f"{model} declares meta.mesh.consumer.freshness but {upstream} recorded no freshness "
                        f"for {upstream_node}: it is recorded by {hint('mesh')} or "
                        f"{hint('build', '--project', upstream, '--save-state')}",
                    )
                )
                continue
            age = moment - parse_time(entry["built_at"], "built_at")
            for severity, key, limit in (
                ("error", "error_after", requirement.error_after),
                ("warning", "warn_after", requirement.warn_after),
            ):
                if limit is not None and age > limit.delta:
                    findings.append(
                        Finding(
                            severity, "freshness", project, uid, upstream_node,
                            f"{model} reads {upstream_node}, built {age_text(age)} ago "
                            f"({entry['built_at']}), past its {key} of {limit}: the upstream "
                            "data is stale",
                        )
                    )
                    break
    return findings


def validate_projects(mesh: Mesh, names: list[str]) -> list[Report]:
    """Validate each named consumer's `target/manifest.json`."""
    reports = []
    for name in names:
        project = mesh.project(name)
        reports.append(validate_manifest(mesh, project.target_dir / "manifest.json", name))
    return reports


def consumers(mesh: Mesh) -> list[str]:
    """Every project that declares an upstream."""
    return [n for n in mesh.build_order() if mesh.project(n).upstreams]

