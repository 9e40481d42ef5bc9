"""Text renderings shared by the invoke tasks and the `mesh` console script."""

from __future__ import annotations

import orjson

from mesh.config import Mesh
from mesh.manifest import load_interface
from mesh.sync import SyncPlan
from mesh.validate import Report


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


def registry_diff_lines(mesh: Mesh, project: str, from_version: str | None, to_version: str | None) -> list[str]:
    """The contract diff between two history versions of a project."""
    from mesh.contracts import diff_versions, plural

    old, new, changes = diff_versions(mesh, project, from_version, to_version)
    breaking = sum(c.breaking for c in changes)
    lines = [f"{project}/{mesh.env} {old} -> {new}: {plural(len(changes), 'change')}, {breaking} breaking"]
    lines += [f"  {change.line()}" for change in changes]
    if not changes:
        lines.append("  the interfaces are identical")
    return lines


def consumers_lines(mesh: Mesh, project: str) -> list[str]:
    """Who uses each public model (and version) of `project`, as recorded by consumers' validation,
    and which public columns of consumers that publish derive from it (their column lineage)."""
    from mesh.contracts import plural, short_id
    from mesh.usage import ALL_COLUMNS, read_usage

    registry, env = mesh.registry, mesh.env
    entry = registry.read_latest(project, env)
    nodes = {} if entry is None else load_interface(entry.body, f"{project}/{env} latest", project)["nodes"]
    usage = read_usage(mesh)
    uses = [u for u in usage.uses if u.upstream == project]
    by_node: dict[str, list[str]] = {}
    for use in uses:
        columns = "all columns (*)" if ALL_COLUMNS in use.columns else (", ".join(use.columns) or "(no column)")
        by_node.setdefault(use.upstream_node, []).append(
            f"    {use.consumer:16} {short_id(use.node):28} {use.via:6} "
            f"{'pinned' if use.pinned else 'unpinned':8}  {columns}"
        )
    consumers = sorted({u.consumer for u in uses})
    lines = [
        f"consumers of {project}/{env} (latest {entry.version if entry else '-'}): "
        f"{plural(len(consumers), 'project')} ({', '.join(consumers) or 'none on record'})"
    ]
    for uid in sorted(set(nodes) | set(by_node)):
        node = nodes.get(uid)
        notes = []
        if node is None:
            notes.append("not in latest")
        else:
            if node.get("version") is not None and str(node.get("version")) == str(node.get("latest_version")):
                notes.append("latest version")
            if node.get("deprecation_date"):
                notes.append(f"deprecated {node['deprecation_date']}")
        shown = short_id(uid) + (f"  ({', '.join(notes)})" if notes else "")
        if uid in by_node:
            lines.append(f"  {shown}: {plural(len(by_node[uid]), 'consumer model')}")
            lines += by_node[uid]
        else:
            lines.append(f"  {shown}: no registered consumer")
    feeds = [f for f in usage.lineage if f.upstream == project]
    if feeds:
        lines.append(
            f"  derived downstream: {plural(len(feeds), 'public column')} of consumers that publish "
            f"derive from {project}'s columns (column lineage):"
        )
        for feed in sorted(feeds, key=lambda f: (f.project, f.node, f.column, f.upstream_node)):
            sources = "all columns (*)" if feed.all_columns else ", ".join(feed.columns)
            target = f"{feed.project}.{short_id(feed.node)}.{feed.column}"
            lines.append(f"    {target:44} <- {short_id(feed.upstream_node)}: {sources}")
    return lines
