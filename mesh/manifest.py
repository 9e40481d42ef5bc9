"""Read dbt artifacts and extract a project's public interface.

The interface is a manifest-shaped JSON document (dbt-loom reads it unchanged) holding only the
project's own `access: public` models, trimmed to what a consumer needs: no SQL, no private or
protected nodes, no sources, macros or tests. It is the unit of contract comparison and the only
thing consumers ever see of a producer.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson

from mesh.errors import ChecksumError, ManifestError, PublishRefusedError
from mesh.names import sha256_hex

MANIFEST_SCHEMAS = {
    f"https://schemas.getdbt.com/dbt/manifest/v{n}.json": n for n in (10, 11, 12)
}
RUN_RESULTS_SCHEMAS = {
    f"https://schemas.getdbt.com/dbt/run-results/v{n}.json": n for n in (4, 5, 6)
}
INTERFACE_FORMAT = 1
# Statuses of a node in run_results.json that mean it built or passed.
PASSING_STATUSES = frozenset({"success", "pass", "warn"})
_UNIQUE_ID_RE = re.compile(r"model\.([a-z_][a-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)(\.v[A-Za-z0-9_.]+)?")

Json = dict[str, Any]


def load_json(path: Path, what: str) -> Json:
    """Read a JSON object from `path` with orjson; any failure is a one-line ManifestError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ManifestError(f"{what} not found: {path}; run the dbt build first") from exc
    except IsADirectoryError as exc:
        raise ManifestError(f"{what} {path} is a directory, not a file") from exc
    except OSError as exc:
        raise ManifestError(f"cannot read {what} {path}: {exc.strerror}") from exc
    return parse_json(data, f"{what} {path}")


def parse_json(data: bytes, what: str) -> Json:
    """Parse bytes as a JSON object."""
    if not data.strip():
        raise ManifestError(f"{what} is empty")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"{what} is not valid JSON ({exc.msg} at byte {exc.pos})") from exc
    if not isinstance(doc, dict):
        raise ManifestError(f"{what} is not a JSON object")
    return doc


def check_schema(doc: Json, allowed: dict[str, int], what: str) -> int:
    """Check `metadata.dbt_schema_version` against an allow-list; return the schema number."""
    metadata = doc.get("metadata")
    found = metadata.get("dbt_schema_version") if isinstance(metadata, dict) else None
    if found is None:
        raise ManifestError(f"{what} has no metadata.dbt_schema_version: not a dbt artifact")
    if found not in allowed:
        expected = ", ".join(sorted(allowed))
        raise ManifestError(f"{what} has incompatible schema {found!r}; expected one of {expected}")
    return allowed[found]


def load_manifest(path: Path, project: str | None = None) -> Json:
    """Read a dbt manifest.json, checking its schema version and, if given, its project name."""
    doc = load_json(path, "manifest")
    check_schema(doc, MANIFEST_SCHEMAS, f"manifest {path}")
    return check_manifest(doc, f"manifest {path}", project)


def check_manifest(doc: Json, what: str, project: str | None = None) -> Json:
    """Check the parts of a manifest the mesh relies on."""
    name = doc["metadata"].get("project_name")
    if project is not None and name != project:
        raise ManifestError(
            f"{what} belongs to project {name!r}, not {project!r}: build the right project"
        )
    nodes = doc.get("nodes")
    if not isinstance(nodes, dict):
        raise ManifestError(f"{what} has no `nodes` object")
    for unique_id, node in nodes.items():
        if not isinstance(node, dict) or node.get("unique_id") != unique_id:
            raise ManifestError(f"{what}: node {unique_id!r} is malformed or its unique_id differs")
    return doc


def check_run_results(path: Path, manifest: Json, public_ids: list[str]) -> None:
    """Refuse unless the build that wrote `manifest` ran every public model and nothing failed."""
    doc = load_json(path, "run_results.json")
    check_schema(doc, RUN_RESULTS_SCHEMAS, f"run_results {path}")
    invocation = manifest["metadata"].get("invocation_id")
    if doc["metadata"].get("invocation_id") != invocation:
        raise PublishRefusedError(
            f"{path} is not from the build that wrote manifest.json (invocation ids differ): "
            "run `invoke build` again, then publish"
        )
    results = doc.get("results")
    if not isinstance(results, list):
        raise ManifestError(f"run_results {path} has no `results` list")
    failed = [
        f"{r.get('unique_id')} ({r.get('status')})"
        for r in results
        if isinstance(r, dict) and r.get("status") not in PASSING_STATUSES
    ]
    if failed:
        more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
        raise PublishRefusedError(
            f"the last build did not pass: {', '.join(failed[:3])}{more}; fix it and rebuild"
        )
    built = {r.get("unique_id") for r in results if isinstance(r, dict)}
    missing = [uid for uid in public_ids if uid not in built]
    if missing:
        raise PublishRefusedError(
            f"the last build did not run public model {missing[0]}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + ": run a full `invoke build` before publishing"
        )


def _column(column: Json) -> Json:
    return {
        "name": column.get("name"),
        "data_type": column.get("data_type"),
        "description": column.get("description") or "",
        "constraints": column.get("constraints") or [],
    }


def interface_node(node: Json, public_ids: set[str]) -> Json:
    """The interface view of one public model node."""
    config = node.get("config") or {}
    contract = node.get("contract") or config.get("contract") or {}
    depends = (node.get("depends_on") or {}).get("nodes") or []
    return {
        "unique_id": node["unique_id"],
        "name": node["name"],
        "package_name": node["package_name"],
        "resource_type": node["resource_type"],
        "database": node.get("database"),
        "schema": node.get("schema"),
        "alias": node.get("alias"),
        "relation_name": node.get("relation_name"),
        "access": "public",
        "group": node.get("group"),
        "version": node.get("version"),
        "latest_version": node.get("latest_version"),
        "deprecation_date": node.get("deprecation_date"),
        "description": node.get("description") or "",
        "columns": {name: _column(col) for name, col in (node.get("columns") or {}).items()},
        "constraints": node.get("constraints") or [],
        "contract": {"enforced": bool(contract.get("enforced"))},
        "config": {
            "materialized": config.get("materialized"),
            "contract": {"enforced": bool(contract.get("enforced"))},
            "access": "public",
            "event_time": config.get("event_time"),
        },
        "meta": node.get("meta") or config.get("meta") or {},
        "tags": node.get("tags") or [],
        "depends_on": {"nodes": [d for d in depends if d in public_ids], "macros": []},
    }


def public_node_ids(manifest: Json) -> list[str]:
    """Unique ids of the project's own public models, sorted."""
    project = manifest["metadata"].get("project_name")
    found = []
    for unique_id, node in manifest["nodes"].items():
        if node.get("resource_type") != "model" or node.get("package_name") != project:
            continue
        access = node.get("access") or (node.get("config") or {}).get("access")
        if access == "public":
            if not _UNIQUE_ID_RE.fullmatch(unique_id):
                raise ManifestError(f"public model has a malformed unique_id {unique_id!r}")
            found.append(unique_id)
    return sorted(found)


def extract_interface(manifest: Json) -> tuple[Json, Json]:
    """Return (nodes, groups) of the interface: the project's public models and their groups."""
    ids = public_node_ids(manifest)
    id_set = set(ids)
    nodes = {uid: interface_node(manifest["nodes"][uid], id_set) for uid in ids}
    group_names = {n["group"] for n in nodes.values() if n["group"]}
    groups = {
        uid: {"name": g.get("name"), "owner": g.get("owner") or {}, "description": g.get("description")}
        for uid, g in (manifest.get("groups") or {}).items()
        if isinstance(g, dict) and g.get("name") in group_names
    }
    return nodes, groups


def content_sha256(nodes: Json, groups: Json) -> str:
    """Hash of the interface content, independent of when or by whom it was published."""
    return sha256_hex(orjson.dumps({"nodes": nodes, "groups": groups}, option=orjson.OPT_SORT_KEYS))


def build_interface(manifest: Json, nodes: Json, groups: Json, mesh_meta: Json) -> Json:
    """Assemble the interface document (manifest-shaped) from its parts."""
    meta = manifest["metadata"]
    return {
        "metadata": {
            "dbt_schema_version": meta.get("dbt_schema_version"),
            "dbt_version": meta.get("dbt_version"),
            "generated_at": meta.get("generated_at"),
            "invocation_id": meta.get("invocation_id"),
            "project_name": meta.get("project_name"),
            "adapter_type": meta.get("adapter_type"),
            "mesh": mesh_meta,
        },
        "nodes": nodes,
        "groups": groups,
        "sources": {},
        "macros": {},
        "exposures": {},
        "metrics": {},
    }


def dump_json(doc: Json) -> bytes:
    """Stable serialization: 2-space indent, trailing newline (diffs cleanly). Keys keep their
    order, so columns stay in the order the producer declared them."""
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


def load_interface(body: bytes, what: str, project: str | None = None) -> Json:
    """Parse and check an interface read from the registry."""
    doc = parse_json(body, what)
    check_schema(doc, MANIFEST_SCHEMAS, what)
    check_manifest(doc, what, project)
    mesh_meta = doc["metadata"].get("mesh")
    if not isinstance(mesh_meta, dict) or "version" not in mesh_meta:
        raise ManifestError(f"{what} has no metadata.mesh block: it was not published by the mesh")
    expected = mesh_meta.get("content_sha256")
    if expected != content_sha256(doc["nodes"], doc.get("groups") or {}):
        raise ChecksumError(f"{what}: its nodes do not match metadata.mesh.content_sha256")
    return doc
