"""Fingerprints of a project's build inputs: skip a build whose inputs did not change.

A passing build records, in the registry beside the project's private state (object
`fingerprint`, so CI runners share it), a hash of everything the build read:
- the project's files dbt reads (models, macros, seeds, snapshots, tests, analyses, YAML, the
  package spec and lock, local packages), including the files sync generated (so a new upstream
  interface version the project was synced to changes it);
- the profile's output for the target, and the values of the environment variables it reads;
- the dbt, adapter and dbt-loom versions, and the build options (selection, full refresh);
- the target, its env and whether write-audit-publish is on.

`invoke mesh` skips a project whose fingerprint matches its last passing build and whose relations
still exist in the warehouse, and says so. A producer whose files changed rebuilds (its data
changes) but publishes the same interface version, so its consumers' fingerprints do not change.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from mesh.config import Mesh, Project, read_yaml
from mesh.errors import ManifestError, RegistryError
from mesh.manifest import Json, dump_json, parse_json

FORMAT = 1
_SKIPPED_DIRS = {"target", "logs", "dbt_packages", "dbt_modules", "node_modules", ".git", "__pycache__"}
_VERSIONED = ("dbt-core", "dbt-duckdb", "dbt-snowflake", "dbt-loom", "dbt-mesh-core")
_ENV_VAR_RE = re.compile(r"""env_var\(\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]""")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def _project_files(project: Project) -> list[Path]:
    files: list[Path] = []
    for folder, dirs, names in os.walk(project.dir):
        here = Path(folder)
        dirs[:] = sorted(
            d for d in dirs if d not in _SKIPPED_DIRS and (not d.startswith(".") or d == ".mesh")
        )
        if here.name == ".mesh":  # what sync generated for dbt-loom is an input; state is not
            dirs[:] = [d for d in dirs if d == "upstreams"]
            names = [n for n in names if n == "lock.json"]
        for name in sorted(names):
            if not name.startswith(".") and not name.endswith((".duckdb", ".duckdb.wal", ".log")):
                files.append(here / name)
    return files


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
    """The hash of a build's inputs, and what it covers (for the record)."""

    value: str
    files: int


def compute(mesh: Mesh, name: str, options: dict[str, Any]) -> Fingerprint:
    """Fingerprint of `name`'s next build on the mesh's target with these build `options`."""
    from mesh.wap import profile_output

    project = mesh.project(name)
    digest = hashlib.sha256()
    files = _project_files(project)
    _hash_tree(digest, project.dir, files)
    count = len(files)
    for package in _local_packages(project):
        if package.is_dir():
            inner = [p for p in sorted(package.rglob("*")) if p.is_file() and "target" not in p.parts]
            digest.update(b"local package\0")
            _hash_tree(digest, package, inner)
            count += len(inner)
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
        "format": FORMAT,
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
    digest.update(orjson.dumps(context, option=orjson.OPT_SORT_KEYS))
    return Fingerprint(digest.hexdigest(), count)


def record(mesh: Mesh, name: str, fingerprint: Fingerprint, relations: list[str]) -> None:
    """Store the fingerprint of a passing build, with the relations it wrote."""
    doc = {
        "format": FORMAT,
        "project": name,
        "env": mesh.env,
        "target": mesh.target_name,
        "fingerprint": fingerprint.value,
        "files": fingerprint.files,
        "recorded_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "relations": sorted(relations),
    }
    mesh.registry.write_private(name, mesh.env, "fingerprint", dump_json(doc))


def recorded(mesh: Mesh, name: str) -> Json | None:
    """The fingerprint record of the project's last passing build, or None (unreadable: None)."""
    try:
        body = mesh.registry.read_private(name, mesh.env, "fingerprint")
        doc = parse_json(body, f"{name}/{mesh.env} fingerprint") if body else None
    except (RegistryError, ManifestError):
        return None  # a damaged record only costs a rebuild
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return None
    return doc


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


def relations_exist(mesh: Mesh, name: str, relations: list[str]) -> bool:
    """Whether every relation still exists (DuckDB: read the project's file; Snowflake: ask each
    database's information schema as the project's role; other adapters: the fingerprint is
    trusted, see README). Anything that cannot be checked counts as missing: the project builds."""
    from mesh.wap import profile_output, render_profile_value

    out = profile_output(mesh, name)
    if out.type == "snowflake":
        return _snowflake_relations_exist(mesh, name, relations)
    if out.type != "duckdb":
        return True
    raw = str(out.output.get("path") or "")
    env = {k: v for k, v in os.environ.items() if k != "MESH_BUILD_DIR"}
    env.setdefault("MESH_WAREHOUSE_DIR", str(mesh.warehouse_dir))
    path = Path(render_profile_value(raw, env))
    if not path.is_absolute():
        path = (mesh.project(name).dir / path).resolve()
    if not path.is_file():
        return False
    import duckdb

    try:
        with contextlib.closing(duckdb.connect(str(path), read_only=True)) as connection:
            rows = connection.execute(
                "select table_catalog, table_schema, table_name from information_schema.tables"
            ).fetchall()
    except duckdb.Error:
        return False
    present = {".".join(str(part).lower() for part in row) for row in rows}
    return all(relation.lower() in present for relation in relations)


def _snowflake_relations_exist(mesh: Mesh, name: str, relations: list[str]) -> bool:
    from mesh.errors import MeshError
    from mesh.snowflake import Session, check_identifier, mesh_project_settings

    databases = sorted({relation.split(".", 1)[0] for relation in relations})
    present: set[str] = set()
    try:
        settings = mesh_project_settings(mesh, name, "dbt-mesh-fingerprint")
        with Session(settings, label="relations check") as session:
            for database in databases:
                schema = f"{check_identifier('database', database)}.information_schema"
                # Snowflake lists views among its tables too; the union also reads emulators
                # that list them only among views.
                rows = session.run(
                    f"SELECT table_catalog, table_schema, table_name FROM {schema}.tables UNION "
                    f"SELECT table_catalog, table_schema, table_name FROM {schema}.views",
                    missing_ok=True,  # a dropped database: its relations are missing
                )
                present.update(".".join(str(part).lower() for part in row) for row in rows or [])
    except MeshError:
        return False
    return all(relation.lower() in present for relation in relations)


def unchanged_since(mesh: Mesh, name: str, fingerprint: Fingerprint) -> str | None:
    """When the last passing build with this very fingerprint was recorded, if its relations are
    still there; None when the project must build."""
    doc = recorded(mesh, name)
    if doc is None or doc.get("fingerprint") != fingerprint.value or doc.get("target") != mesh.target_name:
        return None
    relations = [str(r) for r in doc.get("relations") or []]
    if not relations_exist(mesh, name, relations):
        return None
    return str(doc.get("recorded_at") or "")
