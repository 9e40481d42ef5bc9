"""Small, explicit dbt artifacts for unit tests (real dbt runs live in tests/integration)."""

from __future__ import annotations

import copy
from datetime import UTC
from typing import Any

SCHEMA = "https://schemas.getdbt.com/dbt/manifest/v12.json"
RUN_RESULTS_SCHEMA = "https://schemas.getdbt.com/dbt/run-results/v6.json"


def model(
    project: str,
    name: str,
    access: str = "public",
    version: int | None = None,
    latest_version: int | None = None,
    schema: str = "marts",
    alias: str | None = None,
    columns: dict[str, str] | None = None,
    depends_on: list[str] | None = None,
    materialized: str = "table",
    enforced: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    uid = f"model.{project}.{name}" + (f".v{version}" if version is not None else "")
    alias = alias or (f"{name}_v{version}" if version is not None else name)
    cols = columns if columns is not None else {"id": "integer", "amount": "double"}
    return {
        "unique_id": uid,
        "name": name,
        "package_name": project,
        "resource_type": "model",
        "database": project,
        "schema": schema,
        "alias": alias,
        "relation_name": f'"{project}"."{schema}"."{alias}"',
        "access": access,
        "group": "core",
        "version": version,
        "latest_version": latest_version,
        "deprecation_date": None,
        "description": f"{name} description",
        "raw_code": "select 1 as id",
        "compiled_code": "select 1 as id",
        "columns": {
            c: {"name": c, "data_type": t, "description": f"{c} doc", "constraints": []}
            for c, t in cols.items()
        },
        "contract": {"enforced": enforced, "alias_types": True, "checksum": None},
        "config": {"materialized": materialized, "contract": {"enforced": enforced}, "access": access},
        "constraints": [],
        "meta": {},
        "tags": [],
        "depends_on": {"nodes": depends_on or [], "macros": []},
        **extra,
    }


def manifest(project: str, nodes: list[dict[str, Any]], invocation: str = "inv-1",
             generated_at: str = "2026-11-23T10:00:00.000000Z") -> dict[str, Any]:
    return {
        "metadata": {
            "dbt_schema_version": SCHEMA,
            "dbt_version": "1.11.16",
            "generated_at": generated_at,
            "invocation_id": invocation,
            "project_name": project,
            "adapter_type": "duckdb",
        },
        "nodes": {n["unique_id"]: copy.deepcopy(n) for n in nodes},
        "sources": {},
        "macros": {},
        "groups": {
            f"group.{project}.core": {"name": "core", "owner": {"name": "Core Team", "email": "core@example.com"}}
        },
        "parent_map": {n["unique_id"]: list(n["depends_on"]["nodes"]) for n in nodes},
    }


def run_results(doc: dict[str, Any], status: str = "success", skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "metadata": {
            "dbt_schema_version": RUN_RESULTS_SCHEMA,
            "invocation_id": doc["metadata"]["invocation_id"],
        },
        "results": [
            {"unique_id": uid, "status": status}
            for uid in doc["nodes"]
            if uid not in skip
        ],
    }


def producer(project: str = "core") -> dict[str, Any]:
    """A producer with public, versioned, private and protected models."""
    return manifest(
        project,
        [
            model(project, "stg_orders", access="protected", schema="staging"),
            model(project, "int_secret", access="private", schema="staging"),
            model(project, "orders", depends_on=[f"model.{project}.stg_orders"]),
            model(project, "customers", version=1, latest_version=2, columns={"id": "integer", "name": "text"}),
            model(project, "customers", version=2, latest_version=2, columns={"id": "integer", "first": "text"}),
            model(project, "revenue", schema="finance", alias="daily_revenue", depends_on=[f"model.{project}.orders"]),
        ],
    )


def seed(project: str, name: str, access: str | None = "public", schema: str = "raw",
         columns: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    """A seed as dbt 1.11 writes it: no node-level `access` (dbt has none for seeds); a public one
    carries `config.access`, the custom config key dbt-loom reads."""
    node = model(project, name, schema=schema, columns=columns if columns is not None else {},
                 materialized="seed", enforced=False, **extra)
    node["unique_id"] = f"seed.{project}.{name}"
    node["resource_type"] = "seed"
    node["access"] = None
    node.pop("contract")
    node["config"] = {"materialized": "seed", "contract": {"enforced": False}, "meta": {}}
    if access is not None:
        node["config"]["access"] = access
    return node


def snapshot(project: str, name: str, public_via_meta: bool = True, **extra: Any) -> dict[str, Any]:
    """A snapshot, public through `config.meta.mesh.access` (dbt's place for custom keys)."""
    node = seed(project, name, access=None, schema="snapshots", **extra)
    node["unique_id"] = f"snapshot.{project}.{name}"
    node["resource_type"] = "snapshot"
    node["config"]["materialized"] = "snapshot"
    if public_via_meta:
        node["config"]["meta"] = {"mesh": {"access": "public"}}
    return node


def catalog(tables: dict[str, list[tuple[str, str]]]) -> dict[str, Any]:
    """A catalog.json as `dbt docs generate` writes it: unique_id -> [(column, warehouse type)]."""
    return {
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/catalog/v1.json",
            "invocation_id": "docs-1",
        },
        "nodes": {
            uid: {
                "unique_id": uid,
                "metadata": {"type": "BASE TABLE", "owner": "SOMEONE"},
                "columns": {
                    name: {"name": name, "type": kind, "index": i + 1, "comment": None}
                    for i, (name, kind) in enumerate(columns)
                },
                "stats": {},
            }
            for uid, columns in tables.items()
        },
        "sources": {},
        "errors": None,
    }


def interface_body(
    project: str, version: str, env: str | None = None, nodes: list[dict[str, Any]] | None = None
) -> bytes:
    """The registry form of a small valid interface of `project` claiming `version` (every field
    the registry schema checks), as a publish writes it."""
    from mesh.manifest import build_interface, content_sha256, dump_interface, extract_interface

    doc = manifest(project, nodes if nodes is not None else [model(project, "orders")])
    interface_nodes, groups = extract_interface(doc)
    meta: dict[str, Any] = {
        "format": 1,
        "version": version,
        "content_sha256": content_sha256(interface_nodes, groups),
    }
    if env is not None:
        meta["env"] = env
    return dump_interface(build_interface(doc, interface_nodes, groups, meta))


def later_version(version: str, seconds: int = 1) -> str:
    """A version id `seconds` after `version` (a forged or rolled-back entry that sorts later)."""
    from datetime import datetime, timedelta

    from mesh.names import new_version

    moment = datetime.strptime(version.split("-")[0], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    return new_version(version.split("-")[1] * 8, now=moment + timedelta(seconds=seconds))
