"""Write-audit-publish a project's interface to the registry.

Audit first (the build and its tests passed, the manifest is a dbt manifest of this project with
public nodes, every public node has an enforced contract where mesh.yml requires contracts, the
interface fits the registry's schema (mesh.registry.schema: identifiers, versions, names, data types,
relation names, sizes), on Snowflake every public relation is one the consumers may be granted, it
is not older than what `latest` holds), then write the history entry, then move `latest` by
compare-and-swap. Any refusal happens before the first write, so the registry is left
byte-for-byte unchanged.

Public nodes without an enforced contract (seeds, snapshots, uncontracted models) publish the
columns the warehouse holds: `ensure_catalog` reads them from the project's warehouse on a
connection of the mesh's own (mesh/warehouse/readers.py), never through another dbt invocation.

A damaged `latest` does not stop a producer: its passing build publishes over it, judged against
the newest intact version, and the history entry records `replaces_damaged`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mesh.core.errors import ManifestError, PublishRefusedError, RegistryError
from mesh.core.failpoints import failpoint
from mesh.core.names import new_version, sha256_hex
from mesh.core.surface import hint
from mesh.interface.notify import notify
from mesh.project.artifacts import (
    Json,
    build_interface,
    check_run_results,
    extract_interface,
    load_manifest,
    public_node_ids,
    resource_label,
    uncontracted_ids,
)
from mesh.project.config import Mesh, Project
from mesh.registry import Entry, Registry, commit_version, read_baseline, read_latest_or_damage
from mesh.registry.document import (
    INTERFACE_FORMAT,
    content_sha256,
    dump_interface,
    load_interface,
    paused_gc,
    read_interface,
)
from mesh.registry.record_schema import check_state
from mesh.registry.schema import InterfaceCheck
from mesh.warehouse.readers import catalog_of, open_reader
from mesh.warehouse.snowflake import snowflake_settings
from mesh.warehouse.snowflake_grants import grantable_problem

# A check run against the interface `latest` holds (None on first publish) before it is replaced;
# it raises to refuse. Contract gates plug in here.
LatestCheck = Callable[[Json | None, Json], None]
# Keys of `metadata.mesh` that differ between two attempts to publish the same build.
_PER_ATTEMPT = frozenset({"version", "published_at"})


@dataclass(frozen=True)
class PublishResult:
    """What a publish did."""

    project: str
    env: str
    status: str  # "published", "unchanged" or "superseded" (in history, but latest is newer)
    version: str
    previous: str | None
    public_models: int
    registry: str
    replaced_damaged: str | None = None  # the damaged latest this publish replaced

    def summary(self) -> str:
        where = f"{self.project}/{self.env} in {self.registry}"
        if self.status == "unchanged":
            return f"{where}: interface unchanged since {self.version}; nothing published"
        if self.status == "superseded":
            return (
                f"{where}: wrote history {self.version}, but latest holds a newer build "
                f"({self.previous}); latest left as is"
            )
        return (
            f"{where}: published {self.version} ({self.public_models} public models), "
            f"previous {self.previous or 'none'}"
        )


def _git_sha(project: Project) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=project.dir,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and len(sha) == 40 else None


def _publisher() -> str:
    # Never a user or host name: the interface is read by every consumer (no leaks).
    if os.environ.get("MESH_PUBLISHER"):
        return os.environ["MESH_PUBLISHER"]
    if os.environ.get("GITHUB_REPOSITORY"):
        return f"github:{os.environ['GITHUB_REPOSITORY']}@{os.environ.get('GITHUB_WORKFLOW', '')}"
    return "local"


def _built_at(doc: Json) -> str:
    return str(doc["metadata"].get("generated_at") or "")


def interrupted_publish(
    registry: Registry, project: str, env: str, latest: Entry | None, mesh_meta: Json
) -> Entry | None:
    """The history entry of this very build, on top of this very `latest`, that an interrupted
    publish wrote but never made `latest` (killed between the two writes), or None.

    Rerunning the publish then finishes that commit instead of writing a second entry with the
    same content. Only an entry identical but for its version id and publish time qualifies.
    """
    suffix = f"-{str(mesh_meta['content_sha256'])[:8]}"
    floor = latest.version if latest else ""
    mine = {k: v for k, v in mesh_meta.items() if k not in _PER_ATTEMPT}
    for version in reversed(registry.list_versions(project, env)):
        if version <= floor:
            break
        if not version.endswith(suffix):
            continue
        try:
            entry = registry.read_version(project, env, version)
            doc = load_interface(entry.body, f"{project}/{env} {version}", project)
        except (RegistryError, ManifestError):
            continue  # damaged: fsck reports it; never finish a commit with it
        theirs = {k: v for k, v in doc["metadata"]["mesh"].items() if k not in _PER_ATTEMPT}
        if theirs == mine:
            return entry
    return None


def refuse_uncontracted(mesh: Mesh, project_name: str, manifest: Json, ids: list[str]) -> None:
    """Refuse (PublishRefusedError) a public node without an enforced contract when mesh.yml
    requires contracts for `project_name` (`require_contracts`, mesh-wide or per project)."""
    if not mesh.requires_contracts(project_name):
        return
    missing = uncontracted_ids(manifest, ids)
    if not missing:
        return
    first, kind = missing[0], resource_label(missing[0])
    more = ""
    if len(missing) > 1:
        listed = ", ".join(missing[1:4]) + (", …" if len(missing) > 4 else "")
        more = f" (and {len(missing) - 1} more: {listed})"
    if kind == "model":
        fix = "add `contract: {enforced: true}` and every column's data_type to its YAML"
    else:
        fix = (
            f"dbt enforces contracts on models only, so a {kind} cannot have one: make it "
            "non-public and publish a contracted model that selects from it"
        )
    raise PublishRefusedError(
        f"{project_name}: public {kind} {first} has no enforced contract{more}, and mesh.yml sets "
        f"require_contracts: {fix}, or set `require_contracts: false` for {project_name} in mesh.yml"
    )


def node_relation(node: Json) -> tuple[str, str, str]:
    """(database, schema, identifier) of a model, seed or snapshot as the manifest names it."""
    return (
        str(node.get("database") or ""),
        str(node.get("schema") or ""),
        str(node.get("alias") or node.get("name") or ""),
    )


def data_version(uid: str, digest: str | None, invocation_id: str) -> tuple[str, str]:
    """(data version, basis) of a public node: a hash of its content digest (`content`: it changes
    exactly when the rows do), or, without a digest, of the build that wrote it (`build`: every
    build is new data, so its consumers rebuild)."""

    if digest is not None:
        return sha256_hex(f"{uid}\0{digest}".encode())[:16], "content"
    return sha256_hex(f"{uid}\0build\0{invocation_id}".encode())[:16], "build"


def ensure_catalog(
    mesh: Mesh, project_name: str, manifest: Json, ids: list[str] | None = None, build_dir: str | None = None
) -> Json | None:
    """The columns of the producer's public nodes without an enforced contract, catalog.json-shaped;
    None when every public node has one. Read from the project's warehouse (its audit copy when
    `build_dir` is given) on a connection of the mesh's own."""

    ids = public_node_ids(manifest) if ids is None else ids
    needed = uncontracted_ids(manifest, ids)
    if not needed:
        return None
    relations = {uid: node_relation(manifest["nodes"][uid]) for uid in needed}
    with open_reader(mesh, project_name, build_dir) as reader:
        if reader is None:
            raise PublishRefusedError(
                f"cannot read {project_name}'s warehouse for the columns of its public nodes without "
                f"an enforced contract: build it first ({hint('build', '--project', project_name)}), or "
                "check the connection"
            )
        columns = reader.columns(relations.values())
    return catalog_of(columns, relations)


def prepare(mesh: Mesh, project_name: str, catalog: Json | None = None) -> tuple[Json, Json, Json, str]:
    """Audit the project's last build; return (manifest, nodes, groups, content sha).

    `catalog`: the columns of its public nodes without an enforced contract when the caller read
    them already (`ensure_catalog`'s shape); otherwise they are read from the warehouse."""
    project = mesh.project(project_name)
    manifest = load_manifest(project.target_dir / "manifest.json", project=project_name)
    ids = public_node_ids(manifest)
    if not ids:
        raise PublishRefusedError(
            f"{project_name} has no public model, seed or snapshot to publish: give at least one "
            "model `access: public` (with an enforced contract) and rebuild"
        )
    check_run_results(project.target_dir / "run_results.json", manifest, ids)
    refuse_uncontracted(mesh, project_name, manifest, ids)
    if catalog is None:
        catalog = ensure_catalog(mesh, project_name, manifest, ids)
    if catalog is not None:
        tables = catalog.get("nodes") or {}
        unseen = [
            uid
            for uid in uncontracted_ids(manifest, ids)
            if uid not in tables
            and (manifest["nodes"][uid].get("config") or {}).get("materialized") != "ephemeral"
        ]
        if unseen:
            raise PublishRefusedError(
                f"the warehouse has no relation for public {resource_label(unseen[0])} {unseen[0]}: "
                f"run {hint('build', '--project', 'P')} again, then publish"
            )
    nodes, groups = extract_interface(manifest, ids, catalog=catalog)
    return manifest, nodes, groups, content_sha256(nodes, groups)


@paused_gc()  # the full manifest is millions of objects: see paused_gc
def publish_project(
    mesh: Mesh,
    project_name: str,
    checks: tuple[LatestCheck, ...] = (),
    extra_meta: dict[str, Any] | None = None,
    catalog: Json | None = None,
) -> PublishResult:
    """Publish `project_name`'s interface from its last build to the target's registry
    (`catalog`: its catalog.json for this build, if at hand; see `prepare`)."""
    manifest, nodes, groups, sha = prepare(mesh, project_name, catalog)
    registry, env = mesh.registry, mesh.env
    built_at = _built_at(manifest)
    fix_hint = publish_hint(project_name)
    # The producer's own manifest is checked like any registry object, before anything reads it.
    own = InterfaceCheck(project_name, env, what=f"{project_name}/{env} (to publish)", hint=fix_hint)
    for uid, node in nodes.items():
        nodes[uid] = own.node(uid, node)
    own.finish()
    refuse_ungrantable(mesh, project_name, manifest, nodes)

    parsed: dict[tuple[str, str], Json] = {}

    def current_doc(entry: Entry | None) -> Json | None:
        # Parsed once per object (the audit reads latest again before each swap); without checks
        # only its metadata is used, so its nodes are verified one at a time, not all kept.
        if entry is None:
            return None
        key = (entry.version, entry.token)
        if key not in parsed:
            what = f"{project_name}/{env} latest"
            parsed[key] = (
                load_interface(entry.body, what, project_name)
                if checks
                else read_interface(entry.body, what, project_name, lazy=True).doc
            )
        return parsed[key]

    latest = read_latest_or_damage(registry, project_name, env)
    damaged = latest.version or "unknown version" if latest is not None and latest.damaged else None
    if damaged is not None:
        # Judged against the newest intact version instead; the swap replaces the damaged object.
        baseline, _ = read_baseline(registry, project_name, env)
        latest_doc = current_doc(baseline)
    else:
        latest_doc = current_doc(latest)
    if latest is not None and latest_doc is not None and damaged is None:
        if latest_doc["metadata"]["mesh"].get("content_sha256") == sha:
            return PublishResult(
                project_name, env, "unchanged", latest.version, latest.version, len(nodes),
                registry.url,
            )
        if _built_at(latest_doc) > built_at:
            raise PublishRefusedError(
                f"this build ({built_at}) is older than the one latest holds "
                f"({_built_at(latest_doc)}, {latest.version}): rebuild from a newer commit"
            )
    for check in checks:
        check(latest_doc, nodes)

    now = datetime.now(UTC)
    version = new_version(sha, now)
    mesh_meta: Json = {
        "format": INTERFACE_FORMAT,
        "version": version,
        "content_sha256": sha,
        "published_at": now.isoformat().replace("+00:00", "Z"),
        "built_at": built_at,
        "env": env,
        "dbt_version": manifest["metadata"].get("dbt_version"),
        "git_sha": _git_sha(mesh.project(project_name)),
        "publisher": _publisher(),
        "previous": latest.version if latest else None,
        "public_models": len(nodes),
        **(extra_meta or {}),
    }
    if damaged is not None:
        mesh_meta["replaces_damaged"] = damaged
    document = build_interface(manifest, nodes, groups, mesh_meta)
    InterfaceCheck(project_name, env, version, hint=fix_hint).head(document)
    body = dump_interface(document)
    superseded_by: list[str] = []

    def should_replace(current: Entry | None) -> bool:
        # Re-run the audit against whatever latest holds now: another publisher may have won.
        if current is not None and current.damaged:
            return True  # the damaged object this publish replaces (judged against `baseline`)
        doc = current_doc(current)
        if current is None or doc is None:
            return True
        if (_built_at(doc), current.version) > (built_at, version):
            superseded_by.append(current.version)
            return False
        for check in checks:
            check(doc, nodes)
        return True

    failpoint("publish.audited")
    resumed = interrupted_publish(registry, project_name, env, latest, mesh_meta)
    if resumed is not None:
        version, body = resumed.version, resumed.body
    replaced = commit_version(
        registry, project_name, env, version, body, should_replace, create=resumed is None,
        over_damaged=damaged is not None,
    )
    status = "published" if replaced else "superseded"
    previous = superseded_by[-1] if superseded_by else mesh_meta["previous"]
    if replaced:
        agreed = mesh_meta.get("proposals")
        shipped = f" (shipping {', '.join(sorted(set(agreed.values())))})" if isinstance(agreed, dict) and agreed else ""
        notify(mesh, project_name, f"{project_name} published {version} to {env}{shipped}", event="publish")
    return PublishResult(
        project_name, env, status, version, previous, len(nodes), registry.url,
        damaged if replaced else None,
    )


def publish_hint(project: str) -> str:
    """What a refusal at publish says to do next."""
    return f"fix it in {project} and rebuild; nothing was published"


def refuse_ungrantable(mesh: Mesh, project_name: str, manifest: Json, nodes: Json) -> None:
    """On Snowflake, refuse a public relation consumers could not be granted: outside the
    producer's database, or outside its public schema(s) where mesh.yml names them
    (`snowflake.projects.<name>.public_schema`)."""
    if manifest["metadata"].get("adapter_type") != "snowflake":
        return

    settings = snowflake_settings(mesh.config.snowflake, project_name)
    if settings is None:
        return
    problem = grantable_problem({"nodes": nodes}, *settings)
    if problem:
        raise PublishRefusedError(f"{project_name}/{mesh.env}: {problem}; {publish_hint(project_name)}")


@paused_gc()
def save_state(mesh: Mesh, project_name: str) -> int:
    """Store the project's full manifest as its private state (for its own `--defer`); bytes.
    It is checked as every reader of it will check it (mesh.registry.schema) before it is written."""
    project = mesh.project(project_name)
    path = project.target_dir / "manifest.json"
    manifest = load_manifest(path, project=project_name)
    check_state(manifest, project_name, mesh.env, hint=publish_hint(project_name).replace("published", "stored"))
    body = path.read_bytes()
    mesh.registry.write_private(project_name, mesh.env, "state", body)
    return len(body)
