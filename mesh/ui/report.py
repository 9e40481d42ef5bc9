"""Text renderings shared by the invoke tasks and the `mesh` console script."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

import orjson

from mesh.consumer.sync import SyncPlan
from mesh.consumer.validate import Report
from mesh.core.names import check_name
from mesh.core.surface import hint
from mesh.core.text import plural
from mesh.project.config import Mesh
from mesh.registry.document import load_interface

Say = Callable[[str], None]


def plan_lines(mesh: Mesh, plan: SyncPlan, dry_run: bool) -> list[str]:
    """A sync plan as sentences, dbt-meshify style."""
    verb = "would change" if dry_run else "changed"
    lines = [f"sync {plan.project}: {plural(len(plan.changes), 'file')} {verb}"]
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


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _missing_folder_warning(mesh: Mesh) -> str | None:
    """A warning when the target's registry is a folder that does not exist (a wrong path lists
    nothing, exactly like an empty registry)."""
    from mesh.registry.file import FileRegistry

    registry = mesh.registry
    if isinstance(registry, FileRegistry) and not registry.root.is_dir():
        return (
            f"warning: registry folder {registry.root} does not exist: nothing was published there "
            f"yet, or the `registry` of target {mesh.target_name} in mesh.yml (or MESH_REGISTRY) "
            "points elsewhere"
        )
    return None


def registry_list_lines(mesh: Mesh, project: str | None, warn: Say = _stderr) -> list[str]:
    """Versions in the registry: every project's latest, or one project's history, newest first.

    A damaged `latest` or history entry is listed and marked, never fatal: this is where one
    picks the version to recover or roll back to. A registry folder that does not exist is
    listed as empty, with a warning through `warn`."""
    from mesh.interface.retention import history
    from mesh.registry import read_latest_or_damage

    registry = mesh.registry
    warning = _missing_folder_warning(mesh)
    if warning:
        warn(warning)
    if project is None:
        published = registry.list_published()
        lines = [f"registry {registry.url}: {plural(len(published), 'published project/env pair')}"]
        for name, env in published:
            latest = read_latest_or_damage(registry, name, env)
            if latest is not None and latest.damaged:
                lines.append(
                    f"  {name}/{env}: latest {latest.version or '(unknown version)'} DAMAGED: run "
                    f"{hint('registry.fsck', '--project', name, '--repair')}"
                )
            else:
                lines.append(f"  {name}/{env}: latest {latest.version if latest else '-'}")
        return lines
    env = mesh.env
    check_name("project", project)
    latest = read_latest_or_damage(registry, project, env)
    infos = history(registry, project, env)
    head = f"{project}/{env} in {registry.url}: {plural(len(infos), 'version')}"
    if latest is None:
        head += ", none of them latest" if infos else ": nothing published"
    elif latest.damaged:
        head += (
            f", newest first; latest {latest.version or '(unknown version)'} is DAMAGED: run "
            f"{hint('registry.fsck', '--project', project, '--repair')}, or "
            f"{hint('registry.rollback', '--project', project, '--to', 'VERSION')} with an intact VERSION below"
        )
    else:
        head += f", newest first; latest {latest.version}"
    lines = [head]
    for info in infos:
        is_latest = latest is not None and latest.version == info.version
        marks = [m for m, on in (("latest", is_latest), ("DAMAGED", not info.intact)) if on]
        copy_damaged = is_latest and latest is not None and bool(latest.damaged) and info.intact
        if copy_damaged:
            marks.append("DAMAGED")  # S3 keeps latest as a copy: the copy is, this entry is not
        mark = " ".join(marks)
        if not info.intact:
            lines.append(f"  {info.version}  {mark:14}  {info.damage}")
            continue
        count = plural(info.public_models or 0, "public node")
        detail = f"published {info.published_at} by {info.publisher}, {count}"
        if info.rollback_of:
            detail += f"; rollback to {info.rollback_of}"
        if info.recovered_from:
            detail += f", recovered from the damaged {info.recovered_from}"
        if copy_damaged:
            detail += "; only the copy in latest/ is damaged, this entry is intact"
        lines.append(f"  {info.version}  {mark:14}  {detail}")
    from mesh.interface.proposals import open_proposals, read_acknowledgements

    for proposal in open_proposals(mesh, project) if latest is not None and not latest.damaged else []:
        answered = [
            c for c in proposal.consumers if proposal.id in read_acknowledgements(mesh, c)
        ]
        deadline = f", deadline {_printable(proposal.deadline)}" if proposal.deadline else ""
        lines.append(
            f"  open proposal {proposal.id}{deadline}: {_printable(proposal.reason)}; acknowledged by "
            f"{len(answered)} of {len(proposal.consumers)} ({', '.join(answered) or 'none yet'})"
        )
    return lines


def _public_nodes(nodes: dict[str, object]) -> str:
    """`5 public nodes (4 models, 1 seed)`: what an interface publishes, by resource type."""
    from collections import Counter

    kinds = Counter(uid.split(".", 1)[0] for uid in nodes)
    parts = ", ".join(plural(n, kind) for kind, n in sorted(kinds.items(), key=lambda item: (-item[1], item[0])))
    return f"{plural(len(nodes), 'public node')}" + (f" ({parts})" if parts else "")


def _printable(value: object) -> str:
    """Registry text for a terminal: control characters (escape sequences included) blanked."""
    return re.sub(r"[\x00-\x1f\x7f]", " ", str(value))[:200]


def registry_show_lines(mesh: Mesh, project: str, version: str | None) -> list[str]:
    """One interface's metadata and public models."""
    registry, env = mesh.registry, mesh.env
    entry = registry.read_version(project, env, version) if version else registry.read_latest(project, env)
    if entry is None:
        from mesh.core.errors import NotFoundError

        raise NotFoundError(f"{project}/{env} has no latest in {registry.url}: publish it first")
    doc = load_interface(entry.body, f"{project}/{env}", project, env, entry.version)
    meta = doc["metadata"]["mesh"]
    lines = [f"{project}/{env} {entry.version}"]
    keys = (
        "published_at", "built_at", "content_sha256", "dbt_version", "git_sha", "publisher",
        "previous", "rollback_of", "recovered_from", "reason",
    )
    for key in keys:
        if meta.get(key) is not None:
            lines.append(f"  {key:15} {meta[key]}")
    audits = meta.get("audits")
    for item in audits if isinstance(audits, list) else []:
        if isinstance(item, dict):  # registry content: shown as text, never run
            said = f": {_printable(item.get('last_line'))}" if item.get("last_line") else ""
            verdict = "passed" if item.get("passed") is True else "FAILED"
            lines.append(f"  {'audit':15} {_printable(item.get('name'))} {verdict} {_printable(item.get('seconds'))}s{said}")
    lines.append(f"  {_public_nodes(doc['nodes'])}:")
    for uid, node in sorted(doc["nodes"].items()):
        cols = plural(len(node.get("columns") or {}), "column")
        dep = f", deprecated {node['deprecation_date']}" if node.get("deprecation_date") else ""
        lines.append(f"    {uid:45} {node.get('relation_name')}  ({cols}{dep})")
    return lines


def registry_diff_lines(mesh: Mesh, project: str, from_version: str | None, to_version: str | None) -> list[str]:
    """The contract diff between two history versions of a project."""
    from mesh.interface.versions import diff_versions

    old, new, changes = diff_versions(mesh, project, from_version, to_version)
    skipped = [
        v for v in mesh.registry.list_versions(project, mesh.env)
        if from_version is None and (old or "") < v < new
    ]
    note = [f"  note: skipped damaged {', '.join(skipped)} (see {hint('registry.fsck', '--project', project)})"] if skipped else []
    if old is None:
        lines = [
            f"{project}/{mesh.env} {new}: the first version, there is no earlier version to compare "
            f"with; {plural(len(changes), 'public node')} added"
        ]
        return lines + note + [f"  {change.line()}" for change in changes]
    breaking = sum(c.breaking for c in changes)
    lines = [f"{project}/{mesh.env} {old} -> {new}: {plural(len(changes), 'change')}, {breaking} breaking"]
    lines += note
    lines += [f"  {change.line()}" for change in changes]
    if not changes:
        lines.append("  the interfaces are identical")
    return lines


def consumers_lines(mesh: Mesh, project: str) -> list[str]:
    """Who uses each public model (and version) of `project`, as recorded by consumers' validation,
    and which public columns of consumers that publish derive from it (their column lineage)."""
    from mesh.core.text import plural
    from mesh.interface.contracts import short_id
    from mesh.interface.usage import ALL_COLUMNS, read_usage

    registry, env = mesh.registry, mesh.env
    entry = registry.read_latest(project, env)
    nodes = {} if entry is None else load_interface(entry.body, f"{project}/{env} latest", project, env, entry.version)["nodes"]
    usage = read_usage(mesh)
    uses = [u for u in usage.uses if u.upstream == project]
    by_node: dict[str, list[str]] = {}
    # Columns as wide as their longest entry: long project and model names stay aligned.
    width_project = max((len(u.consumer) for u in uses), default=8)
    width_model = max((len(short_id(u.node)) for u in uses), default=8)
    for use in uses:
        columns = "all columns (*)" if ALL_COLUMNS in use.columns else (", ".join(use.columns) or "(no column)")
        by_node.setdefault(use.upstream_node, []).append(
            f"    {use.consumer:{width_project}}  {short_id(use.node):{width_model}}  {use.via:6} "
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
