"""Projects that write several databases, and the DuckDB databases every build attaches.

Snowflake teams commonly put each layer in a database of its own (`+database: <region>_silver` for
staging, `<region>_gold` for marts). On DuckDB a database is a file, so a project's build must have
each database it writes attached read-write, and its consumers each database holding its public
nodes attached read-only under the same name, or the relations the interface names do not resolve.

The mesh attaches them itself, on top of the profile the project builds with (its own, or the one
the mesh wrote), so nobody edits a profile when a producer starts writing a second database:
- each database the project's own configs name (`+database` in dbt_project.yml, `database` in a
  model's YAML config or `config()` call) other than its profile's own: the file
  `<warehouse>/<database>.duckdb`, under `MESH_BUILD_DIR` like the project's own file, so
  write-audit-publish builds an audit copy of every file the project writes;
- each database holding public nodes of each upstream (recorded in the sync lock from its
  interface): the upstream's own file for its profile's database, `<warehouse>/<database>.duckdb`
  for the others, read-only.
When nothing needs adding, the project builds with its profile as it is. Otherwise the profile with
those attachments is written to `.mesh/profiles/profiles.yml` and dbt is pointed there. Two projects
writing one database are refused by the profile check every build runs (mesh/project/profiles.py).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from mesh.core.errors import MeshError
from mesh.project.config import Mesh, Project
from mesh.project.files import configured_databases, upstream_databases
from mesh.warehouse.readers import duckdb_file
from mesh.warehouse.wap import BUILD_DIR_VAR, profile_output, render_profile_value

OWN_FILE = "{{ env_var('MESH_BUILD_DIR', env_var('MESH_WAREHOUSE_DIR', 'warehouse')) }}/%s.duckdb"
UPSTREAM_FILE = "{{ env_var('MESH_WAREHOUSE_DIR', 'warehouse') }}/%s.duckdb"
EFFECTIVE_DIR = "profiles"


def _alias(item: dict[str, Any]) -> str:
    return str(item.get("alias") or Path(str(item.get("path", ""))).stem)


def with_attachments(mesh: Mesh, name: str, output: dict[str, Any]) -> dict[str, Any] | None:
    """`output` (a DuckDB output of `name`'s profile) with the databases the mesh attaches; None
    when it attaches them all already."""

    if str(output.get("type") or "") != "duckdb":
        return None
    project = mesh.project(name)
    attaches = [dict(a) for a in output.get("attach") or [] if isinstance(a, dict)]
    have = {_alias(a).lower() for a in attaches}
    env = {"MESH_WAREHOUSE_DIR": str(mesh.warehouse_dir)}
    try:
        own = Path(render_profile_value(str(output.get("path") or ""), env)).stem.lower()
    except MeshError:
        own = name.lower()
    have.add(own)
    added: list[dict[str, Any]] = []
    for database in configured_databases(project.dir):
        if database.lower() not in have:
            added.append({"path": OWN_FILE % database, "alias": database})
            have.add(database.lower())
    recorded = upstream_databases(project)
    for upstream in project.upstreams:
        main = _upstream_main(mesh, upstream)
        if main is not None and main.stem.lower() not in have:
            added.append({"path": _portable(mesh, main), "alias": main.stem, "read_only": True})
            have.add(main.stem.lower())
    for upstream in project.upstreams:
        # What an upstream's views read must resolve here too: its own attachments, read-only.
        for item in _local_attachments(mesh, upstream):
            if _alias(item).lower() not in have:
                added.append({**item, "read_only": True})
                have.add(_alias(item).lower())
    for upstream, databases in recorded.items():
        for database in databases:
            if database.lower() in have:
                continue
            added.append({"path": _upstream_file(mesh, upstream, database), "alias": database, "read_only": True})
            have.add(database.lower())
    if not added:
        return None
    effective = copy.deepcopy(output)
    effective["attach"] = [*attaches, *added]
    return effective


def _upstream_main(mesh: Mesh, upstream: str) -> Path | None:
    """An upstream's own DuckDB file, when it is built here (None: another repository's)."""
    if upstream not in mesh.config.projects or not mesh.is_local(upstream):
        return None

    try:
        return duckdb_file(mesh, upstream)
    except MeshError:
        return None


def _local_attachments(mesh: Mesh, upstream: str) -> list[dict[str, Any]]:
    """The attachments of an upstream built here (its effective profile's), with paths that resolve
    from anywhere: relative ones made absolute against its folder."""

    if upstream not in mesh.config.projects or not mesh.is_local(upstream):
        return []
    try:
        output = profile_output(mesh, upstream).output
    except MeshError:
        return []
    found = []
    for item in output.get("attach") or []:
        if not isinstance(item, dict) or not item.get("path"):
            continue
        # A database the upstream writes is its live file here, never this build's audit folder.
        path = str(item["path"]).replace(OWN_FILE.split("}}")[0] + "}}", UPSTREAM_FILE.split("}}")[0] + "}}")
        if "{{" not in path and not Path(path).is_absolute():
            path = str((mesh.project(upstream).dir / path).resolve())
        found.append({"path": path, "alias": _alias(item)})
    return found


def _upstream_file(mesh: Mesh, upstream: str, database: str) -> str:
    """Where an upstream's database lives: its own profile's file for its main database (when it
    is built here), else `<warehouse>/<database>.duckdb`."""
    path = _upstream_main(mesh, upstream)
    if path is not None and path.stem.lower() == database.lower():
        return _portable(mesh, path)
    return UPSTREAM_FILE % database


def _portable(mesh: Mesh, path: Path) -> str:
    """A file under the warehouse as the profiles write it (`{{ env_var('MESH_WAREHOUSE_DIR') }}/…`),
    so the profile, and every fingerprint of it, is the same in any checkout."""
    if path.parent in (mesh.warehouse_dir, mesh.warehouse_dir.resolve()):
        return UPSTREAM_FILE % path.stem
    return str(path)


def own_database_files(mesh: Mesh, name: str, output: dict[str, Any]) -> list[Path]:
    """The live files of the project's other databases: its read-write attachments whose path
    reads MESH_BUILD_DIR (the mesh's convention for files the project writes)."""

    env = {"MESH_WAREHOUSE_DIR": str(mesh.warehouse_dir)}
    files = []
    for item in output.get("attach") or []:
        if not isinstance(item, dict) or item.get("read_only") or BUILD_DIR_VAR not in str(item.get("path", "")):
            continue
        path = Path(render_profile_value(str(item["path"]), env))
        files.append(path if path.is_absolute() else (mesh.project(name).dir / path).resolve())
    return files


def effective_dir(project: Project) -> Path:
    return project.mesh_dir / EFFECTIVE_DIR
