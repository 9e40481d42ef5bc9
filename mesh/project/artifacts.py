"""Read dbt artifacts and extract a project's public interface.

The interface is a manifest-shaped JSON document (dbt-loom reads it unchanged) holding only the
project's own public nodes a consumer can ref: `access: public` models (every version), and seeds
and snapshots marked public (below), trimmed to what a consumer needs: no SQL, no private or
protected nodes, no sources, macros or tests. It is the unit of contract comparison and the only
thing consumers ever see of a producer.

dbt-core 1.11 gives `access` to models only (and to functions, which no ref reaches): its node
classes and its YAML schema have no `access` on seeds or snapshots. dbt still keeps a seed's or
snapshot's `config: {access: public}` as a custom config key, and dbt-loom reads exactly that to
inject a seed or snapshot into a consumer, so the mesh honours it too. On adapters where dbt checks
YAML against its schema (Snowflake, BigQuery, Databricks, Redshift), dbt 1.11 warns about that key
(CustomKeyInConfigDeprecation); `config: {meta: {mesh: {access: public}}}` says the same without a
warning. dbt enforces contracts on models only: a seed or snapshot is never contracted here, whatever
its config says (dbt accepts `contract: {enforced: true}` on a seed and ignores it).

Columns: a public model with an enforced contract publishes its contract's columns as they are. Any
other public node publishes the columns the producer's catalog (`dbt docs generate`) observed in the
warehouse, types lower-cased, with the YAML descriptions and constraints, each entry marked
`"contract": false` (observed, not guaranteed); contracted entries carry no `contract` key.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mesh.core.errors import ManifestError, PublishRefusedError
from mesh.core.surface import hint
from mesh.registry.document import MANIFEST_SCHEMAS, check_manifest, check_schema, load_json

if TYPE_CHECKING:
    pass

RUN_RESULTS_SCHEMAS = {
    f"https://schemas.getdbt.com/dbt/run-results/v{n}.json": n for n in (4, 5, 6)
}
# Statuses of a node in run_results.json that mean it built or passed.
# "no-op": an exposure or saved query, which dbt build lists without running anything.
PASSING_STATUSES = frozenset({"success", "pass", "warn", "no-op"})
# The resource types a consumer can ref across projects (dbt's refable nodes).
PUBLIC_RESOURCE_TYPES = ("model", "seed", "snapshot")
_UNIQUE_ID_RE = re.compile(
    r"(?:model\.([a-z_][a-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)(\.v[A-Za-z0-9_.]+)?"
    r"|(?:seed|snapshot)\.([a-z_][a-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*))"
)

Json = dict[str, Any]


# dbt writes `metadata` first, `dbt_schema_version` first in it: readable from the file's head.
_SCHEMA_AT_HEAD = re.compile(rb'\A\s*\{\s*"metadata"\s*:\s*\{\s*"dbt_schema_version"\s*:\s*"([^"\\]{0,300})"')
_HEAD_BYTES = 1 << 16


def check_schema_early(path: Path, allowed: dict[str, int], what: str) -> None:
    """Refuse a large artifact of an unknown schema from its first bytes, before parsing it all
    (a 200 MB manifest of the wrong dbt version costs seconds and gigabytes to parse)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD_BYTES)
    except OSError:
        return  # load_json says what is wrong
    match = _SCHEMA_AT_HEAD.match(head) if len(head) == _HEAD_BYTES else None
    if match is not None:
        found = match.group(1).decode("utf-8", "replace")
        check_schema({"metadata": {"dbt_schema_version": found}}, allowed, what)


_REUSED: ContextVar[dict[tuple[str, int, int], Json] | None] = ContextVar(
    "mesh_reused_manifests", default=None
)


@contextlib.contextmanager
def reused_manifests() -> Iterator[None]:
    """Within the block, `load_manifest` parses an unchanged file once and gives every caller the
    same document, which they only read: `invoke mesh` reads a project's manifest to see whether it
    has public models, to publish it, in the contract gate and to store it as state."""
    token = _REUSED.set({})
    try:
        yield
    finally:
        _REUSED.reset(token)


def load_manifest(path: Path, project: str | None = None) -> Json:
    """Read a dbt manifest.json, checking its schema version and, if given, its project name."""
    reused, key = _REUSED.get(), None
    if reused is not None:
        with contextlib.suppress(OSError):
            stat = path.stat()
            key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if reused is not None and key in reused:
        doc = reused[key]
    else:
        check_schema_early(path, MANIFEST_SCHEMAS, f"manifest {path}")
        doc = load_json(path, "manifest")
        check_schema(doc, MANIFEST_SCHEMAS, f"manifest {path}")
        if reused is not None and key is not None:
            reused[key] = doc
    return check_manifest(doc, f"manifest {path}", project)


def check_run_results(path: Path, manifest: Json, public_ids: list[str]) -> None:
    """Refuse unless the build that wrote `manifest` ran every public node and nothing failed."""
    doc = load_json(path, "run_results.json")
    check_schema(doc, RUN_RESULTS_SCHEMAS, f"run_results {path}")
    invocation = manifest["metadata"].get("invocation_id")
    if doc["metadata"].get("invocation_id") != invocation:
        raise PublishRefusedError(
            f"{path} is not from the build that wrote manifest.json (invocation ids differ): "
            f"run {hint('build', '--project', 'P')} again, then publish"
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
            f"the last build did not run public {resource_label(missing[0])} {missing[0]}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + f": run a full {hint('build', '--project', 'P')} before publishing"
        )


def _column(column: Json) -> Json:
    return {
        "name": column.get("name"),
        "data_type": column.get("data_type"),
        "description": column.get("description") or "",
        "constraints": column.get("constraints") or [],
    }


def resource_label(unique_id: str) -> str:
    """`model`, `seed` or `snapshot`: what a unique_id names, for messages."""
    return unique_id.partition(".")[0] or "node"


def _access(node: Json) -> Any:
    config = node.get("config") or {}
    access = node.get("access") or config.get("access")
    if access is None and node.get("resource_type") in ("seed", "snapshot"):
        meta = config.get("meta") or node.get("meta") or {}
        mesh_meta = meta.get("mesh") if isinstance(meta, dict) else None
        access = mesh_meta.get("access") if isinstance(mesh_meta, dict) else None
    return access


def has_enforced_contract(node: Json) -> bool:
    """Whether dbt enforces the node's contract: models only (dbt ignores it on seeds, snapshots)."""
    if node.get("resource_type") != "model":
        return False
    contract = node.get("contract") or (node.get("config") or {}).get("contract") or {}
    return bool(contract.get("enforced"))


def _data_type(value: Any) -> str | None:
    """A catalog type as the interface writes it: lower-case, single spaces (`decimal(18,2)`)."""
    if not isinstance(value, str) or not value.strip():
        return None
    return " ".join(value.lower().split())


def observed_columns(node: Json, catalog_table: Json | None) -> Json:
    """Columns of an uncontracted public node: the catalog's (in the relation's order, types
    lower-cased) with the YAML's descriptions and constraints, each marked `"contract": false`.
    Without a catalog entry (the relation is not built), the YAML's columns, marked the same way."""
    declared: Json = node.get("columns") or {}
    by_lower = {str(name).lower(): col for name, col in declared.items()}
    observed = (catalog_table or {}).get("columns") if isinstance(catalog_table, dict) else None
    columns: Json = {}
    if isinstance(observed, dict) and observed:
        def position(col: Json) -> int:
            index = col.get("index")
            return index if isinstance(index, int) else 1 << 30

        ordered = sorted(
            (col for col in observed.values() if isinstance(col, dict) and col.get("name")),
            key=position,
        )
        for col in ordered:
            raw = str(col["name"])
            yaml_col = by_lower.get(raw.lower())
            # Snowflake reports unquoted identifiers upper-cased; YAML spells them as declared.
            name = str(yaml_col.get("name")) if yaml_col else (raw.lower() if raw.isupper() else raw)
            entry = _column(yaml_col or {"name": name})
            entry["name"] = name
            entry["data_type"] = _data_type(col.get("type"))
            entry["contract"] = False
            columns[name] = entry
        return columns
    for name, col in declared.items():
        entry = _column(col)
        entry["data_type"] = _data_type(entry["data_type"])
        entry["contract"] = False
        columns[name] = entry
    return columns


def interface_node(node: Json, public_ids: set[str], catalog_table: Json | None = None) -> Json:
    """The interface view of one public node (`catalog_table`: its entry in the producer's
    catalog, for the columns of a node without an enforced contract)."""
    config = node.get("config") or {}
    enforced = has_enforced_contract(node)
    depends = (node.get("depends_on") or {}).get("nodes") or []
    columns = (
        {name: _column(col) for name, col in (node.get("columns") or {}).items()}
        if enforced
        else observed_columns(node, catalog_table)
    )
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
        "group": node.get("group") or config.get("group"),
        "version": node.get("version"),
        "latest_version": node.get("latest_version"),
        "deprecation_date": node.get("deprecation_date"),
        "description": node.get("description") or "",
        "columns": columns,
        "constraints": node.get("constraints") or [],
        "contract": {"enforced": enforced},
        "config": {
            "materialized": config.get("materialized"),
            "contract": {"enforced": enforced},
            "access": "public",
            "event_time": config.get("event_time"),
        },
        "meta": node.get("meta") or config.get("meta") or {},
        "tags": node.get("tags") or [],
        "depends_on": {"nodes": [d for d in depends if d in public_ids], "macros": []},
    }


def public_node_ids(manifest: Json) -> list[str]:
    """Unique ids of the project's own public models, seeds and snapshots, sorted."""
    project = manifest["metadata"].get("project_name")
    found = []
    for unique_id, node in manifest["nodes"].items():
        if node.get("resource_type") not in PUBLIC_RESOURCE_TYPES or node.get("package_name") != project:
            continue
        if _access(node) == "public":
            if not _UNIQUE_ID_RE.fullmatch(unique_id):
                kind = node.get("resource_type")
                raise ManifestError(f"public {kind} has a malformed unique_id {unique_id!r}")
            found.append(unique_id)
    return sorted(found)


def uncontracted_ids(manifest: Json, ids: list[str]) -> list[str]:
    """The public nodes among `ids` without an enforced contract (their columns need a catalog)."""
    return [uid for uid in ids if not has_enforced_contract(manifest["nodes"][uid])]


def extract_interface(
    manifest: Json, ids: list[str] | None = None, catalog: Json | None = None
) -> tuple[Json, Json]:
    """Return (nodes, groups) of the interface: the project's public nodes and their groups
    (`ids`: `public_node_ids(manifest)`, when the caller has it already; `catalog`: the
    producer's catalog.json, for the columns of public nodes without an enforced contract)."""
    ids = public_node_ids(manifest) if ids is None else ids
    id_set = set(ids)
    tables: Json = (catalog or {}).get("nodes") or {}
    nodes = {uid: interface_node(manifest["nodes"][uid], id_set, tables.get(uid)) for uid in ids}
    group_names = {n["group"] for n in nodes.values() if n["group"]}
    groups = {
        uid: {"name": g.get("name"), "owner": g.get("owner") or {}, "description": g.get("description")}
        for uid, g in (manifest.get("groups") or {}).items()
        if isinstance(g, dict) and g.get("name") in group_names
    }
    return nodes, groups


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


# --- the registry form of an interface, and reading it a node at a time ---------------------------


def table_of(node: Json, name_key: str) -> tuple[str, str, str]:
    """database, schema and table of a seed (`alias`) or a source (`identifier`), case-folded:
    dbt's DAG does not know that a source and a seed can be one table; this is how to tell."""
    return (
        str(node.get("database") or "").lower(),
        str(node.get("schema") or "").lower(),
        str(node.get(name_key) or node.get("name") or "").lower(),
    )
