"""Fingerprints of a project's build inputs: skip a build whose inputs did not change.

A passing build records, in the registry beside the project's private state (object
`fingerprint`, so CI runners share it), a hash of everything the build read, in three parts so a
run can say what changed:
- `files`: the project's files dbt reads (models, macros, seeds, snapshots, tests, analyses, YAML,
  the package spec and lock, local packages); never the folders the mesh itself writes (lineage,
  logs, the warehouse, a registry folder), which sit inside the project in a repository per team;
- `generated`: the files sync generated (a new upstream interface version changes them);
- `context`: the profile's output for the target and the values of the environment variables it
  reads, the dbt, adapter and dbt-loom versions, the build options, the target, its env and whether
  write-audit-publish is on.
It also records the relations the build wrote, the upstreams it read, and the **data version** of
each upstream public node whose data the project stores or republishes (`data_inputs`: what its
tables, incremental models, snapshots and public nodes read, through its own views).

`invoke mesh` skips a project whose fingerprint matches its last passing build, whose upstream data
versions are the ones it was built from, and whose relations still exist in the warehouse; it says
why it builds otherwise (`changed`, `upstream interface changed`, `upstream data changed: …`,
`relations missing …`). A producer whose files changed rebuilds; when its public data did not
change (a comment, a private model whose change does not reach it) its data versions stay, and its
consumers are skipped. A record that cannot be read, or that names no relation, means build.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from mesh.consumer.freshness import read_freshness
from mesh.core.errors import MeshError
from mesh.interface.usage import _upstream_target, source_mesh_meta
from mesh.project.artifacts import Json, load_manifest, public_node_ids
from mesh.project.config import Mesh, Project, read_yaml
from mesh.project.files import GENERATED_PREFIX
from mesh.registry.document import dump_json
from mesh.registry.records import FINGERPRINT_FORMAT, fingerprint_record
from mesh.warehouse.readers import key, open_reader
from mesh.warehouse.wap import profile_output

FORMAT = FINGERPRINT_FORMAT
# dbt's own output and install folders, at the top of a project (a model folder may be called `logs`).
_SKIPPED_TOP = {"target", "logs", "dbt_packages", "dbt_modules", "node_modules"}
_SKIPPED_ANYWHERE = {".git", "__pycache__"}
# Written into the project by `dbt deps` when a build installs packages: a fresh checkout (another
# CI runner planning the next run) has none unless the team commits it. packages.yml is hashed.
_WRITTEN_BY_DBT = {"package-lock.yml"}
_VERSIONED = ("dbt-core", "dbt-duckdb", "dbt-snowflake", "dbt-loom", "dbt-mesh-core")
_ENV_VAR_RE = re.compile(r"""env_var\(\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]""")
# What reads live data instead of storing it: a consumer's view over an upstream table is never stale.
PASS_THROUGH = frozenset({"view", "ephemeral"})


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def _outputs(mesh: Mesh) -> set[Path]:
    """Folders the mesh itself writes; in a repository per team they sit inside the project."""
    found = {mesh.root / "lineage", mesh.root / "logs", mesh.warehouse_dir}
    root = getattr(mesh.registry, "root", None)
    if isinstance(root, Path):
        found.add(root)
    return {p.resolve() for p in found}


def _project_files(project: Project, skip: set[Path] | None = None) -> tuple[list[Path], list[Path]]:
    """(the project's own files dbt reads, the files sync generated) in a stable order."""

    files: list[Path] = []
    generated: list[Path] = []
    skip = skip or set()
    for folder, dirs, names in os.walk(project.dir):
        here = Path(folder)
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in _SKIPPED_ANYWHERE
            and not (here == project.dir and d in _SKIPPED_TOP)
            and (not d.startswith(".") or d == ".mesh")
            and (here / d).resolve() not in skip
        )
        if here.name == ".mesh":  # what sync generated for dbt-loom is an input; state is not
            dirs[:] = [d for d in dirs if d == "upstreams"]
            names = [n for n in names if n == "lock.json"]
        for name in sorted(names):
            if name.startswith(".") or name.endswith((".duckdb", ".duckdb.wal", ".log")):
                continue
            if here == project.dir and name in _WRITTEN_BY_DBT:
                continue
            path = here / name
            made_by_sync = ".mesh" in path.relative_to(project.dir).parts or name.startswith(GENERATED_PREFIX)
            (generated if made_by_sync else files).append(path)
    return files, generated


def _local_packages(project: Project) -> list[Path]:
    found = []
    for name in ("packages.yml", "dependencies.yml"):
        path = project.dir / name
        data = read_yaml(path, name) if path.is_file() else None
        for item in (data or {}).get("packages") or [] if isinstance(data, dict) else []:
            if isinstance(item, dict) and isinstance(item.get("local"), str):
                found.append((project.dir / item["local"]).resolve())
    return found


def _hash_tree(digest: Any, root: Path, files: list[Path]) -> None:
    for path in files:
        try:
            body = path.read_bytes()
        except OSError:
            continue
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(body).digest())


@dataclass(frozen=True)
class Fingerprint:
    """The hash of a build's inputs, its parts (to say what changed), and how many files it covers."""

    value: str
    files: int
    components: dict[str, str] = field(default_factory=dict)  # files | generated | context -> hash
    plan_context: str = ""  # what `invoke plan` compares besides the files (see plan_context)


def project_files_digests(mesh: Mesh, name: str) -> tuple[str, str, int]:
    """(hash of the project's own files and local packages, hash of what sync generated, how many
    files): no profile, environment or warehouse is read."""
    project = mesh.project(name)
    own, generated = _project_files(project, _outputs(mesh))
    files_digest = hashlib.sha256()
    _hash_tree(files_digest, project.dir, own)
    count = len(own) + len(generated)
    for package in _local_packages(project):
        if package.is_dir():
            inner = [p for p in sorted(package.rglob("*")) if p.is_file() and "target" not in p.parts]
            files_digest.update(b"local package\0")
            _hash_tree(files_digest, package, inner)
            count += len(inner)
    generated_digest = hashlib.sha256()
    _hash_tree(generated_digest, project.dir, generated)
    return files_digest.hexdigest(), generated_digest.hexdigest(), count


def compute(mesh: Mesh, name: str, options: dict[str, Any]) -> Fingerprint:
    """Fingerprint of `name`'s next build on the mesh's target with these build `options`."""

    files, generated, count = project_files_digests(mesh, name)
    out = profile_output(mesh, name)
    profile_text = orjson.dumps(out.output, option=orjson.OPT_SORT_KEYS, default=str)
    env_values = {var: os.environ.get(var) for var in sorted(set(_ENV_VAR_RE.findall(profile_text.decode())))}
    if out.type == "duckdb":
        # Where the project's file lives, relative to the mesh when inside it: a checkout in
        # another folder (another CI runner, a moved clone) keeps its fingerprints.
        warehouse = mesh.warehouse_dir
        inside = warehouse.is_relative_to(mesh.root)
        env_values["MESH_WAREHOUSE_DIR"] = str(warehouse.relative_to(mesh.root) if inside else warehouse)
    context = {
        "target": mesh.target_name,
        "dbt_target": mesh.dbt_target,
        "env": mesh.env,
        "wap": mesh.target.wap,
        "profile": profile_text.decode(),
        # Only hashes of the values: the record must not carry credentials.
        "profile_env": {k: hashlib.sha256(str(v).encode()).hexdigest() for k, v in env_values.items()},
        "versions": {package: _version(package) for package in _VERSIONED},
        "options": options,
    }
    audits = mesh.config.projects[name].audits
    if audits:  # a new or changed audit runs on the next build (absent: records stay comparable)
        context["audits"] = [audit.model_dump() for audit in audits]
    components = {
        "files": files,
        "generated": generated,
        "context": hashlib.sha256(orjson.dumps(context, option=orjson.OPT_SORT_KEYS)).hexdigest(),
    }
    value = hashlib.sha256(orjson.dumps({"format": FORMAT, **components}, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return Fingerprint(value, count, components, plan_context(mesh, name))


def plan_context(mesh: Mesh, name: str) -> str:
    """The part of a build's context any checkout sees alike, without credentials or a sync: the
    target, the profile output as written (templates unrendered, no attachments from the lock), the
    tool versions and the project's audits. `invoke plan` compares it with the record's."""
    out = profile_output(mesh, name, effective=False)
    context = {
        "target": mesh.target_name,
        "dbt_target": mesh.dbt_target,
        "env": mesh.env,
        "wap": mesh.target.wap,
        "profile": orjson.dumps(out.output, option=orjson.OPT_SORT_KEYS, default=str).decode(),
        "versions": {package: _version(package) for package in _VERSIONED},
        "audits": [audit.model_dump() for audit in mesh.config.projects[name].audits],
    }
    return hashlib.sha256(orjson.dumps(context, option=orjson.OPT_SORT_KEYS)).hexdigest()


def record(
    mesh: Mesh,
    name: str,
    fingerprint: Fingerprint,
    relations: list[str],
    upstream_data: dict[str, str | None] | None = None,
    source_data: dict[str, str | None] | None = None,
) -> None:
    """Store the fingerprint of a passing build, with the relations it wrote, the upstreams it
    read, the data versions of the upstream nodes its stored data was built from, and the version
    of each of its own sources' data (loaded outside dbt) when it built."""
    project = mesh.project(name)
    doc = {
        "format": FORMAT,
        "project": name,
        "env": mesh.env,
        "target": mesh.target_name,
        "fingerprint": fingerprint.value,
        "components": fingerprint.components,
        "plan_context": fingerprint.plan_context,
        "files": fingerprint.files,
        "recorded_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "relations": sorted(relations),
        "upstreams": sorted(project.upstreams),
        "upstream_data": dict(sorted((upstream_data or {}).items())),
        # The registry version of each upstream's interface it was synced to (.mesh/lock.json):
        # what `invoke plan` compares with the registry's latest, from a checkout without the lock.
        "upstream_versions": synced_versions(project),
        "source_data": dict(sorted((source_data or {}).items())),
    }
    mesh.registry.write_private(name, mesh.env, "fingerprint", dump_json(doc))


def synced_versions(project: Project) -> dict[str, str]:
    """{upstream: registry version} the project's last sync wrote to `.mesh/lock.json`."""
    try:
        lock = orjson.loads((project.mesh_dir / "lock.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    found: dict[str, str] = {}
    upstreams = lock.get("upstreams") if isinstance(lock, dict) else None
    for upstream, entry in (upstreams or {}).items() if isinstance(upstreams, dict) else ():
        version = entry.get("version") if isinstance(entry, dict) else None
        if upstream in project.upstreams and isinstance(version, str):
            found[str(upstream)] = version
    return dict(sorted(found.items()))


def recorded(mesh: Mesh, name: str) -> Json | None:
    """The fingerprint record of the project's last passing build, or None (unreadable: None)."""
    return fingerprint_record(mesh.registry, mesh.env, name)


def built_relations(manifest: Json, project: str) -> list[str]:
    """The relations a build of `project` wrote (its own models, seeds and snapshots)."""
    relations = []
    for node in manifest.get("nodes", {}).values():
        if node.get("package_name") != project:
            continue
        if node.get("resource_type") not in ("model", "seed", "snapshot"):
            continue
        config = node.get("config") or {}
        if config.get("materialized") == "ephemeral" or config.get("enabled") is False:
            continue
        parts = [node.get("database"), node.get("schema"), node.get("alias") or node.get("name")]
        if all(isinstance(p, str) and p for p in parts):
            relations.append(".".join(parts))
    return relations


# --- data read from upstreams ----------------------------------------------------------------------


def data_inputs(manifest: Json, project: str, upstreams: list[str]) -> list[str]:
    """The upstream public nodes whose data this project stores or republishes: those its
    persisted nodes (tables, incremental models, snapshots) and its public nodes read, directly or
    through its own views and ephemeral models. A view alone reads live data: never stale."""

    nodes: Json = manifest.get("nodes") or {}
    public = set(public_node_ids(manifest))
    memo: dict[str, set[str]] = {}

    def reads(uid: str) -> set[str]:
        if uid in memo:
            return memo[uid]
        memo[uid] = set()
        found: set[str] = set()
        for parent in ((nodes.get(uid) or {}).get("depends_on") or {}).get("nodes") or []:
            target = _upstream_target(parent, manifest, project, upstreams)
            if target is not None:
                found.add(target[1])
                continue
            node = nodes.get(parent) or {}
            if node.get("package_name") == project and _materialized(node) in PASS_THROUGH:
                found |= reads(parent)
        memo[uid] = found
        return found

    wanted: set[str] = set()
    for uid, node in nodes.items():
        if node.get("package_name") != project or node.get("resource_type") not in ("model", "snapshot"):
            continue
        if _materialized(node) not in PASS_THROUGH or uid in public:
            wanted |= reads(uid)
    return sorted(wanted)


def _materialized(node: Json) -> str:
    return str((node.get("config") or {}).get("materialized") or "")


def upstream_data_versions(mesh: Mesh, name: str) -> dict[str, str | None]:
    """The current data version of every public node of `name`'s upstreams (their producers'
    freshness records); a node without one maps to None (unknown: a build follows)."""

    versions: dict[str, str | None] = {}
    for upstream in mesh.project(name).upstreams:
        try:
            doc = read_freshness(mesh, upstream)
        except MeshError:
            doc = None  # unreadable: unknown data, the consumer builds
        for uid, node in ((doc or {}).get("nodes") or {}).items():
            value = node.get("data_version") if isinstance(node, dict) else None
            versions[str(uid)] = value if isinstance(value, str) and value else None
    return versions


# --- the decision ----------------------------------------------------------------------------------

_COMPONENT_REASONS = (
    ("files", "changed"),
    ("generated", "upstream interface changed"),
    ("context", "profile, versions or options changed"),
)


@dataclass(frozen=True)
class Decision:
    """Whether a project must build, and why (or since when it is unchanged)."""

    build: bool
    reason: str = ""
    since: str = ""


def decide(
    mesh: Mesh, name: str, fingerprint: Fingerprint, current_data: dict[str, str | None]
) -> Decision:
    """Skip `name` only when its last passing build had these very inputs, read the same upstream
    data, and wrote relations that are all still there; otherwise build, saying why."""
    doc = recorded(mesh, name)
    if doc is None or doc.get("target") != mesh.target_name:
        return Decision(True, "no passing build on record")
    if doc.get("fingerprint") != fingerprint.value:
        components = doc.get("components") or {}
        for key_name, why in _COMPONENT_REASONS:
            if components.get(key_name) != fingerprint.components.get(key_name):
                return Decision(True, why)
        return Decision(True, "changed")
    data = doc.get("upstream_data") or {}
    moved = sorted(
        uid for uid, version in data.items() if version is None or current_data.get(uid) != version
    )
    if moved:
        shown = ", ".join(_node_label(uid) for uid in moved[:3]) + (f" (and {len(moved) - 3} more)" if len(moved) > 3 else "")
        return Decision(True, f"upstream data changed: {shown}")
    relations = [str(r) for r in doc.get("relations") or []]
    if not relations or not _names_what_it_builds(mesh, name, relations):
        return Decision(True, "relations missing from the warehouse")
    sources = {str(k): v for k, v in (doc.get("source_data") or {}).items()}
    checked = _check_warehouse(mesh, name, relations, list(sources))
    if checked is None or not checked[0]:
        return Decision(True, "relations missing from the warehouse")
    now = checked[1]
    moved = sorted(k for k, v in sources.items() if v is None or now.get(k) != v)
    if moved:
        shown = ", ".join(".".join(k.split(".")[1:]) for k in moved[:3]) + (f" (and {len(moved) - 3} more)" if len(moved) > 3 else "")
        return Decision(True, f"source data changed: {shown}")
    return Decision(False, since=str(doc.get("recorded_at") or ""))


def _names_what_it_builds(mesh: Mesh, name: str, relations: list[str]) -> bool:
    """Whether the record names every relation the project's last build materializes: a record
    that names fewer (forged, or from another build) would let a dropped table go unnoticed."""

    path = mesh.project(name).target_dir / "manifest.json"
    if not path.is_file():
        return True  # nothing to hold it to here (a fresh CI runner): the relations check decides
    try:
        built = built_relations(load_manifest(path, project=name), name)
    except MeshError:
        return False
    recorded = {r.lower() for r in relations}
    return all(r.lower() in recorded for r in built)


def source_relations(manifest: Json, project: str) -> list[tuple[str, str, str]]:
    """The relations of the project's own sources whose data dbt does not write: not its seeds
    (their files are fingerprinted), not the sources sync generates or adopts for upstreams (their
    data versions are)."""

    seeds = {
        tuple(str(n.get(k) or "").lower() for k in ("database", "schema", "alias"))
        for n in (manifest.get("nodes") or {}).values()
        if n.get("resource_type") == "seed" and n.get("package_name") == project
    }
    found = []
    for source in (manifest.get("sources") or {}).values():
        if source.get("package_name") != project or source_mesh_meta(source):
            continue
        parts = (source.get("database"), source.get("schema"), source.get("identifier") or source.get("name"))
        if not all(isinstance(p, str) and p for p in parts):
            continue
        relation = (str(parts[0]), str(parts[1]), str(parts[2]))
        if tuple(p.lower() for p in relation) not in seeds:
            found.append(relation)
    return sorted(set(found))


def source_versions(mesh: Mesh, name: str, relations: list[tuple[str, str, str]]) -> dict[str, str | None]:
    """The current version of each source relation's data (mesh/warehouse/readers.py)."""

    if not relations:
        return {}
    try:
        with open_reader(mesh, name) as reader:
            if reader is None:
                return {key(r): None for r in relations}
            return reader.source_versions(relations)
    except MeshError:
        return {key(r): None for r in relations}


def _check_warehouse(
    mesh: Mesh, name: str, relations: list[str], sources: list[str]
) -> tuple[bool, dict[str, str | None]] | None:
    """(whether every relation exists, the current versions of these sources) on one connection;
    None when the warehouse cannot be read (the project builds)."""

    if profile_output(mesh, name).type not in ("duckdb", "snowflake"):
        return True, {}
    databases = {relation.split(".", 1)[0] for relation in relations}
    try:
        with open_reader(mesh, name) as reader:
            if reader is None:
                return None
            present = reader.relations(databases)
            exist = all(relation.lower() in present for relation in relations)
            parts = [tuple(k.split(".")) for k in sources if len(k.split(".")) == 3]
            versions = reader.source_versions(parts) if exist and parts else {}  # type: ignore[arg-type]
    except MeshError:
        return None
    return exist, versions


def _node_label(uid: str) -> str:
    """`model.dbt_up.public_orders.v2` -> `dbt_up.public_orders.v2`."""
    parts = uid.split(".")
    return ".".join(parts[1:]) if len(parts) >= 3 else uid


def relations_exist(mesh: Mesh, name: str, relations: list[str]) -> bool:
    """Whether every relation still exists (DuckDB: read the project's file; Snowflake: ask each
    database's information schema as the project's role; other adapters: the fingerprint is
    trusted, see README). Anything that cannot be checked counts as missing: the project builds."""

    if profile_output(mesh, name).type not in ("duckdb", "snowflake"):
        return True
    databases = {relation.split(".", 1)[0] for relation in relations}
    try:
        with open_reader(mesh, name) as reader:
            if reader is None:
                return False
            present = reader.relations(databases)
    except MeshError:
        return False
    return all(relation.lower() in present for relation in relations)
