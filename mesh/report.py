"""Text renderings shared by the invoke tasks and the `mesh` console script."""

from __future__ import annotations

import orjson

from mesh.config import Mesh
from mesh.lineage import Report
from mesh.manifest import load_interface
from mesh.sync import SyncPlan


def plan_lines(mesh: Mesh, plan: SyncPlan, dry_run: bool) -> list[str]:
    """A sync plan as sentences, dbt-meshify style."""
    verb = "would change" if dry_run else "changed"
    lines = [f"sync {plan.project}: {len(plan.changes)} files {verb}"]
    lines += [f"  {change.sentence(mesh.root)}" for change in plan.changes]
    lines += [f"  note: {note}" for note in plan.notes]
    if not plan.changes:
        lines.append("  everything is up to date")
    return lines


def validate_output(reports: list[Report], fmt: str) -> str:
    """Validation reports as text or JSON."""
    if fmt == "json":
        return orjson.dumps(
            {"ok": all(r.ok for r in reports), "reports": [r.to_json() for r in reports]},
            option=orjson.OPT_INDENT_2,
        ).decode()
    return "\n".join(r.text() for r in reports)


def registry_list_lines(mesh: Mesh, project: str | None) -> list[str]:
    """Versions in the registry: one project's history, or every project's latest."""
    registry = mesh.registry
    if project is None:
        published = registry.list_published()
        lines = [f"registry {registry.url}: {len(published)} published project/env pairs"]
        for name, env in published:
            latest = registry.read_latest(name, env)
            lines.append(f"  {name}/{env}: latest {latest.version if latest else '-'}")
        return lines
    env = mesh.env
    versions = registry.list_versions(project, env)
    latest = registry.read_latest(project, env)
    lines = [f"{project}/{env} in {registry.url}: {len(versions)} versions"]
    for version in versions:
        doc = load_interface(registry.read_version(project, env, version).body, version, project)
        meta = doc["metadata"]["mesh"]
        mark = "  <- latest" if latest and latest.version == version else ""
        lines.append(
            f"  {version}  {meta.get('public_models', len(doc['nodes'])):>4} public models  "
            f"published {meta.get('published_at')}  by {meta.get('publisher')}{mark}"
        )
    return lines


def registry_show_lines(mesh: Mesh, project: str, version: str | None) -> list[str]:
    """One interface's metadata and public models."""
    registry, env = mesh.registry, mesh.env
    entry = registry.read_version(project, env, version) if version else registry.read_latest(project, env)
    if entry is None:
        from mesh.errors import NotFoundError

        raise NotFoundError(f"{project}/{env} has no latest in {registry.url}: publish it first")
    doc = load_interface(entry.body, entry.version, project)
    meta = doc["metadata"]["mesh"]
    lines = [f"{project}/{env} {entry.version}"]
    for key in ("published_at", "built_at", "content_sha256", "dbt_version", "git_sha", "publisher", "previous", "reason"):
        if meta.get(key) is not None:
            lines.append(f"  {key:15} {meta[key]}")
    lines.append(f"  {len(doc['nodes'])} public models:")
    for uid, node in sorted(doc["nodes"].items()):
        cols = len(node.get("columns") or {})
        dep = f", deprecated {node['deprecation_date']}" if node.get("deprecation_date") else ""
        lines.append(f"    {uid:45} {node.get('relation_name')}  ({cols} columns{dep})")
    return lines
