"""Write-audit-publish a project's interface to the registry.

Audit first (the build and its tests passed, the manifest is a dbt manifest of this project with
public nodes, every public node has an enforced contract where mesh.yml requires contracts, the
interface fits the registry's schema (mesh.registry.schema: identifiers, versions, names, data types,
relation names, sizes), on Snowflake every public relation is one the consumers may be granted, it
is not older than what `latest` holds), then write the history entry, then move `latest` by
compare-and-swap. Any refusal happens before the first write, so the registry is left
byte-for-byte unchanged.

Public nodes without an enforced contract (seeds, snapshots, uncontracted models) publish the
columns the warehouse holds: `ensure_catalog` runs `dbt docs generate` for exactly those nodes into
`target/mesh_catalog/`, so the build's own artifacts (which the audit ties together by invocation
id) stay as they are.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mesh.config import Mesh, Project
from mesh.errors import ManifestError, PublishRefusedError, RegistryError
from mesh.failpoints import failpoint
from mesh.manifest import (
    INTERFACE_FORMAT,
    Json,
    build_interface,
    check_run_results,
    check_schema,
    content_sha256,
    dump_interface,
    dump_json,
    extract_interface,
    load_interface,
    load_json,
    load_manifest,
    paused_gc,
    public_node_ids,
    read_interface,
    resource_label,
    uncontracted_ids,
)
from mesh.names import new_version
from mesh.registry import Entry, Registry, commit_version
from mesh.registry.schema import InterfaceCheck, check_state

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


CATALOG_DIR = "mesh_catalog"
CATALOG_SCHEMAS = {f"https://schemas.getdbt.com/dbt/catalog/v{n}.json": n for n in (1,)}
_CATALOG_STAMP = "mesh_catalog_of.json"


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


def check_catalog(catalog: Json, project_name: str, what: str) -> Json:
    """A dbt catalog.json of an allow-listed schema that dbt wrote without errors."""
    check_schema(catalog, CATALOG_SCHEMAS, what)
    if not isinstance(catalog.get("nodes"), dict):
        raise ManifestError(f"{what} has no `nodes` object")
    errors = catalog.get("errors")
    if errors:
        first = " ".join(str(errors[0] if isinstance(errors, list) else errors).split())[:300]
        raise PublishRefusedError(
            f"dbt docs generate could not read all of {project_name}'s relations ({first}): "
            "fix the warehouse connection, then publish again"
        )
    return catalog


def _catalog_selector(node: Json) -> str:
    fqn = node.get("fqn")
    if isinstance(fqn, list) and fqn and all(isinstance(part, str) for part in fqn):
        return "fqn:" + ".".join(fqn)
    version = node.get("version")
    return f"{node['name']}.v{version}" if version not in (None, "") else str(node["name"])


def ensure_catalog(mesh: Mesh, project_name: str, manifest: Json, ids: list[str] | None = None) -> Json | None:
    """The producer's catalog for its public nodes without an enforced contract; None when every
    public node has one (nothing to run).

    Runs `dbt docs generate --select <those nodes>` into `target/mesh_catalog/`, never into the
    build's target folder: the build's manifest.json and run_results.json stay untouched. A catalog
    already generated there for this very manifest (same invocation id) and selection is reused.
    """
    ids = public_node_ids(manifest) if ids is None else ids
    needed = uncontracted_ids(manifest, ids)
    if not needed:
        return None
    project = mesh.project(project_name)
    folder = project.target_dir / CATALOG_DIR
    selectors = sorted({_catalog_selector(manifest["nodes"][uid]) for uid in needed})
    stamp = {
        "manifest_invocation_id": manifest["metadata"].get("invocation_id"),
        "manifest_generated_at": manifest["metadata"].get("generated_at"),
        "select": selectors,
    }
    stamp_path, catalog_path = folder / _CATALOG_STAMP, folder / "catalog.json"
    try:
        reusable = stamp_path.read_bytes() == dump_json(stamp) and catalog_path.is_file()
    except OSError:
        reusable = False
    if not reusable:
        from mesh.dbt import run_dbt

        folder.mkdir(parents=True, exist_ok=True)
        stamp_path.unlink(missing_ok=True)
        catalog_path.unlink(missing_ok=True)  # never read an earlier run's catalog as this one's
        saved = project.target_dir / "partial_parse.msgpack"
        if saved.is_file():  # start from the build's parse: a partial parse, not a full one
            shutil.copyfile(saved, folder / "partial_parse.msgpack")
        run_dbt(mesh, project_name, ["docs", "generate", "--select", *selectors, "--target-path", str(folder)])
    catalog = check_catalog(load_json(catalog_path, "catalog.json"), project_name, f"catalog {catalog_path}")
    if not reusable:
        stamp_path.write_bytes(dump_json(stamp))
    return catalog


def prepare(mesh: Mesh, project_name: str, catalog: Json | None = None) -> tuple[Json, Json, Json, str]:
    """Audit the project's last build; return (manifest, nodes, groups, content sha).

    `catalog`: the producer's catalog.json for this build when the caller has it; otherwise
    `ensure_catalog` generates it if a public node lacks an enforced contract."""
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
    elif uncontracted_ids(manifest, ids):
        catalog = check_catalog(catalog, project_name, f"the catalog given for {project_name}")
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
                f"the warehouse has no relation for public {resource_label(unseen[0])} {unseen[0]} "
                "(dbt docs generate did not find it): run `invoke build` again, then publish"
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
    hint = publish_hint(project_name)
    # The producer's own manifest is checked like any registry object, before anything reads it.
    own = InterfaceCheck(project_name, env, what=f"{project_name}/{env} (to publish)", hint=hint)
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

    latest = registry.read_latest(project_name, env)
    latest_doc = current_doc(latest)
    if latest is not None and latest_doc is not None:
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
    document = build_interface(manifest, nodes, groups, mesh_meta)
    InterfaceCheck(project_name, env, version, hint=hint).head(document)
    body = dump_interface(document)
    superseded_by: list[str] = []

    def should_replace(current: Entry | None) -> bool:
        # Re-run the audit against whatever latest holds now: another publisher may have won.
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
        registry, project_name, env, version, body, should_replace, create=resumed is None
    )
    status = "published" if replaced else "superseded"
    previous = superseded_by[-1] if superseded_by else mesh_meta["previous"]
    return PublishResult(project_name, env, status, version, previous, len(nodes), registry.url)


def publish_hint(project: str) -> str:
    """What a refusal at publish says to do next."""
    return f"fix it in {project} and rebuild; nothing was published"


def refuse_ungrantable(mesh: Mesh, project_name: str, manifest: Json, nodes: Json) -> None:
    """On Snowflake, refuse a public relation consumers could not be granted: outside the
    producer's database, or outside its public schema(s) where mesh.yml names them
    (`snowflake.projects.<name>.public_schema`)."""
    if manifest["metadata"].get("adapter_type") != "snowflake":
        return
    from mesh.snowflake import grantable_problem, snowflake_settings

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
